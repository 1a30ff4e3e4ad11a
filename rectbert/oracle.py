"""The Bayes-optimal predictor of the sparse task: the posterior over a scene's parameters
given the visible (point, token) pairs, by adaptive importance sampling and slice sampling.

The ceiling every sparse model is measured against (uniformly sampled points, any scene).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import codebook


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


def _log_q(params_NxD, hard_Dx2, box_Dx2, share):
    """log density of one round's proposal: share x U(hard) + (1 - share) x U(box)."""
    inside = _inside(params_NxD, box_Dx2)
    return jnp.logaddexp(
        jnp.log(share) - _log_volume(hard_Dx2),
        jnp.where(inside, jnp.log1p(-share) - _log_volume(box_Dx2), -jnp.inf),
    )


def _importance(key, hard, tokens_of, log_density, tokens_P, visible_P, cfg):
    """Adaptive importance sampling: each round proposes uniformly in a box (plus a
    defensive share over the hard bounds, which contain the whole posterior); the box is
    refitted to the round's best samples (exact matches once there are enough, else the
    fewest mismatches: tempering). Returns every round's (params, tokens, mismatches), stacked
    round after round, and the boxes they were drawn from. Rounds are a scan: compiled once."""
    n, n_def = cfg.num_samples, int(round(cfg.num_samples * cfg.defensive))

    def one_round(carry, _):
        key, box = carry
        key, k_def, k_box = jax.random.split(key, 3)
        params = jnp.concatenate(
            [_uniform_in(k_def, hard, n_def), _uniform_in(k_box, box, n - n_def)]
        )
        toks_NxP = tokens_of(params)
        mism = jnp.sum((toks_NxP != tokens_P) & visible_P, axis=-1)
        mism = jnp.where(jnp.isfinite(log_density(params)), mism, 10**6)
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


def _resample_move(key, x, width, target, num_tokens, cfg, anneal_from):
    """Slice sampling, coordinate by coordinate with a shrinking bracket, of chains started at
    x: the first half of the sweeps annealed (beta from `anneal_from`, doubling; inf: none),
    the rest on the exact posterior, whose token counts they return. Loops, not unrolled."""
    chains, dim = x.shape
    anneal = cfg.mcmc_steps // 2

    def coordinate(j, carry):
        key, x, logp, t, beta = carry
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
        return key, x, logp, t, beta

    def sweep(i, carry):
        key, x, logp, t, counts = carry
        beta = jnp.where(i < anneal, anneal_from * 2.0**i, jnp.inf)
        logp, t = target(x, beta)
        key, x, logp, t, _ = jax.lax.fori_loop(0, dim, coordinate, (key, x, logp, t, beta))
        live = jnp.isfinite(logp) & (i >= anneal)
        counts = counts + jnp.einsum(
            "c,cpk->pk", live.astype(jnp.float32), jax.nn.one_hot(t, num_tokens)
        )
        return key, x, logp, t, counts

    logp, t = target(x, jnp.inf)
    counts = jnp.zeros((t.shape[1], num_tokens))
    _, x, logp, _, counts = jax.lax.fori_loop(0, cfg.mcmc_steps, sweep, (key, x, logp, t, counts))
    return x, logp, counts


def _posterior_one(key, points_Px2, tokens_P, visible_P, centroids_KxG, scene, cfg):
    """Posterior-predictive token probabilities [P, K] and the ESS for one example: importance
    sampling, all rounds weighted by the balance heuristic (prior / mean of the rounds'
    proposal densities: multiple importance sampling), then resample-move."""
    k = centroids_KxG.shape[0]
    # a visible token other than the empty patch's means coverage > 0: the shape meets that
    # point's window, which bounds its parameters (exactly: the box holds the posterior)
    zero_token = codebook.quantise(jnp.zeros(centroids_KxG.shape[1]), centroids_KxG)
    hard = scene.hard_bounds(points_Px2, visible_P & (tokens_P != zero_token))

    def tokens_of(params):
        return _tokens(scene, params, points_Px2, centroids_KxG)

    key, params, toks, mism, boxes, share = _importance(
        key, hard, tokens_of, scene.log_density, tokens_P, visible_P, cfg
    )
    log_q_mix = jax.nn.logsumexp(jax.vmap(lambda b: _log_q(params, hard, b, share))(boxes), 0)
    log_w = jnp.where(mism == 0, scene.log_density(params) - log_q_mix, -jnp.inf)
    top = jnp.max(log_w)
    w = jnp.exp(log_w - jnp.where(jnp.isfinite(top), top, 0.0))  # all 0 when nothing matched
    w_sum = jnp.sum(w)
    ess_is = jnp.where(w_sum > 0, w_sum**2 / jnp.maximum(jnp.sum(w**2), 1e-30), 0.0)
    probs_is = jnp.einsum("n,npk->pk", w, jax.nn.one_hot(toks, k))
    probs_is = probs_is / jnp.maximum(w_sum, 1e-30)
    # resample-move: chains start from the weighted samples (with no match at all, from the
    # fewest mismatches), then slice-sample: first annealed (prior x exp(-beta x mismatches),
    # beta doubling; only when importance sampling found no consistent shape), then the exact
    # posterior (prior x consistency)
    key, k_start, k_walk = jax.random.split(key, 3)
    start_logits = jnp.where(w_sum > 0, jnp.log(jnp.maximum(w, 1e-38)), -mism * 1.0)
    x = params[jax.random.categorical(k_start, start_logits, shape=(cfg.chains,))]
    mean = (w @ params) / jnp.maximum(w_sum, 1e-30)
    spread = jnp.sqrt((w @ (params - mean) ** 2) / jnp.maximum(w_sum, 1e-30))
    scale = jnp.where(w_sum > 0, jnp.clip(spread, 0.5, 32.0), 8.0)
    width = jnp.minimum(hard[:, 1] - hard[:, 0], 8.0 * scale)

    def target(r, beta):
        t = tokens_of(r)
        mism = jnp.sum((t != tokens_P) & visible_P, axis=-1)
        log_p = scene.log_density(r)
        return jnp.where(mism == 0, log_p, log_p - beta * mism), t

    anneal_from = jnp.where(w_sum > 0, jnp.inf, 4.0)
    x, logp, counts = _resample_move(k_walk, x, width, target, k, cfg, anneal_from)
    live_chains = jnp.sum(jnp.isfinite(logp))
    probs_mc = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1e-30)
    # pool the two estimates, each by its effective size (a chain counts as one sample)
    ess = ess_is + live_chains
    probs = (ess_is * probs_is + live_chains * probs_mc) / jnp.maximum(ess, 1e-30)
    uniform = jnp.full((points_Px2.shape[0], k), 1.0 / k)
    return jnp.where(ess > 0, probs, uniform), ess, x, jnp.isfinite(logp)


@functools.partial(jax.jit, static_argnames=("scene", "cfg"))
def _posterior(keys, points, tokens, visible, centroids, scene, cfg):
    fn = functools.partial(_posterior_one, centroids_KxG=centroids, scene=scene, cfg=cfg)
    return jax.lax.map(lambda a: fn(*a), (keys, points, tokens, visible))


def _run(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg):
    """(probs [B, P, K], ess [B], chain states [B, C, D], on-posterior [B, C])."""
    return _posterior(
        jax.random.split(key, jnp.shape(tokens_BxP)[0]),
        jnp.asarray(points_BxPx2, jnp.float32),
        jnp.asarray(tokens_BxP, jnp.int32),
        jnp.asarray(visible_BxP, bool),
        jnp.asarray(centroids_KxG, jnp.float32),
        scene,
        cfg,
    )


def posterior_samples(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    scene,
    cfg: OracleConfig = OracleConfig(),
):
    """[B, chains, D] final MCMC states and [B, chains] whether each is on the posterior."""
    return _run(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg)[2:]


def posterior_predictive(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    scene,
    cfg: OracleConfig = OracleConfig(),
):
    """([B, P, K] posterior-predictive token probabilities, [B] effective sample sizes).

    Invisible entries of tokens_BxP are ignored; `scene` is the task's scene (its prior); the
    points are assumed uniformly sampled.
    """
    return _run(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg)[:2]


def evaluate(key, batch, centroids_KxG, scene, cfg: OracleConfig = OracleConfig(), chunk=256):
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
            scene,
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
