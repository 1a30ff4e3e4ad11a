"""Which tokens are hidden: an exact count, an exact ratio, or MaskGIT's cosine schedule.

Every mask has an exact number of positions per example, chosen uniformly without replacement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCHEDULES = ("fixed", "cosine")


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
    """
    if schedule == "fixed":
        counts_B = jnp.full((batch,), count, jnp.int32)
    elif schedule == "cosine":
        k_r, key = jax.random.split(key)
        r_B = jax.random.uniform(k_r, (batch,))
        counts_B = jnp.ceil(jnp.cos(jnp.pi / 2 * r_B) * length).astype(jnp.int32)
        counts_B = jnp.clip(counts_B, 1, length)
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    return mask_exact(key, counts_B, length)
