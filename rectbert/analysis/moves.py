"""The oracle's MCMC moves (smc.py's sweeps): slice sampling coordinate by coordinate, then
differential moves along the difference of two other chains (ensemble slice sampling), each
mapped to the scene's canonical parameters (Scene.wrap) so it may cross a seam."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def slice_sweep(key, x, logp, beta, width, target, scene, cfg):
    """One slice-sampling sweep of every chain, coordinate by coordinate with a shrinking
    bracket, at temperature beta (inf: the exact posterior). A candidate is the scene's
    canonical form of the moved point (Scene.wrap: e.g. rotated's seam, where (w, h, theta)
    is (h, w, theta - pi/2), or a periodic angle), so the bracket may cross the
    parametrisation's edges. Then count(scene, cfg) differential moves of each half of the
    chains. Loops, not unrolled."""
    chains, dim = x.shape
    shrinks = cfg.shrinks

    def coordinate(j, carry):
        key, x, logp = carry
        key, k_level, k_pos = jax.random.split(key, 3)
        level = logp + jnp.log(jax.random.uniform(k_level, (chains,)))
        start, here = x, x[:, j]
        lo = here - width[j] * jax.random.uniform(k_pos, (chains,))

        def shrink(_, c):
            key, x, logp, lo, hi = c
            key, k_try = jax.random.split(key)
            cand = lo + (hi - lo) * jax.random.uniform(k_try, (chains,))
            prop = scene.wrap(start.at[:, j].set(cand))
            logp_p = target(prop, beta)
            ok = logp_p > level  # a chain off the posterior (-inf) takes any point on it
            x = jnp.where(ok[:, None], prop, x)
            logp = jnp.where(ok, logp_p, logp)
            lo = jnp.where(ok, cand, jnp.where(cand < here, cand, lo))  # accepted: collapse
            hi = jnp.where(ok, cand, jnp.where(cand >= here, cand, hi))
            return key, x, logp, lo, hi

        key, x, logp, _, _ = jax.lax.fori_loop(
            0, shrinks, shrink, (key, x, logp, lo, lo + width[j])
        )
        return key, x, logp

    key, x, logp = jax.lax.fori_loop(0, dim, coordinate, (key, x, logp))
    for _ in range(count(scene, cfg)):
        for half in (0, 1):
            key, sub = jax.random.split(key)
            x, logp = differential(sub, x, logp, beta, target, scene, shrinks, half)
    return x, logp


def differential(key, x, logp, beta, target, scene, shrinks, half):
    """One slice move of half the chains (even or odd rows) along the difference of two
    chains of the other half (ensemble slice sampling's differential move: affine-invariant,
    so it follows a posterior's correlations; the direction does not depend on the moved
    chain, which keeps each chain's target invariant). Only the moving half is evaluated."""
    mine_x, mine_logp, others = x[half::2], logp[half::2], x[1 - half :: 2]
    n = mine_x.shape[0]
    k_a, k_b, k_level, k_pos, key = jax.random.split(key, 5)
    a = jax.random.randint(k_a, (n,), 0, others.shape[0])
    b = jax.random.randint(k_b, (n,), 0, others.shape[0])
    direction = others[a] - others[b]  # [n, D]
    level = mine_logp + jnp.log(jax.random.uniform(k_level, (n,)))
    lo = -jax.random.uniform(k_pos, (n,))  # bracket [lo, lo + 1] in units of direction

    def shrink(_, c):
        key, y, logp_y, lo, hi = c
        key, k_try = jax.random.split(key)
        t = lo + (hi - lo) * jax.random.uniform(k_try, (n,))
        prop = scene.wrap(mine_x + t[:, None] * direction)
        logp_p = target(prop, beta)
        ok = logp_p > level
        y = jnp.where(ok[:, None], prop, y)
        logp_y = jnp.where(ok, logp_p, logp_y)
        lo = jnp.where(ok, t, jnp.where(t < 0, t, lo))
        hi = jnp.where(ok, t, jnp.where(t >= 0, t, hi))
        return key, y, logp_y, lo, hi

    init = (key, mine_x, mine_logp, lo, lo + 1.0)
    _, y, logp_y, _, _ = jax.lax.fori_loop(0, shrinks, shrink, init)
    return x.at[half::2].set(y), logp.at[half::2].set(logp_y)


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
