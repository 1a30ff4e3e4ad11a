"""Every loss and metric over the hidden tokens: cross-entropy, label smoothing, soft targets,
masked accuracy, and the paired model-vs-reference difference.

Soft targets spread the probability over centroids near the true 16-vector — the write-up's
"a loss different from cross entropy": a near miss costs less than a far one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rectbert.data.masking import example_mean, masked_mean

AVERAGES = {
    "token": "every hidden token of the batch alike",
    "example": "each example's hidden tokens first, then the examples alike (with "
    "--mask_schedule=anyorder: an unbiased estimate of any-order autoregression's objective, "
    "each example one step of a random order, all steps alike but the first, nothing known)",
}
LOSSES = {
    "ce": "cross-entropy with the true token",
    "smooth": "cross-entropy with label smoothing (--label_smoothing)",
    "soft": "targets from the centroids' distances to the true 16-vector (--soft_temperature)",
}


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
    raise ValueError(f"loss must be one of {list(LOSSES)}; got {kind!r}")


def masked_cross_entropy(logits_BxLxK, batch):
    """Mean cross-entropy of the true token over the hidden positions only."""
    ce_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxK, batch.tokens)
    return masked_mean(ce_BxL, batch.mask)


def masked_accuracy(logits_BxLxK, batch):
    """Fraction of hidden positions whose argmax is the true token."""
    return masked_mean(jnp.argmax(logits_BxLxK, -1) == batch.tokens, batch.mask)


def training_loss(
    output,
    batch,
    *,
    kind="ce",
    label_smoothing=0.1,
    soft_temperature=0.05,
    aux_weight=0.0,
    centroids_KxG=None,
    average="token",
):
    """The loss to minimise over hidden positions (an EncoderOutput); visible ones add nothing.
    `average`: AVERAGES."""
    targets = target_distribution(
        batch,
        output.logits.shape[-1],
        kind,
        label_smoothing=label_smoothing,
        soft_temperature=soft_temperature,
        centroids_KxG=centroids_KxG,
    )
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {list(AVERAGES)}; got {average!r}")
    mean = example_mean if average == "example" else masked_mean
    loss = mean(optax.softmax_cross_entropy(output.logits, targets), batch.mask)
    if aux_weight:
        mse_BxL = jnp.mean((output.aux - batch.values) ** 2, axis=-1)
        loss = loss + aux_weight * mean(mse_BxL, batch.mask)
    return loss


def paired_difference(right_a_N, right_b_N) -> tuple[float, float]:
    """Mean and standard error of a - b over the same N items (1 right, 0 wrong): the paired
    comparison of two predictors on the same hidden tokens."""
    diff = np.asarray(right_a_N, np.float64) - np.asarray(right_b_N, np.float64)
    return float(diff.mean()), float(diff.std() / np.sqrt(max(diff.size, 1)))
