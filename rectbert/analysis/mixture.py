"""The oracle's mixture: every component of a scene's prior (Scene.components, or one program
scanned over Scene.component_batch) screened, then sampled where it matters by two replicas
(stages.py), weighed by its evidence;
the posterior predictive, the ESS measured from the replicas, p(component | visible), the
evidence and its Monte Carlo error, and chain states in the scene's own parameters.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from rectbert.analysis.smc import _mean_exp
from rectbert.analysis.stages import screen, settle, sizes, walk


def posterior_one(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen=None):
    """For one example: posterior-predictive token probabilities [P, K], the ESS, the chains'
    states [C, D] and which are on the posterior [C], the posterior over the scene's
    components [M], the log evidence with its Monte Carlo error (both replicas' totals),
    how each component was sampled [M] (_component_runs) and the share of the evidence left
    out by the screening, at most (_dropped).

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
    runs, log_prior_m, walked, log_bound_m = _component_runs(
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
    dropped = _dropped(walked, log_z_m2, log_prior_m, log_bound_m, runs[5], log_evidence)
    return probs, ess, x, live, components, log_evidence, error, walked, dropped


def _dropped(tiers_M, log_z_Mx2, log_prior_M, log_bound_M, log_stop_Mx2, log_evidence):
    """The share of the evidence left out, at most (as far as the estimates of the bounds
    go): the screening's bounds of components settled by importance with no exact match,
    and SMC's of the runs stopped under their floor (STOPPED)."""
    out = (tiers_M == 0) & ~jnp.any(jnp.isfinite(log_z_Mx2), -1)
    log_out = jnp.logaddexp(
        jax.nn.logsumexp(jnp.where(out, log_prior_M + log_bound_M, -jnp.inf)),
        jax.nn.logsumexp(log_prior_M + _mean_exp(log_stop_Mx2)),
    )
    dropped = jnp.exp(log_out - jnp.logaddexp(log_out, log_evidence))
    return jnp.where(jnp.isfinite(log_out), jnp.nan_to_num(dropped, nan=1.0), 0.0)


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


STOP = 1e-4  # a component's SMC stops once its evidence bound is under this share of the
# evidence already found (stages.walk's floor)
STOPPED = 3  # after screened()'s tiers 0-2: a component whose SMC stopped under its floor


def _component_runs(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg, seen):
    """Both replicas of every component, each output stacked over components ([M, 2, ...];
    chain states lifted into the scene's parameters; the last, [M, 2], the log bound of an
    evidence whose SMC stopped under its floor), [M] log p(m), [M] how each was sampled
    (screened()'s tiers, STOPPED for one whose SMC stopped under its floor) and [M] the log
    evidence bounds of the screening.

    Every component is screened first (stages.screen), then runs SMC or is settled by
    importance alone (the replicas share that). Components of one shape (a set of drawings:
    Scene.component_batch) are scanned in order of bound, each SMC stopping once it cannot
    hold STOP of the evidence found so far (each replica on its own estimate); others (of
    different dimensions) are unrolled in their own order, SMC to the end (_unrolled)."""
    batch = scene.component_batch()
    args = (points_Px2, tokens_P, visible_P, centroids_KxG)
    if batch is None:
        return _unrolled(key, args, scene, cfg, seen)
    log_prior, scene_of = batch
    log_prior = jnp.asarray(log_prior, jnp.float32)
    m_all = jnp.arange(log_prior.shape[0])
    keys = jax.random.split(key, log_prior.shape[0])
    share = _half(shared_budget(cfg, log_prior.shape[0]))
    screens = jax.lax.map(
        lambda a: _both(lambda k: screen(k, *args, scene_of(a[1]), share, seen), a[0]),
        (keys, m_all),
    )  # [M, 2, ...]
    # the FULL components of largest bound run SMC with the whole config's chains (the
    # screening's proposals stay shared); others with the shared chains
    full = share
    if cfg.screen:
        full = dataclasses.replace(share, chains=max(cfg.chains // 2, share.chains))
    big = sizes(full, points_Px2.shape[0], seen)[1]
    tiers = screened(_scalars(screens.log_bound, screens.by_is), log_prior, full.chains, cfg.screen)
    log_bound = _mean_exp(screens.log_bound)

    def one(ref, a):
        s, m, tier = a
        part = scene_of(m)

        def run(tier, floor):
            floor = floor if cfg.screen else None
            return jax.lax.switch(
                tier,
                [
                    lambda: _both_of(settle, s, args, part, full, seen),
                    lambda: _padded(_both_of(walk, s, args, part, share, seen, floor), big),
                    lambda: _both_of(walk, s, args, part, full, seen, floor),
                ],
            )

        ref, out, tier = _turn(ref, tier, log_prior[m], cfg, run)
        lifted = scene.lift(m, out[2].reshape(-1, out[2].shape[-1]))
        return ref, ((*out[:2], lifted, *out[3:]), tier)

    order = jnp.argsort(-(log_prior + log_bound))
    pick = jax.tree.map(lambda x: x[order], (screens, m_all, tiers))
    ref = _settled_evidence(screens.by_is, log_prior, tiers)
    _, (runs, tiers) = jax.lax.scan(one, ref, pick)
    runs, tiers = jax.tree.map(lambda x: x[jnp.argsort(order)], (runs, tiers))
    return runs, log_prior, tiers, log_bound


def _turn(ref, tier, log_prior, cfg, run):
    """One component's turn: its floor (the log evidence under which its SMC stops: STOP of
    the evidence `ref` found so far, over its prior); run(tier, floor)'s outputs; `ref` with
    what it found; its tier, STOPPED where either replica's SMC stopped under the floor.
    (ref, outputs, tier).

    The screening's bound does not decide whether SMC starts: it is a Monte Carlo estimate
    (of E_prior exp(-8 mismatches)), and where importance finds nothing close (many
    visible points, many parameters) it can fall short of the evidence by e^20 or more
    (measured on rects with 1-4 rectangles at 20 visible: the 4-rectangle component, not
    started, was given p = 0 where it held most of the posterior). SMC's own running
    estimate of the tempered evidence, from chains it has moved, decides the stop."""
    floor = ref + math.log(STOP) - log_prior if cfg.screen else jnp.float32(-jnp.inf)
    out = run(tier, floor)
    found = jnp.logaddexp(ref, log_prior + _mean_exp(out[4]))
    stopped = (tier > 0) & jnp.any(jnp.isfinite(out[5]))
    return jnp.where(tier > 0, found, ref), out, jnp.where(stopped, STOPPED, tier)


def _settled_evidence(by_is, log_prior_M, tiers_M):
    """log of the evidence the components settled by importance alone found: where SMC's
    floors start."""
    return jax.nn.logsumexp(jnp.where(tiers_M == 0, log_prior_M + _is_evidence(by_is), -jnp.inf))


def _is_evidence(by_is):
    """[M] log of the importance estimates of the evidence, the two replicas' mean."""
    return _mean_exp(jnp.where(by_is.weight > 0, by_is.log_z, -jnp.inf))


def _unrolled(key, args, scene, cfg, seen):
    """_component_runs of components of different shapes (Scene.components), in their order,
    each settled by importance or run by SMC to the end (no floor: they are few, so a stop
    saves little, and in up to 16 parameters SMC's running evidence is too noisy to stop on.
    Measured on rects of 1-4 rectangles at 20 visible: one replica stopped on the
    4-rectangle component where it held p = 0.92-0.997); a single one (rect, rotated) runs
    SMC to the end, its program as it was."""
    parts = scene.components()
    log_prior = jnp.asarray([w for w, _ in parts], jnp.float32)
    keys = jax.random.split(key, len(parts))
    half = _half(cfg)
    screens = [
        _both(lambda k, sc=sc: screen(k, *args, sc, half, seen), kc, sc.branches)
        for kc, (_, sc) in zip(keys, parts, strict=True)
    ]
    # what the screening reads, stacked (the components' states differ in shape)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *((s.log_bound, s.by_is) for s in screens))
    tiers = screened(_scalars(*stacked), log_prior, half.chains, cfg.screen)
    log_bound = _mean_exp(stacked[0])
    runs = []
    for m, (s, (_, sc)) in enumerate(zip(screens, parts, strict=True)):

        def smc(s=s, sc=sc):
            return _both_of(walk, s, args, sc, half, seen)

        if len(parts) == 1 or not cfg.screen:  # no choice: every one runs SMC
            out = smc()
        else:
            out = jax.lax.cond(
                tiers[m] > 0, smc, lambda s=s, sc=sc: _both_of(settle, s, args, sc, half, seen)
            )
        runs.append((*out[:2], scene.lift(m, out[2].reshape(-1, out[2].shape[-1])), *out[3:]))
    runs = [jnp.stack([r[i] for r in runs]) for i in range(6)]
    return runs, log_prior, tiers, log_bound


def _half(cfg):
    """Each replica's config: half the proposals and chains."""
    return dataclasses.replace(cfg, num_samples=cfg.num_samples // 2, chains=cfg.chains // 2)


def _both(fn, key, branches=False):
    """fn(key) of both replicas' keys (split(key)), stacked: one after the other where the
    coverage branches (lax.cond: vmap would compute both branches), else as one batch."""
    keys = jax.random.split(key)
    return jax.lax.map(fn, keys) if branches else jax.vmap(fn)(keys)


def _both_of(fn, s, args, scene, cfg, seen, *more):
    """fn(one replica's Screened, *args, scene, cfg, seen, *more) of both replicas, stacked."""

    def one(r):
        return fn(r, *args, scene, cfg, seen, *more)

    return jax.lax.map(one, s) if scene.branches else jax.vmap(one)(s)


def _padded(out, chains: int):
    """Both replicas' outputs with their states padded to `chains` a replica (copies of the
    last, not live)."""
    probs, found, x, live, *rest = out
    more = chains - x.shape[1]
    x = jnp.concatenate([x, jnp.repeat(x[:, -1:], more, 1)], 1)
    live = jnp.concatenate([live, jnp.zeros((2, more), bool)], 1)
    return probs, found, x, live, *rest


def _scalars(log_bound_Mx2, by_is):
    """What screened() reads of the components' Screened ([M, 2, ...]): [M, 2] log evidence
    bounds, [M, 2] importance ESS, [M] the importance estimates' log evidence."""
    return log_bound_Mx2, by_is.weight, _is_evidence(by_is)


FULL = 1  # of a set's components, the FULL of largest bound run with the whole config's chains


def screened(scalars, log_prior_M, chains: int, screen: bool = True):
    """[M] how each component is sampled, from its importance stage (stages.Screened): 0 by
    its importance estimate alone (stages.settle), 1 SMC, 2 SMC with the whole config's
    chains (a set's FULL of largest evidence bound; the others the shared budget; a mixture
    of components of different shapes runs each on the whole config). A single component,
    and every one where screen=False, runs SMC (2).

    A component runs SMC unless importance's ESS (both replicas) is at least its share of
    `chains` (the ESS a replica aims at: the config's chains, not stretched): the mixture's
    predictive, whose variance is the sum of share^2 / ESS, is then as sharp as one of
    `chains`. Its share is taken at its largest: its evidence bound (Screened.log_bound, the
    replicas' mean) x p(m), over that plus the others' importance estimates x p."""
    log_bound_Mx2, ess_Mx2, log_z_M = scalars
    m_count = log_prior_M.shape[0]
    if m_count == 1 or not screen:
        return jnp.full(m_count, 2, jnp.int32)
    log_b = log_prior_M + _mean_exp(log_bound_Mx2)
    log_z = log_prior_M + log_z_M
    others = jnp.where(jnp.eye(m_count, dtype=bool), -jnp.inf, log_z[None, :])
    log_share = log_b - jnp.logaddexp(log_b, jax.nn.logsumexp(others, -1))
    log_share = jnp.where(jnp.isnan(log_share), 0.0, log_share)  # -inf - -inf: say 1
    # in logs: a share of e^-90 is no float32's 0 (which any ESS, even 0, would meet)
    go = jnp.log(jnp.min(ess_Mx2, -1)) < log_share + math.log(chains)
    rank = jnp.argsort(jnp.argsort(-jnp.where(go, log_b, -jnp.inf)))
    return jnp.where(go, jnp.where(rank < FULL, 2, 1), 0).astype(jnp.int32)


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
