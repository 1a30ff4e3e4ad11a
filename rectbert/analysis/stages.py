"""One replica of the oracle's sampler (smc.py) in two stages, so a mixture can decide
between them per component (mixture.py): `screen`, the importance stage, then `walk`, the
tempered SMC that starts from it, or `settle`, the importance estimate alone. `replica` is
both stages, for one fixed-dimension scene.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rectbert.analysis.smc import (
    Brackets,
    Estimate,
    Likelihood,
    Pool,
    _exact_sweeps,
    _importance,
    _log_q,
    _tempered_move,
    _weighed,
)
from rectbert.geometry import codebook

BETA_SCREEN = 8.0  # the screening bound's temperature: a mismatch weighs exp(-8)


class Screened(NamedTuple):
    """One replica's importance stage, all SMC starts from (arrays: it passes through lax.map
    and lax.cond): SMC's keys, the pool (every round's proposals, their tokens at the seen
    points, mismatches and log weights), the hard bounds [D, 2] and fallback brackets [D],
    the importance Estimate, log U, U = the pool's estimate of E_prior exp(-BETA_SCREEN x
    mismatches) >= Z: a bound on the evidence in expectation only (where no proposal comes
    close it falls short of Z by e^20 or more), so a mixture orders its components and
    sizes their shares by it, never skips one on it (mixture.py); and the proposals a
    round."""

    keys: jax.Array
    params: jax.Array
    tokens: jax.Array
    mism: jax.Array
    log_w: jax.Array
    hard: jax.Array
    fallback: jax.Array
    by_is: Estimate
    log_bound: jax.Array
    per_round: jax.Array  # proposals a round (the evidence's divisor; whatever SMC's config)


def _lik_and_sizes(points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen):
    """The Likelihood, proposals a round and chains (both x points / points seen: where the
    likelihood sees fewer points, the same cost buys more of both, where the posterior is
    broad and they pay)."""
    lik = Likelihood.of(points_Px2, tokens_P, visible_P, centroids_KxG, scene, seen)
    return lik, *sizes(cfg, points_Px2.shape[0], seen)


def sizes(cfg, num_points: int, seen: int | None):
    """(proposals a round, chains) of a replica whose likelihood sees `seen` of num_points
    points: cfg's x num_points / seen."""
    stretch = num_points / (seen or num_points)
    return int(round(cfg.num_samples * stretch)), int(round(cfg.chains * stretch))


def screen(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen=None):
    """replica's importance stage (Screened): adaptive importance sampling, all rounds
    weighted by the balance heuristic (prior / mean of the rounds' proposal densities:
    multiple importance sampling)."""
    lik, n, _ = _lik_and_sizes(points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen)
    # a visible token other than the empty patch's means coverage > 0: the shape meets that
    # point's window, which bounds its parameters (exactly: the box holds the posterior)
    zero_token = codebook.quantise(jnp.zeros(centroids_KxG.shape[1]), centroids_KxG)
    hard = scene.hard_bounds(points_Px2, visible_P & (tokens_P != zero_token))
    key, pool, boxes, share = _importance(key, lik, hard, n, cfg)
    log_prior = scene.log_density(pool.params)
    log_q_mix = jax.nn.logsumexp(
        jax.vmap(lambda b: _log_q(pool.params, log_prior, b, share))(boxes), 0
    )
    pool = dataclasses.replace(pool, log_w=log_prior - log_q_mix)
    key, k_pick, k_walk, k_exact = jax.random.split(key, 4)
    by_is, fallback = _weighed(k_pick, pool, lik, hard, cfg)
    tempered = jnp.where(jnp.isfinite(pool.log_w), pool.log_w - BETA_SCREEN * pool.mism, -jnp.inf)
    log_bound = jax.nn.logsumexp(tempered) - jnp.log(float(n))
    keys = jnp.stack([k_walk, k_exact])
    per_round = jnp.float32(n)
    return Screened(
        keys,
        pool.params,
        pool.tokens,
        pool.mism,
        pool.log_w,
        hard,
        fallback,
        by_is,
        log_bound,
        per_round,
    )


def walk(
    s: Screened, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen=None, floor=None
):
    """replica's SMC stage from its Screened importance stage: tempered SMC, then the counted
    exact sweeps, pooled with the importance estimate: replica's outputs, and the log of a
    bound of the evidence where SMC stopped under `floor` (-inf where it did not). SMC stops
    as soon as its estimate of the tempered evidence Z(beta) >= Z falls under exp(floor) (a
    mixture's component that cannot matter); its estimate is then dropped (the importance
    estimate stays), and no exact sweep runs. floor None: none (no stop, a fixed count of
    exact sweeps: a single scene's program as it was)."""
    lik, _, chains = _lik_and_sizes(
        points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen
    )
    pool = Pool(s.params, s.tokens, s.mism, s.log_w, s.per_round)
    brackets = Brackets(s.hard, s.fallback)
    stretched = dataclasses.replace(cfg, chains=chains)
    x, logp, live_chains, log_z, stopped, log_stop = _tempered_move(
        s.keys[0], pool, brackets, lik, stretched, -jnp.inf if floor is None else floor
    )
    steps = None if floor is None else jnp.where(stopped, 0, cfg.mcmc_steps)
    counts, x, logp = _exact_sweeps(s.keys[1], x, logp, brackets, lik, cfg, steps)
    by_mc = Estimate(counts / jnp.maximum(counts.sum(-1, keepdims=True), 1e-30), live_chains, log_z)
    probs, found, log_z = _pooled(s.by_is, by_mc)
    return probs, found, x, jnp.isfinite(logp), log_z, log_stop


def settle(s: Screened, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen=None):
    """replica's outputs from its importance stage alone (no SMC): the importance estimate,
    and as many states as SMC's chains, resampled from the exact matches by weight (none
    live where there is none)."""
    chains = sizes(cfg, points_Px2.shape[0], seen)[1]
    on = (s.mism == 0) & jnp.isfinite(s.log_w)
    logits = jnp.where(jnp.any(on), jnp.where(on, s.log_w, -jnp.inf), 0.0)
    pick = jax.random.categorical(s.keys[0], logits, shape=(chains,))
    found = s.by_is.weight > 0
    live = jnp.broadcast_to(jnp.any(on), (chains,))
    return s.by_is.probs, found, s.params[pick], live, s.by_is.log_z, jnp.float32(-jnp.inf)


def replica(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen=None):
    """One estimate for one example, of one fixed-dimension scene (a mixture's component):
    the posterior-predictive token probabilities [P, K], whether it found the posterior at
    all, the chains' states, which are on it, and the log evidence (log Z: the prior
    probability of the visible tokens). Importance sampling (screen), then tempered SMC
    (walk). The likelihood looks at `seen` points (the visible ones first: seen_points),
    the counted sweeps' tokens at all of them."""
    args = (points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen)
    return walk(screen(key, *args), *args)[:5]


def _pooled(a: Estimate, b: Estimate):
    """(predictive, whether either found the posterior, log evidence) of two estimates,
    pooled by their weights: importance's by its ESS, SMC's by its chains on the posterior
    (both estimate Z; IS is the sharper one where it found many matches)."""
    weight = a.weight + b.weight
    probs = (a.weight * a.probs + b.weight * b.probs) / jnp.maximum(weight, 1e-30)
    log_z = jax.nn.logsumexp(
        jnp.stack([a.log_z, b.log_z]),
        b=jnp.stack([a.weight, b.weight]) / jnp.maximum(weight, 1e-30),
    )
    return probs, weight > 0, log_z
