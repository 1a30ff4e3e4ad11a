"""The oracle's MCMC moves (smc.py's sweeps): slice sampling coordinate by coordinate, then
differential moves along the difference of two other chains (ensemble slice sampling), each
mapped to the scene's canonical parameters (Scene.wrap) so it may cross a seam.

A move's candidates are judged by `lik.gated(candidates, beta, level, need)`: the log target
of the rows `need` (the chains still shrinking their bracket), computed only as far as it
takes to tell whether it exceeds the slice's level (smc.Likelihood.gated); any log density
judged row by row: Plain."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Plain(NamedTuple):
    """A log density fn(x [N, D], beta) -> [N] as moves judge candidates (lik.gated): every
    row evaluated, no mismatches counted (0: not for smc's tempering, which reads them)."""

    fn: Callable
    scene: object

    def gated(self, x, beta, level, need):
        del level, need
        return self.fn(x, beta), jnp.zeros(x.shape[0], jnp.int32)


def slice_sweep(key, x, logp, mism, beta, width, lik, cfg):
    """One slice-sampling sweep of every chain, coordinate by coordinate with a shrinking
    bracket, at temperature beta (inf: the exact posterior). A candidate is the scene's
    canonical form of the moved point (Scene.wrap: e.g. rotated's seam, where (w, h, theta)
    is (h, w, theta - pi/2), or a periodic angle), so the bracket may cross the
    parametrisation's edges. Then count(scene, cfg) differential moves of each half of the
    chains. Loops, not unrolled. (states, log targets, visible mismatches) after it.

    A chain whose bracket has collapsed on an accepted point would propose that point again
    at every later shrink, and take it: it is not evaluated again (lik.gated's need), nor is
    a candidate the gate rejects early. The same moves, for the work of the candidates that
    could be taken."""
    chains, dim = x.shape
    shrinks, scene = cfg.shrinks, lik.scene

    def coordinate(j, carry):
        key, x, logp, mism = carry
        key, k_level, k_pos = jax.random.split(key, 3)
        level = logp + jnp.log(jax.random.uniform(k_level, (chains,)))
        start, here = x, x[:, j]
        lo = here - width[j] * jax.random.uniform(k_pos, (chains,))

        def shrink(_, c):
            key, x, logp, mism, lo, hi, done = c
            key, k_try = jax.random.split(key)
            cand = lo + (hi - lo) * jax.random.uniform(k_try, (chains,))
            prop = scene.wrap(start.at[:, j].set(cand))
            x, logp, mism, ok = _taken(lik, prop, beta, level, ~done, x, logp, mism)
            lo = jnp.where(ok, cand, jnp.where(cand < here, cand, lo))  # accepted: collapse
            hi = jnp.where(ok, cand, jnp.where(cand >= here, cand, hi))
            return key, x, logp, mism, lo, hi, done | ok

        init = (key, x, logp, mism, lo, lo + width[j], jnp.zeros(chains, bool))
        key, x, logp, mism, *_ = jax.lax.fori_loop(0, shrinks, shrink, init)
        return key, x, logp, mism

    key, x, logp, mism = jax.lax.fori_loop(0, dim, coordinate, (key, x, logp, mism))
    for _ in range(count(scene, cfg)):
        for half in (0, 1):
            key, sub = jax.random.split(key)
            x, logp, mism = differential(sub, x, logp, mism, beta, lik, shrinks, half)
    return x, logp, mism


def _taken(lik, prop, beta, level, need, x, logp, mism):
    """The candidates `prop` judged (lik.gated) for the rows `need`: each row's state, log
    target and mismatches, the candidate's where it exceeds the level (a chain off the
    posterior, level -inf, takes any point on it), and whether it did."""
    logp_p, mism_p = lik.gated(prop, beta, level, need)
    ok = need & (logp_p > level)
    x = jnp.where(ok[:, None], prop, x)
    return x, jnp.where(ok, logp_p, logp), jnp.where(ok, mism_p, mism), ok


def differential(key, x, logp, mism, beta, lik, shrinks, half):
    """One slice move of half the chains (even or odd rows) along the difference of two
    chains of the other half (ensemble slice sampling's differential move: affine-invariant,
    so it follows a posterior's correlations; the direction does not depend on the moved
    chain, which keeps each chain's target invariant). Only the moving half is evaluated."""
    mine_x, mine_logp, others = x[half::2], logp[half::2], x[1 - half :: 2]
    n, scene = mine_x.shape[0], lik.scene
    k_a, k_b, k_level, k_pos, key = jax.random.split(key, 5)
    a = jax.random.randint(k_a, (n,), 0, others.shape[0])
    b = jax.random.randint(k_b, (n,), 0, others.shape[0])
    direction = others[a] - others[b]  # [n, D]
    level = mine_logp + jnp.log(jax.random.uniform(k_level, (n,)))
    lo = -jax.random.uniform(k_pos, (n,))  # bracket [lo, lo + 1] in units of direction

    def shrink(_, c):
        key, y, logp_y, mism_y, lo, hi, done = c
        key, k_try = jax.random.split(key)
        t = lo + (hi - lo) * jax.random.uniform(k_try, (n,))
        prop = scene.wrap(mine_x + t[:, None] * direction)
        y, logp_y, mism_y, ok = _taken(lik, prop, beta, level, ~done, y, logp_y, mism_y)
        lo = jnp.where(ok, t, jnp.where(t < 0, t, lo))
        hi = jnp.where(ok, t, jnp.where(t >= 0, t, hi))
        return key, y, logp_y, mism_y, lo, hi, done | ok

    init = (key, mine_x, mine_logp, mism[half::2], lo, lo + 1.0, jnp.zeros(n, bool))
    _, y, logp_y, mism_y, *_ = jax.lax.fori_loop(0, shrinks, shrink, init)
    return x.at[half::2].set(y), logp.at[half::2].set(logp_y), mism.at[half::2].set(mism_y)


def count(scene, cfg) -> int:
    """Differential moves per sweep: the config's, else the scene's (Scene.ensemble_moves)."""
    return scene.ensemble_moves if cfg.ensemble_moves is None else cfg.ensemble_moves


WIDTH = 2.5  # slice bracket = this x the chains' spread per coordinate (re-measured per step)


def widths(x, fallback, hard):
    """[D] slice brackets from the chains' spread (WIDTH standard deviations), where the
    chains are copies of one (spread 0) the importance stage's fallback; at most the hard
    bounds' range."""
    spread = jnp.std(x, axis=0)
    return jnp.minimum(jnp.where(spread > 0, WIDTH * spread, fallback), hard[:, 1] - hard[:, 0])
