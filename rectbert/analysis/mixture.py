"""The oracle's mixture: every component of a scene's prior (Scene.components, or one program
mapped over Scene.component_batch) sampled by smc's two replicas, weighed by its evidence;
the posterior predictive, the ESS measured from the replicas, p(component | visible), the
evidence and its Monte Carlo error, and chain states in the scene's own parameters.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from rectbert.analysis.smc import _mean_exp, _replicas


def posterior_one(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen=None):
    """For one example: posterior-predictive token probabilities [P, K], the ESS, the chains'
    states [C, D] and which are on the posterior [C], the posterior over the scene's
    components [M] and the log evidence with its Monte Carlo error (both replicas' totals).

    A scene whose prior is a mixture of fixed-dimension components (Scene.components: e.g.
    junction's 2, 3 or 4 strokes) is sampled per component and the components weighed by
    their evidence, p(m | visible) = p(m) Z_m / sum; the predictive is the mixture.

    The ESS is measured, not counted: resampled chains are copies, decorrelated only as far
    as their moves go, so counting chains overstates it and counting their ancestors
    understates it. Two independent estimates of n/2 samples each differ by
    E (p1 - p2)^2 = 4 p (1 - p) / n per token and class, so n = 4 sum p(1 - p) / sum
    (p1 - p2)^2 over the hidden tokens (at most `chains`; 0 when a replica found nothing).
    Each replica's estimate is its own mixture (its own evidences): the ESS measures the
    weighing's noise too."""
    runs, log_prior_m = _component_runs(
        key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen
    )
    probs_m2 = runs[0]  # [M, 2, P, K]
    log_z_m2 = jnp.where(runs[1], runs[4], -jnp.inf)  # [M, 2]
    log_joint = log_prior_m[:, None] + log_z_m2  # [M, 2]
    found2 = jnp.any(jnp.isfinite(log_joint), 0)  # [2]
    mix2 = jax.nn.softmax(jnp.where(found2[None], log_joint, 0.0), axis=0)  # [M, 2]
    probs2 = jnp.einsum("mr,mrpk->rpk", mix2, probs_m2)
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
    # the components' posterior and the evidence, from both replicas' estimates pooled
    log_pooled = _mean_exp(log_joint)  # [M]: log p(m) + log mean of the two Z_m
    components = jax.nn.softmax(jnp.where(jnp.any(found2), log_pooled, log_prior_m))
    log_evidence = jax.nn.logsumexp(log_pooled)
    z2 = jnp.exp(jax.nn.logsumexp(log_joint, 0) - jnp.where(jnp.any(found2), log_evidence, 0.0))
    error = jnp.where(both, jnp.abs(z2[0] - z2[1]) / jnp.maximum(z2[0] + z2[1], 1e-30), jnp.inf)
    pick_key = jax.random.split(key, runs[0].shape[0])[0]
    x, live = _pick_chains(pick_key, runs, scene, components, cfg.chains)
    return probs, ess, x, live, components, log_evidence, error


def shared_budget(cfg, m_count: int):
    """The config each of m_count batched components runs with: proposals and chains
    divided by sqrt(m_count) (26 glyphs: by 5), at least 128 and 16. The components that
    explain the points matter, and they are few where there are many; the measured ESS
    (the two replicas' disagreement) says what the shared budget costs."""
    if m_count <= 1:
        return cfg
    root = math.sqrt(m_count)
    samples = max(128, 2 * round(cfg.num_samples / root / 2))  # each replica >= 64
    chains = max(16, 2 * round(cfg.chains / root / 2))
    return dataclasses.replace(cfg, num_samples=samples, chains=chains)


def _component_runs(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen):
    """Both replicas of every component (_replicas), each output stacked over components
    ([M, 2, ...]; chain states lifted into the scene's parameters), and [M] log p(m).

    Components of one shape (Scene.component_batch: e.g. one per glyph) run as one program
    mapped over their index; others (junction's 2-4 strokes: different dimensions) each as
    its own, unrolled."""
    batch = scene.component_batch()
    args = (points_Px2, tokens_P, visible_P, centroids_KxG)
    if batch is not None:
        log_prior, scene_of = batch
        m_all = jnp.arange(len(log_prior))
        keys = jax.random.split(key, len(log_prior))
        share = shared_budget(cfg, len(log_prior))

        def one(a):
            k, m = a
            out = _replicas(k, *args, scene_of(m), share, seen)
            return (*out[:2], scene.lift(m, out[2].reshape(-1, out[2].shape[-1])), *out[3:])

        runs = jax.lax.map(one, (keys, m_all))
        return runs, jnp.asarray(log_prior, jnp.float32)
    parts = scene.components()
    keys = jax.random.split(key, len(parts))
    runs = []
    for m, (kc, (_, sc)) in enumerate(zip(keys, parts, strict=True)):
        out = _replicas(kc, *args, sc, cfg, seen)
        runs.append((*out[:2], scene.lift(m, out[2].reshape(-1, out[2].shape[-1])), *out[3:]))
    stacked = [jnp.stack([r[i] for r in runs]) for i in range(5)]
    return stacked, jnp.asarray([w for w, _ in parts], jnp.float32)


def _pick_chains(key, runs, scene, components_M, chains):
    """[C, D] chain states in the scene's own parametrisation and [C] which are on the
    posterior (C = chains; a replica may have run more): one component's own; a mixture's
    drawn from every component's live chains, each component with its posterior weight.
    runs: the stacked replicas (_component_runs), states [M, 2 x C', D] lifted."""
    x_m, live_m = runs[2], runs[3].reshape(runs[3].shape[0], -1)  # [M, S, D], [M, S]
    m_count = x_m.shape[0]
    if m_count == 1:  # each replica's first chains (exchangeable): chains // 2 of each
        x = x_m[0].reshape(2, -1, x_m.shape[-1])[:, : chains // 2]
        on = live_m[0].reshape(2, -1)[:, : chains // 2]
        return x.reshape(-1, x.shape[-1]), on.reshape(-1)
    live_count = jnp.maximum(jnp.sum(live_m, -1, keepdims=True), 1)  # [M, 1]
    per = jnp.log(components_M)[:, None] - jnp.log(live_count)  # each live chain's share
    per = jnp.broadcast_to(per, live_m.shape).reshape(-1)
    x, live = x_m.reshape(-1, x_m.shape[-1]), live_m.reshape(-1)
    pick = jax.random.categorical(key, jnp.where(live, per, -jnp.inf), shape=(chains,))
    return x[pick], live[pick]
