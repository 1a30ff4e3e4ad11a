"""The oracle's references for the sampling scores: posterior samples from its two independent
replicas, completions drawn from its per-token marginals, and whether a completion is the
token set of some shape (oracle.consistent)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.analysis import oracle
from rectbert.data.tasks import Batch
from rectbert.geometry import codebook

# the posterior samples: more exact sweeps than the predictive needs, so that a replica's
# chains (resampled copies of few ancestors) move apart: 64 sweeps took the MMD between the
# two replicas' sets from 0.049 +- 0.024 (16 sweeps) to 0.017 +- 0.016 at 8 visible (rect)
POSTERIOR = oracle.OracleConfig(mcmc_steps=64)


class Posterior(NamedTuple):
    params: np.ndarray  # [B, 2, s, D] a set of s posterior samples from each replica
    tokens: np.ndarray  # [B, 2, s, L] their tokens
    marginals: np.ndarray  # [B, s, L] each token drawn from replica 0's marginal alone
    found: np.ndarray  # [B] both replicas reached the posterior (else the example is unscored)


def posterior(task, batch: Batch, key, s: int, cfg: oracle.OracleConfig, say=None) -> Posterior:
    """Two sets of s posterior samples per example, one from each of the oracle's two
    independent replicas, and s completions with each token drawn independently from the
    first replica's posterior marginals (its chains, position by position): (params
    [B, 2, s, D], tokens [B, 2, s, L], marginal tokens [B, s, L], found [B]: both replicas
    reached the posterior; examples where one did not are left out of every score). `say`
    takes progress lines."""
    x, live = oracle.posterior_samples(
        key, batch.points, batch.tokens, ~batch.mask, task.codebook, task.scene, cfg, say=say
    )
    b, c, d = x.shape
    h, length = c // 2, batch.tokens.shape[1]
    x, live = np.asarray(x).reshape(b, 2, h, d), np.asarray(live).reshape(b, 2, h)
    pts = np.broadcast_to(np.asarray(batch.points)[:, None], (b, c, length, 2))
    values = task.scene.coverage(
        jnp.asarray(np.nan_to_num(x.reshape(b * c, d))), jnp.asarray(pts.reshape(b * c, length, 2))
    )
    toks = np.asarray(codebook.quantise(values, task.codebook)).reshape(b, 2, h, length)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    found = live.any(axis=2).all(axis=1)
    pick = np.zeros((b, 2, s), int)
    marginal = np.repeat(np.asarray(batch.tokens)[:, None], s, axis=1)
    for i in np.flatnonzero(found):
        for r in range(2):
            on = np.flatnonzero(live[i, r])
            pick[i, r] = rng.choice(on, s, replace=on.size < s)
        on = np.flatnonzero(live[i, 0])
        marginal[i] = toks[i, 0][rng.choice(on, (s, length)), np.arange(length)]
    chosen = np.take_along_axis(x, pick[..., None], axis=2)
    return Posterior(chosen, np.take_along_axis(toks, pick[..., None], axis=2), marginal, found)


def consistency(task, points_BxLx2, completions_BxSxL, key, cfg=oracle.CHECK, say=None):
    """[B, S] whether each completion is some shape's token set (each distinct completion of
    an example searched once)."""
    b, s, length = completions_BxSxL.shape
    flat = np.asarray(completions_BxSxL).reshape(b * s, length)
    example = np.repeat(np.arange(b), s)
    rows = np.concatenate([example[:, None], flat], 1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    points = np.asarray(points_BxLx2)[unique[:, 0]]
    found, _ = oracle.consistent(
        key, points, unique[:, 1:], task.codebook, task.scene, cfg, say=say
    )
    return found[inverse.ravel()].reshape(b, s)
