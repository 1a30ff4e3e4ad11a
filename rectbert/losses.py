"""Training losses over the hidden tokens: cross-entropy, label smoothing, soft targets.

Soft targets spread the probability over centroids near the true 16-vector — the write-up's
"a loss different from cross entropy": a near miss costs less than a far one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSSES = ("ce", "smooth", "soft")


def target_distribution(
    batch,
    num_tokens: int,
    kind: str,
    *,
    label_smoothing: float = 0.1,
    soft_temperature: float = 0.05,
    centroids_KxG=None,
):
    """[B, L, K] target probabilities for every position."""
    onehot = jax.nn.one_hot(batch.tokens, num_tokens)
    if kind == "ce":
        return onehot
    if kind == "smooth":
        return optax.smooth_labels(onehot, label_smoothing)
    if kind == "soft":
        if centroids_KxG is None or batch.values is None:
            raise ValueError("loss 'soft' needs a codebook task (centroids and patch values)")
        d_BxLxK = jnp.sum((batch.values[..., None, :] - centroids_KxG) ** 2, axis=-1)
        return jax.nn.softmax(-d_BxLxK / soft_temperature, axis=-1)
    raise ValueError(f"loss must be one of {LOSSES}; got {kind!r}")


def masked_mean(x_BxL, mask_BxL):
    w = mask_BxL.astype(jnp.float32)
    return (x_BxL * w).sum() / jnp.maximum(w.sum(), 1.0)


def training_loss(
    logits_BxLxK,
    aux_BxLxA,
    batch,
    *,
    kind="ce",
    label_smoothing=0.1,
    soft_temperature=0.05,
    aux_weight=0.0,
    centroids_KxG=None,
):
    """The loss to minimise over hidden positions; visible positions contribute nothing."""
    targets = target_distribution(
        batch,
        logits_BxLxK.shape[-1],
        kind,
        label_smoothing=label_smoothing,
        soft_temperature=soft_temperature,
        centroids_KxG=centroids_KxG,
    )
    loss = masked_mean(optax.softmax_cross_entropy(logits_BxLxK, targets), batch.mask)
    if aux_weight:
        mse_BxL = jnp.mean((aux_BxLxA - batch.values) ** 2, axis=-1)
        loss = loss + aux_weight * masked_mean(mse_BxL, batch.mask)
    return loss
