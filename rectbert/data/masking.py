"""Which tokens are hidden: an exact count, an exact ratio, MaskGIT's cosine schedule (over
every count, or over 1 ... L-1 so that one model answers at any number of visible tokens), or
every count from 1 to L-1 alike (any-order autoregression's: any step of a random order).

Every mask has an exact number of positions per example, chosen uniformly without replacement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCHEDULES = ("fixed", "cosine", "anycount", "anyorder")
ANY_COUNT = ("anycount", "anyorder")  # one model for every visible count


def count_for_ratio(ratio: float, length: int) -> int:
    """round(ratio * length), at least 1: the number of masked tokens for a ratio."""
    return max(1, int(round(ratio * length)))


def mask_exact(key, counts_B, length: int):
    """[B, length] bool with exactly counts_B[b] True entries in row b, uniformly placed."""
    noise_BxL = jax.random.uniform(key, (counts_B.shape[0], length))
    ranks_BxL = jnp.argsort(jnp.argsort(noise_BxL, axis=1), axis=1)
    return ranks_BxL < counts_B[:, None]


def sample_mask(key, batch: int, length: int, *, count: int, schedule: str = "fixed"):
    """[batch, length] bool mask.

    fixed: exactly `count` tokens per example. cosine (MaskGIT): r ~ U(0, 1) per example and
    ceil(cos(pi/2 * r) * length) tokens, at least 1 — so the ratio runs over all of (0, 1].
    anycount: the same cosine over 1 ... length - 1 hidden (at least one token stays visible):
    ceil(cos(pi/2 * r) * (length - 1)), at least 1. anyorder: 1 ... length - 1 hidden, each
    count alike (each example one step of a random order, the steps alike, drawn at random).
    Every count has probability > 0.
    """
    if schedule == "fixed":
        counts_B = jnp.full((batch,), count, jnp.int32)
    elif schedule in ("cosine", "anycount"):
        top = length if schedule == "cosine" else length - 1
        if top < 1:
            raise ValueError(f"schedule {schedule!r} needs at least 2 tokens; got {length}")
        k_r, key = jax.random.split(key)
        r_B = jax.random.uniform(k_r, (batch,))
        counts_B = jnp.ceil(jnp.cos(jnp.pi / 2 * r_B) * top).astype(jnp.int32)
        counts_B = jnp.clip(counts_B, 1, top)
    elif schedule == "anyorder":
        if length < 2:
            raise ValueError(f"schedule {schedule!r} needs at least 2 tokens; got {length}")
        k_n, key = jax.random.split(key)
        counts_B = jax.random.randint(k_n, (batch,), 1, length)
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    return mask_exact(key, counts_B, length)


def masked_mean(x_BxL, mask_BxL):
    """The mean of x over the masked entries of the whole batch (each token alike)."""
    w = mask_BxL.astype(jnp.float32)
    return (x_BxL * w).sum() / jnp.maximum(w.sum(), 1.0)


def example_mean(x_BxL, mask_BxL):
    """The mean over examples (those with a masked entry) of x's mean over each one's masked
    entries: each example alike, however many it hides."""
    w = mask_BxL.astype(jnp.float32)
    n_B = w.sum(1)
    per_B = (x_BxL * w).sum(1) / jnp.maximum(n_B, 1.0)
    return per_B.sum() / jnp.maximum((n_B > 0).sum(), 1)
