"""The Bayes-optimal predictor of the sparse task: posterior over rectangles given the visible
(point, token) pairs, by adaptive importance sampling, and its posterior-predictive tokens.

The ceiling every sparse model is measured against (uniform point sampling).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import codebook, prior, shapes


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    num_samples: int = 1024  # proposals per round, per example
    rounds: int = 4  # round 0 proposes from the hard bounds; later rounds adapt a box
    keep: float = 0.05  # a round's box is fitted to its best (fewest mismatches) 5 %
    defensive: float = 0.1  # share of each round drawn from the hard bounds (full support)
    margin: float = 0.25  # fitted box = kept range +- margin x range (+ 2 px)
    min_ess: float = 30.0  # below this (IS ESS + consistent chains) an example is unreliable
    chains: int = 192  # resample-move: MCMC chains started from the weighted samples
    mcmc_steps: int = 6  # slice sweeps per chain: the first half annealed, the rest exact
    shrinks: int = 3  # tries per coordinate and sweep


def hard_box(points_Px2, tokens_P, visible_P, zero_token, prior_kw, size=shapes.CANVAS):
    """[4, 2] bounds on (x0, y0, x1, y1) that every consistent rectangle satisfies.

    Exact: a visible token other than the empty patch's token means coverage > 0, so the
    rectangle intersects that point's window; the prior bounds the rest.
    """
    half = shapes.CELL * shapes.GRID / 2
    min_side = prior_kw.get("min_side", 32.0)
    hit = visible_P & (tokens_P != zero_token)
    big = jnp.float32(1e9)
    x0_hi = jnp.minimum(size - min_side, jnp.min(jnp.where(hit, points_Px2[:, 0] + half, big)))
    y0_hi = jnp.minimum(size - min_side, jnp.min(jnp.where(hit, points_Px2[:, 1] + half, big)))
    x1_lo = jnp.maximum(min_side, jnp.max(jnp.where(hit, points_Px2[:, 0] - half, -big)))
    y1_lo = jnp.maximum(min_side, jnp.max(jnp.where(hit, points_Px2[:, 1] - half, -big)))
    zero, top = jnp.float32(0.0), jnp.float32(size)
    return jnp.stack(
        [
            jnp.stack([zero, x0_hi]),
            jnp.stack([zero, y0_hi]),
            jnp.stack([x1_lo, top]),
            jnp.stack([y1_lo, top]),
        ]
    )


def _uniform_in(key, box_4x2, n):
    u = jax.random.uniform(key, (n, 4))
    return box_4x2[:, 0] + u * (box_4x2[:, 1] - box_4x2[:, 0])


def _log_volume(box_4x2):
    return jnp.sum(jnp.log(jnp.maximum(box_4x2[:, 1] - box_4x2[:, 0], 1e-6)))


def _inside(rects_Nx4, box_4x2):
    return jnp.all((rects_Nx4 >= box_4x2[:, 0]) & (rects_Nx4 <= box_4x2[:, 1]), axis=-1)


def _tokens(rects_Nx4, points_Px2, centroids_KxG):
    """[N, P] the task's token function (coverage, then nearest centroid) for N rectangles."""
    points = jnp.broadcast_to(points_Px2, (rects_Nx4.shape[0], *points_Px2.shape))
    return codebook.quantise(
        shapes._coverage(rects_Nx4, points, shapes.CELL, shapes.GRID), centroids_KxG
    )


def _log_q(rects_Nx4, hard_4x2, box_4x2, share):
    """log density of one round's proposal: share x U(hard) + (1 - share) x U(box)."""
    return jnp.logaddexp(
        jnp.log(share) - _log_volume(hard_4x2),
        jnp.where(_inside(rects_Nx4, box_4x2), jnp.log1p(-share) - _log_volume(box_4x2), -jnp.inf),
    )


def _posterior_one(key, points_Px2, tokens_P, visible_P, centroids_KxG, prior_kw, cfg):
    """Posterior-predictive token probabilities [P, K] and the ESS for one example.

    Adaptive importance sampling: each round proposes uniformly in a box (plus a defensive
    share over the hard bounds, which contain the whole posterior); the box is refitted to
    the round's best samples (exact matches once there are enough, else the fewest
    mismatches: tempering). All rounds' samples are weighted by the balance heuristic,
    prior / mean of the rounds' proposal densities (multiple importance sampling).
    """
    k = centroids_KxG.shape[0]
    zero_token = codebook.quantise(jnp.zeros(centroids_KxG.shape[1]), centroids_KxG)
    hard = hard_box(points_Px2, tokens_P, visible_P, zero_token, prior_kw)
    n, n_def = cfg.num_samples, int(round(cfg.num_samples * cfg.defensive))
    share = n_def / n
    box, boxes, all_rects, all_toks, all_match, all_mism = hard, [], [], [], [], []
    for _ in range(cfg.rounds):
        key, k_def, k_box = jax.random.split(key, 3)
        rects = jnp.concatenate(
            [_uniform_in(k_def, hard, n_def), _uniform_in(k_box, box, n - n_def)]
        )
        toks_NxP = _tokens(rects, points_Px2, centroids_KxG)
        mism = jnp.sum((toks_NxP != tokens_P) & visible_P, axis=-1)
        mism = jnp.where(jnp.isfinite(prior.log_density(rects, **prior_kw)), mism, 10**6)
        boxes.append(box)
        all_rects.append(rects)
        all_match.append(mism == 0)
        all_toks.append(toks_NxP)
        all_mism.append(mism)
        # refit the box: exact matches when there are enough, else the best `keep` share
        cut = jnp.where(jnp.sum(mism == 0) >= 32, 0, jnp.sort(mism)[int(cfg.keep * n)])
        kept = (mism <= cut)[:, None]
        lo = jnp.min(jnp.where(kept, rects, jnp.inf), axis=0)
        hi = jnp.max(jnp.where(kept, rects, -jnp.inf), axis=0)
        pad = cfg.margin * (hi - lo) + 2.0
        box = jnp.stack([jnp.maximum(lo - pad, hard[:, 0]), jnp.minimum(hi + pad, hard[:, 1])], 1)
    rects = jnp.concatenate(all_rects)
    match = jnp.concatenate(all_match)
    log_q_mix = jax.nn.logsumexp(jnp.stack([_log_q(rects, hard, b, share) for b in boxes]), 0)
    log_w = jnp.where(match, prior.log_density(rects, **prior_kw) - log_q_mix, -jnp.inf)
    top = jnp.max(log_w)
    w = jnp.exp(log_w - jnp.where(jnp.isfinite(top), top, 0.0))  # all 0 when nothing matched
    w_sum = jnp.sum(w)
    ess_is = jnp.where(w_sum > 0, w_sum**2 / jnp.maximum(jnp.sum(w**2), 1e-30), 0.0)
    probs_is = jnp.einsum("n,npk->pk", w, jax.nn.one_hot(jnp.concatenate(all_toks), k))
    probs_is = probs_is / jnp.maximum(w_sum, 1e-30)
    # resample-move: chains start from the weighted samples (with no match at all, from the
    # fewest mismatches), then slice-sample coordinate by coordinate: first annealed (prior x
    # exp(-beta x mismatches), beta doubling), then the exact posterior (prior x consistency)
    key, k_start, k_walk = jax.random.split(key, 3)
    mism_all = jnp.concatenate(all_mism)
    start_logits = jnp.where(w_sum > 0, jnp.log(jnp.maximum(w, 1e-38)), -mism_all * 1.0)
    x = rects[jax.random.categorical(k_start, start_logits, shape=(cfg.chains,))]
    mean = (w @ rects) / jnp.maximum(w_sum, 1e-30)
    spread = jnp.sqrt((w @ (rects - mean) ** 2) / jnp.maximum(w_sum, 1e-30))
    scale = jnp.where(w_sum > 0, jnp.clip(spread, 0.5, 32.0), 8.0)
    width = jnp.minimum(hard[:, 1] - hard[:, 0], 8.0 * scale)

    def target(r, beta):
        t = _tokens(r, points_Px2, centroids_KxG)
        mism = jnp.sum((t != tokens_P) & visible_P, axis=-1)
        log_p = prior.log_density(r, **prior_kw)
        return jnp.where(mism == 0, log_p, log_p - beta * mism), t

    counts = jnp.zeros((points_Px2.shape[0], k))
    anneal = cfg.mcmc_steps // 2
    for sweep in range(cfg.mcmc_steps):
        # annealing only when importance sampling found no consistent rectangle
        beta = jnp.where(w_sum > 0, jnp.inf, 4.0 * 2.0**sweep) if sweep < anneal else jnp.inf
        logp, t = target(x, beta)
        for j in range(4):  # slice sampling, one coordinate at a time, shrinking bracket
            k_walk, k_level, k_pos = jax.random.split(k_walk, 3)
            level = logp + jnp.log(jax.random.uniform(k_level, (cfg.chains,)))
            lo = x[:, j] - width[j] * jax.random.uniform(k_pos, (cfg.chains,))
            hi = lo + width[j]
            for _ in range(cfg.shrinks):
                k_walk, k_try = jax.random.split(k_walk)
                cand = lo + (hi - lo) * jax.random.uniform(k_try, (cfg.chains,))
                prop = x.at[:, j].set(cand)
                logp_p, t_p = target(prop, beta)
                ok = logp_p > level  # a chain off the posterior (-inf) takes any point on it
                x = jnp.where(ok[:, None], prop, x)
                logp, t = jnp.where(ok, logp_p, logp), jnp.where(ok[:, None], t_p, t)
                lo = jnp.where(ok, x[:, j], jnp.where(cand < x[:, j], cand, lo))
                hi = jnp.where(ok, x[:, j], jnp.where(cand >= x[:, j], cand, hi))
        if sweep >= anneal:
            live = jnp.isfinite(logp).astype(jnp.float32)
            counts = counts + jnp.einsum("c,cpk->pk", live, jax.nn.one_hot(t, k))
    live_chains = jnp.sum(jnp.isfinite(logp))
    probs_mc = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1e-30)
    # pool the two estimates, each by its effective size (a chain counts as one sample)
    ess = ess_is + live_chains
    probs = (ess_is * probs_is + live_chains * probs_mc) / jnp.maximum(ess, 1e-30)
    uniform = jnp.full((points_Px2.shape[0], k), 1.0 / k)
    return jnp.where(ess > 0, probs, uniform), ess, x, jnp.isfinite(logp)


@functools.partial(jax.jit, static_argnames=("prior_items", "cfg"))
def _posterior(keys, points, tokens, visible, centroids, prior_items, cfg):
    prior_kw = dict(prior_items)
    fn = functools.partial(_posterior_one, centroids_KxG=centroids, prior_kw=prior_kw, cfg=cfg)
    return jax.lax.map(lambda a: fn(*a), (keys, points, tokens, visible))


def _run(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, prior_kw, cfg):
    """(probs [B, P, K], ess [B], chain states [B, C, 4], on-posterior [B, C])."""
    prior_items = tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in prior_kw.items())
    )
    return _posterior(
        jax.random.split(key, jnp.shape(tokens_BxP)[0]),
        jnp.asarray(points_BxPx2, jnp.float32),
        jnp.asarray(tokens_BxP, jnp.int32),
        jnp.asarray(visible_BxP, bool),
        jnp.asarray(centroids_KxG, jnp.float32),
        prior_items,
        cfg,
    )


def posterior_samples(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    prior_kw,
    cfg: OracleConfig = OracleConfig(),
):
    """[B, chains, 4] final MCMC states and [B, chains] whether each is on the posterior."""
    return _run(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, prior_kw, cfg)[2:]


def posterior_predictive(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    prior_kw,
    cfg: OracleConfig = OracleConfig(),
):
    """([B, P, K] posterior-predictive token probabilities, [B] effective sample sizes).

    Invisible entries of tokens_BxP are ignored. prior_kw are sample_rects' keyword
    arguments (the task's prior); the points are assumed uniformly sampled.
    """
    return _run(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, prior_kw, cfg)[:2]


def evaluate(
    key, batch, centroids_KxG, prior_kw, cfg: OracleConfig = OracleConfig(), chunk: int = 256
):
    """Oracle metrics on a sparse eval batch: accuracy on the hidden tokens, its argmax
    tokens [B, P], the ESS per example and how many examples fall under cfg.min_ess."""
    probs, ess = [], []
    n = batch.tokens.shape[0]
    for i in range(0, n, chunk):
        p, e = posterior_predictive(
            jax.random.fold_in(key, i),
            batch.points[i : i + chunk],
            batch.tokens[i : i + chunk],
            ~batch.mask[i : i + chunk],
            centroids_KxG,
            prior_kw,
            cfg,
        )
        probs.append(p)
        ess.append(e)
    probs, ess = jnp.concatenate(probs), np.asarray(jnp.concatenate(ess))
    pred = np.asarray(jnp.argmax(probs, -1))
    mask, tokens = np.asarray(batch.mask), np.asarray(batch.tokens)
    correct = (pred == tokens)[mask]
    return (
        {
            "eval/oracle_accuracy": float(correct.mean()),
            "eval/oracle_accuracy_stderr": float(correct.std() / np.sqrt(max(correct.size, 1))),
            "eval/oracle_unreliable": int(np.sum(ess < cfg.min_ess)),
            "eval/oracle_median_ess": float(np.median(ess)),
        },
        pred,
        ess,
    )
