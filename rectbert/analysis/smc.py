"""The oracle's sampler: adaptive importance sampling, then tempered sequential Monte Carlo
with slice-sampling moves, in two independent replicas whose disagreement measures the ESS.

Everything here is traced inside one jit per (scene, config); `cfg` is an oracle.OracleConfig.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rectbert.geometry import codebook


def _uniform_in(key, box_Dx2, n):
    u = jax.random.uniform(key, (n, box_Dx2.shape[0]))
    return box_Dx2[:, 0] + u * (box_Dx2[:, 1] - box_Dx2[:, 0])


def _log_volume(box_Dx2):
    return jnp.sum(jnp.log(jnp.maximum(box_Dx2[:, 1] - box_Dx2[:, 0], 1e-6)))


def _inside(params_NxD, box_Dx2):
    return jnp.all((params_NxD >= box_Dx2[:, 0]) & (params_NxD <= box_Dx2[:, 1]), axis=-1)


def _tokens(scene, params_NxD, points_Px2, centroids_KxG):
    """[N, P] the task's token function (exact coverage, then nearest centroid)."""
    points = jnp.broadcast_to(points_Px2, (params_NxD.shape[0], *points_Px2.shape))
    return codebook.quantise(scene.coverage(params_NxD, points), centroids_KxG)


def _log_q(params_NxD, log_prior_N, box_Dx2, share):
    """log density of one round's proposal: share x prior + (1 - share) x U(box)."""
    inside = _inside(params_NxD, box_Dx2)
    return jnp.logaddexp(
        jnp.log(share) + log_prior_N,
        jnp.where(inside, jnp.log1p(-share) - _log_volume(box_Dx2), -jnp.inf),
    )


def _importance(key, hard, tokens_of, scene, tokens_P, visible_P, cfg):
    """Adaptive importance sampling: each round proposes uniformly in a box (the hard bounds
    first) plus a defensive share from the prior itself (which holds the whole posterior, and
    finds it as often as rejection sampling would); the box is
    refitted to the round's best samples (exact matches once there are enough, else the
    fewest mismatches: tempering). Returns every round's (params, tokens, mismatches), stacked
    round after round, and the boxes they were drawn from. Rounds are a scan: compiled once."""
    n, n_def = cfg.num_samples, int(round(cfg.num_samples * cfg.defensive))

    def one_round(carry, _):
        key, box = carry
        key, k_def, k_box = jax.random.split(key, 3)
        params = jnp.concatenate([scene.sample(k_def, n_def), _uniform_in(k_box, box, n - n_def)])
        toks_NxP = tokens_of(params)
        mism = jnp.sum((toks_NxP != tokens_P) & visible_P, axis=-1)
        mism = jnp.where(jnp.isfinite(scene.log_density(params)), mism, 10**6)
        # refit the box: exact matches when there are enough, else the best `keep` share
        cut = jnp.where(jnp.sum(mism == 0) >= 32, 0, jnp.sort(mism)[int(cfg.keep * n)])
        kept = (mism <= cut)[:, None]
        lo = jnp.min(jnp.where(kept, params, jnp.inf), axis=0)
        hi = jnp.max(jnp.where(kept, params, -jnp.inf), axis=0)
        pad = cfg.margin * (hi - lo) + 2.0
        new = jnp.stack([jnp.maximum(lo - pad, hard[:, 0]), jnp.minimum(hi + pad, hard[:, 1])], 1)
        return (key, new), (params, toks_NxP, mism, box)

    (key, _), (params, toks, mism, boxes) = jax.lax.scan(
        one_round, (key, hard), None, length=cfg.rounds
    )
    flat = (params.reshape(-1, params.shape[-1]), toks.reshape(-1, toks.shape[-1]), mism.ravel())
    return key, *flat, boxes, n_def / n


def _ess(log_w):
    w = jnp.exp(log_w - jnp.max(log_w))
    return jnp.sum(w) ** 2 / jnp.maximum(jnp.sum(w**2), 1e-30)


def _next_beta(beta, mism, target_ess, base_log_w=0.0):
    """The largest beta' in [beta, BETA_MAX] whose reweighting base x exp(-(beta' - beta) x
    mismatches) keeps an ESS of target_ess (bisection; mismatches are small integers)."""

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = _ess(base_log_w - (mid - beta) * mism) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    hi = jnp.float32(BETA_MAX)
    lo, _ = jax.lax.fori_loop(0, 30, body, (beta, hi))
    return jnp.where(_ess(base_log_w - (hi - beta) * mism) >= target_ess, hi, lo)


BETA_MAX = 40.0  # a mismatch weighs exp(-40): past this the tempering jumps to the posterior


def _slice_sweep(key, x, logp, t, beta, width, target, cfg):
    """One slice-sampling sweep of every chain, coordinate by coordinate with a shrinking
    bracket, at temperature beta (inf: the exact posterior). Loops, not unrolled."""
    chains, dim = x.shape

    def coordinate(j, carry):
        key, x, logp, t = carry
        key, k_level, k_pos = jax.random.split(key, 3)
        level = logp + jnp.log(jax.random.uniform(k_level, (chains,)))
        lo = x[:, j] - width[j] * jax.random.uniform(k_pos, (chains,))

        def shrink(_, c):
            key, x, logp, t, lo, hi = c
            key, k_try = jax.random.split(key)
            cand = lo + (hi - lo) * jax.random.uniform(k_try, (chains,))
            prop = x.at[:, j].set(cand)
            logp_p, t_p = target(prop, beta)
            ok = logp_p > level  # a chain off the posterior (-inf) takes any point on it
            x = jnp.where(ok[:, None], prop, x)
            logp, t = jnp.where(ok, logp_p, logp), jnp.where(ok[:, None], t_p, t)
            lo = jnp.where(ok, x[:, j], jnp.where(cand < x[:, j], cand, lo))
            hi = jnp.where(ok, x[:, j], jnp.where(cand >= x[:, j], cand, hi))
            return key, x, logp, t, lo, hi

        key, x, logp, t, _, _ = jax.lax.fori_loop(
            0, cfg.shrinks, shrink, (key, x, logp, t, lo, lo + width[j])
        )
        return key, x, logp, t

    _, x, logp, t = jax.lax.fori_loop(0, dim, coordinate, (key, x, logp, t))
    return x, logp, t


def _tempered_move(key, pool, pool_log_w, pool_mism, width, target, mismatches, k, cfg):
    """Sequential Monte Carlo from the importance pool to the posterior: chains drawn from the
    pool tempered at the largest beta that keeps an ESS of `chains` (weights prior / proposal
    x exp(-beta x mismatches)), then per annealed sweep: beta raised adaptively (ESS half the
    chains), chains reweighted and resampled, one slice sweep at beta, until beta reaches
    BETA_MAX or anneal_steps. Last, the exact
    posterior: chains off it dropped by resampling, then `mcmc_steps` exact sweeps whose
    token counts are the estimate. Returns (states, log posterior, counts [P, K], how many
    chains were on the posterior before that last resampling)."""
    c = cfg.chains
    key, k_start = jax.random.split(key)
    base = jnp.where(jnp.isfinite(pool_log_w), pool_log_w, -1e30)
    beta = _next_beta(jnp.float32(0.0), pool_mism, float(c), base)
    start = jnp.where(jnp.isfinite(pool_log_w), pool_log_w - beta * pool_mism, -jnp.inf)
    x = pool[jax.random.categorical(k_start, start, shape=(c,))]

    def anneal(carry):
        key, x, mism, beta, i = carry
        key, k_pick, k_move = jax.random.split(key, 3)
        nxt = _next_beta(beta, mism, c / 2)
        x = x[jax.random.categorical(k_pick, -(nxt - beta) * mism, shape=(c,))]
        logp, t = target(x, nxt)
        x, _, _ = _slice_sweep(k_move, x, logp, t, nxt, width, target, cfg)
        return key, x, mismatches(x), nxt, i + 1

    def cold(carry):
        # go on until a mismatch weighs exp(-BETA_MAX) and half the chains are on the
        # posterior (chains all tied at one mismatch leave the ESS alone: beta jumps to the
        # cap without any chain on the posterior), or anneal_steps
        _, _, mism, beta, i = carry
        done = (beta >= BETA_MAX) & (jnp.mean(mism == 0) >= 0.5)
        return (i < cfg.anneal_steps) & ~done

    key, x, _, _, _ = jax.lax.while_loop(cold, anneal, (key, x, mismatches(x), beta, 0))
    key, k_pick = jax.random.split(key)
    on = mismatches(x) == 0
    distinct = jnp.sum(on)
    x = x[jax.random.categorical(k_pick, jnp.where(on, 0.0, -jnp.inf), shape=(c,))]

    def exact(_, carry):
        key, x, logp, t, counts = carry
        key, k_move = jax.random.split(key)
        x, logp, t = _slice_sweep(k_move, x, logp, t, jnp.inf, width, target, cfg)
        live = jnp.isfinite(logp).astype(jnp.float32)
        return key, x, logp, t, counts + jnp.einsum("c,cpk->pk", live, jax.nn.one_hot(t, k))

    logp, t = target(x, jnp.inf)
    counts = jnp.zeros((t.shape[1], k))
    _, x, logp, _, counts = jax.lax.fori_loop(0, cfg.mcmc_steps, exact, (key, x, logp, t, counts))
    return x, logp, counts, jnp.where(jnp.any(on), distinct, 0)


def replica(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg):
    """One estimate of the posterior-predictive token probabilities [P, K] for one example
    (and whether it found the posterior at all, the chains' states, which are on it):
    importance sampling, all rounds weighted by the balance heuristic (prior / mean of the
    rounds' proposal densities: multiple importance sampling), then tempered SMC."""
    k = centroids_KxG.shape[0]
    # a visible token other than the empty patch's means coverage > 0: the shape meets that
    # point's window, which bounds its parameters (exactly: the box holds the posterior)
    zero_token = codebook.quantise(jnp.zeros(centroids_KxG.shape[1]), centroids_KxG)
    hard = scene.hard_bounds(points_Px2, visible_P & (tokens_P != zero_token))

    def tokens_of(params):
        return _tokens(scene, params, points_Px2, centroids_KxG)

    key, params, toks, mism, boxes, share = _importance(
        key, hard, tokens_of, scene, tokens_P, visible_P, cfg
    )
    log_prior = scene.log_density(params)
    log_q_mix = jax.nn.logsumexp(jax.vmap(lambda b: _log_q(params, log_prior, b, share))(boxes), 0)
    log_w = jnp.where(mism == 0, scene.log_density(params) - log_q_mix, -jnp.inf)
    top = jnp.max(log_w)
    w = jnp.exp(log_w - jnp.where(jnp.isfinite(top), top, 0.0))  # all 0 when nothing matched
    w_sum = jnp.sum(w)
    ess_is = jnp.where(w_sum > 0, w_sum**2 / jnp.maximum(jnp.sum(w**2), 1e-30), 0.0)
    probs_is = jnp.einsum("n,npk->pk", w, jax.nn.one_hot(toks, k))
    probs_is = probs_is / jnp.maximum(w_sum, 1e-30)
    # tempered sequential Monte Carlo from the whole pool (prior / mixture proposal weights)
    mean = (w @ params) / jnp.maximum(w_sum, 1e-30)
    spread = jnp.sqrt((w @ (params - mean) ** 2) / jnp.maximum(w_sum, 1e-30))
    scale = jnp.where(w_sum > 0, jnp.clip(spread, 0.5, 32.0), 8.0)
    width = jnp.minimum(hard[:, 1] - hard[:, 0], 8.0 * scale)

    def mismatches(r):
        return jnp.sum((tokens_of(r) != tokens_P) & visible_P, axis=-1)

    def target(r, beta):
        t = tokens_of(r)
        mism = jnp.sum((t != tokens_P) & visible_P, axis=-1)
        log_p = scene.log_density(r)
        return jnp.where(mism == 0, log_p, log_p - beta * mism), t

    pool_log_w = scene.log_density(params) - log_q_mix
    key, k_walk = jax.random.split(key)
    x, logp, counts, live_chains = _tempered_move(
        k_walk, params, pool_log_w, mism, width, target, mismatches, k, cfg
    )
    probs_mc = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1e-30)
    weight = ess_is + live_chains  # the two estimates pooled by importance ESS and chains
    probs = (ess_is * probs_is + live_chains * probs_mc) / jnp.maximum(weight, 1e-30)
    return probs, weight > 0, x, jnp.isfinite(logp)


def posterior_one(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg):
    """Posterior-predictive token probabilities [P, K] and the ESS for one example, from two
    independent replicas of half the samples and chains each (`replica`), averaged.

    The ESS is measured, not counted: resampled chains are copies, decorrelated only as far
    as their moves go, so counting chains overstates it and counting their ancestors
    understates it. Two independent estimates of n/2 samples each differ by
    E (p1 - p2)^2 = 4 p (1 - p) / n per token and class, so n = 4 sum p(1 - p) / sum
    (p1 - p2)^2 over the hidden tokens (at most `chains`; 0 when a replica found nothing)."""
    half = dataclasses.replace(cfg, num_samples=cfg.num_samples // 2, chains=cfg.chains // 2)
    probs2, found2, x2, live2 = jax.vmap(
        lambda k: replica(k, points_Px2, tokens_P, visible_P, centroids_KxG, scene, half)
    )(jax.random.split(key))
    k = centroids_KxG.shape[0]
    hidden = (~visible_P)[:, None]
    both = jnp.all(found2)
    mean = jnp.where(both, probs2.mean(0), jnp.where(found2[0], probs2[0], probs2[1]))
    spread = jnp.sum(jnp.where(hidden, mean * (1 - mean), 0.0))
    diff2 = jnp.sum(jnp.where(hidden, (probs2[0] - probs2[1]) ** 2, 0.0))
    # replicas that agree exactly (certain tokens) differ by nothing: the ESS is the cap
    ess = jnp.minimum(4 * spread / jnp.maximum(diff2, 1e-12), float(cfg.chains))
    ess = jnp.where(both, jnp.where(diff2 > 0, ess, float(cfg.chains)), 0.0)
    uniform = jnp.full((points_Px2.shape[0], k), 1.0 / k)
    probs = jnp.where(jnp.any(found2), mean, uniform)
    return probs, ess, x2.reshape(-1, x2.shape[-1]), live2.reshape(-1)
