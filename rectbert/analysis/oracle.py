"""The Bayes-optimal predictor of the sparse task: the posterior over a scene's parameters
given the visible (point, token) pairs, and what is computed from it — the posterior
predictive, posterior samples, a consistency search, the oracle's held-out accuracy.

The ceiling every sparse model is measured against (uniformly sampled points, any scene the
sampler supports); the sampler itself is in smc.py (a replica's stages: stages.py; a
mixture's components, screened: mixture.py).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.analysis import calls
from rectbert.analysis.mixture import posterior_one
from rectbert.analysis.smc import seen_points
from rectbert.analysis.stages import replica
from rectbert.data import points


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    num_samples: int = 1024  # proposals per round, per example (half to each replica), where
    # the likelihood sees all points; x points / points seen where it sees fewer (as chains)
    rounds: int = 4  # round 0 proposes from the hard bounds; later rounds adapt a box
    keep: float = 0.05  # a round's box is fitted to its best (fewest mismatches) 5 %
    defensive: float = 0.25  # share of each round drawn from the prior (full support)
    margin: float = 0.25  # fitted box = kept range +- margin x range (+ 2 px)
    min_ess: float = 30.0  # below this (measured from two replicas) an example is unreliable
    chains: int = 192  # sequential Monte Carlo chains (half to each replica), stretched as
    # num_samples; the states returned and the ESS's cap: this many
    anneal_steps: int = 16  # at most this many tempered sweeps (beta raised adaptively, chains
    # resampled, then moved); fewer when beta reaches BETA_MAX (IS found the posterior);
    # beta rises tied_step a sweep at most while no chain matches: it may stop short
    mcmc_steps: int = 4  # exact-posterior sweeps whose tokens are counted
    shrinks: int = 3  # tries per coordinate and sweep
    screen: bool = True  # a mixture's components screened first (mixture.screened): SMC only
    # where it matters, stopped under a floor; False: every component runs SMC on the shared
    # budget to the end (slower: to compare with)
    tied_step: float = 1.0  # beta's largest step while nothing is on the posterior (no chain,
    # or no pool match of an average sample's weight: smc._next_beta); 40: the ESS alone
    ensemble_moves: int | None = None  # per sweep, after the coordinates: moves of each half
    # of the chains along the difference of two chains of the other half (they follow a
    # posterior's correlations); None: the scene's Scene.ensemble_moves

    def __post_init__(self):
        config.validate(
            self,
            [
                (self.num_samples >= 64, "num_samples", "an integer >= 64 (two replicas)"),
                (self.rounds >= 1, "rounds", "an integer >= 1"),
                (0 < self.keep < 1, "keep", "a fraction in (0, 1)"),
                (0 < self.defensive < 1, "defensive", "a fraction in (0, 1)"),
                (self.margin >= 0, "margin", "a number >= 0"),
                (self.min_ess >= 0, "min_ess", "a number >= 0"),
                (self.chains >= 4, "chains", "an integer >= 4 (two replicas)"),
                (self.anneal_steps >= 0, "anneal_steps", "an integer >= 0"),
                (self.mcmc_steps >= 1, "mcmc_steps", "an integer >= 1 (its tokens are counted)"),
                (self.shrinks >= 1, "shrinks", "an integer >= 1"),
                (0 < self.tied_step <= 40, "tied_step", "a number in (0, 40] (40: no cap)"),
                (
                    self.ensemble_moves is None or self.ensemble_moves >= 0,
                    "ensemble_moves",
                    "an integer >= 0, or None (the scene's)",
                ),
            ],
        )


@functools.partial(jax.jit, static_argnames=("scene", "cfg", "seen"))
def _posterior(keys, points, tokens, visible, centroids, scene, cfg, seen):
    fn = functools.partial(posterior_one, centroids_KxG=centroids, scene=scene, cfg=cfg, seen=seen)
    return jax.lax.map(lambda a: fn(*a), (keys, points, tokens, visible))


def unsupported(task) -> str | None:
    """Why the oracle cannot score this task, or None: its scene's posterior is one the sampler
    cannot sample, or (sparse) its points are not uniform, which its likelihood assumes."""
    why = task.scene.oracle_unsupported()
    if why:
        return f"the oracle does not support {why}"
    if task.name != "sparse":
        return None
    for what, name in (("points", task.sampler), ("hidden points", task.query_sampler)):
        if name and not points.get(name).uniform:
            return (
                f"the oracle's likelihood needs points placed independently of the shape; this "
                f"run's {what} are {name!r}, whose places say where the shape is"
            )
    return None


def check(scene) -> None:
    """ValueError, in one line, for a scene whose posterior this oracle cannot sample."""
    why = scene.oracle_unsupported()
    if why:
        raise ValueError(f"the oracle does not support {why}")


@dataclasses.dataclass(frozen=True)
class Posterior:
    """The oracle's answer for B examples (numpy arrays)."""

    probs: np.ndarray  # [B, P, K] posterior-predictive token probabilities
    ess: np.ndarray  # [B] effective sample size, measured from two replicas
    samples: np.ndarray  # [B, chains, D] final chain states, the scene's parameters
    live: np.ndarray  # [B, chains] whether each state is on the posterior
    components: np.ndarray  # [B, M] p(component | visible tokens) (Scene.components)
    log_evidence: np.ndarray  # [B] log p(visible tokens), the points' density left out
    evidence_error: np.ndarray  # [B] relative Monte Carlo error of the evidence (replicas)
    walked: np.ndarray  # [B, M] how each component was sampled: 0 importance alone, 1 SMC,
    # 2 SMC with the whole config's chains (mixture.screened), 3 SMC stopped under its floor
    dropped: np.ndarray  # [B] at most this share of the evidence was left out by the
    # screening (as far as its estimated bounds go: mixture._dropped)


CHUNK = 1  # examples a call (calls.in_chunks): as fast as more (lax.map runs them in turn)


def posterior(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    scene,
    cfg: OracleConfig = OracleConfig(),
    *,
    say=None,
) -> Posterior:
    """The posterior of B examples given their visible (point, token) pairs, every output of
    the sampler. Invisible entries of tokens_BxP are ignored; `scene` is the task's scene
    (its prior); the points are assumed uniformly sampled. In calls of CHUNK examples
    (calls.in_chunks: a signal stops it at once; calls.TooLarge where one will not fit); `say`
    takes a progress line (examples/s, ETA) every few seconds of a long one."""
    keys = jax.random.split(key, np.shape(visible_BxP)[0])
    return _in_calls(keys, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg, say)


def _in_calls(keys_B, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg, say):
    """posterior() with each example's own key."""
    check(scene)
    visible = np.asarray(visible_BxP, bool)
    most = int(visible.sum(-1).max()) if visible.size else 0
    arrays = (
        keys_B,
        jnp.asarray(points_BxPx2, jnp.float32),
        jnp.asarray(tokens_BxP, jnp.int32),
        jnp.asarray(visible),
    )
    shared = (jnp.asarray(centroids_KxG, jnp.float32),)
    statics = (scene, cfg, seen_points(most, visible.shape[1]))
    what = f"the oracle's posterior ({scene.name})"
    return Posterior(
        *calls.in_chunks(_posterior, arrays, shared, statics, CHUNK, what=what, say=say)
    )


def posterior_samples(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    scene,
    cfg: OracleConfig = OracleConfig(),
    *,
    say=None,
):
    """[B, chains, D] final MCMC states and [B, chains] whether each is on the posterior."""
    post = posterior(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg, say=say)
    return post.samples, post.live


def posterior_predictive(
    key,
    points_BxPx2,
    tokens_BxP,
    visible_BxP,
    centroids_KxG,
    scene,
    cfg: OracleConfig = OracleConfig(),
):
    """([B, P, K] posterior-predictive token probabilities, [B] effective sample sizes)."""
    post = posterior(key, points_BxPx2, tokens_BxP, visible_BxP, centroids_KxG, scene, cfg)
    return post.probs, post.ess


CHECK = OracleConfig(num_samples=512, chains=64, anneal_steps=24, mcmc_steps=1)


@functools.partial(jax.jit, static_argnames=("scene", "cfg"))
def _consistent(keys, points, tokens, centroids, scene, cfg):
    def search(k, p, t, part, m):
        every = jnp.ones(t.shape, bool)
        _, _, x, live, _ = replica(k, p, t, every, centroids, part, cfg)
        x = scene.lift(m, x)
        return jnp.any(live), x[jnp.argmax(live)]

    def one(a):  # each component searched; the first that finds a shape is the witness
        k, p, t = a
        batch = scene.component_batch()
        if batch is not None:  # one program over the components' index
            m_all = jnp.arange(len(batch[0]))
            found_m, x_m = jax.lax.map(
                lambda m: search(jax.random.fold_in(k, m), p, t, batch[1](m), m), m_all
            )
            first = jnp.argmax(found_m)
            return jnp.any(found_m), jnp.where(jnp.any(found_m), x_m[first], jnp.nan)
        found, witness = jnp.bool_(False), jnp.full(scene.param_dim, jnp.nan)
        for m, (_, part) in enumerate(scene.components()):
            hit, x = search(jax.random.fold_in(k, m), p, t, part, m)
            witness = jnp.where(~found & hit, x, witness)
            found = found | hit
        return found, witness

    return jax.lax.map(one, (keys, points, tokens))


def consistent(
    key,
    points_BxPx2,
    tokens_BxP,
    centroids_KxG,
    scene,
    cfg: OracleConfig = CHECK,
    chunk=CHUNK,
    *,
    say=None,
):
    """Whether each example's full token set is the token set of some shape of the scene:
    ([B] bool, [B, D] a witness shape, NaN where none was found). The oracle's sampler with
    every token visible searches for one; True is certain (the witness has exactly these
    tokens), False means the search found none (its miss rate on true completions is
    measured by the caller: the `oracle` rows of sampling scores). In calls of `chunk`
    examples, as posterior()'s."""
    check(scene)
    b = np.shape(tokens_BxP)[0]
    arrays = (  # row j's key is fold_in(key, j): what it is batched with is moot
        jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(b)),
        jnp.asarray(points_BxPx2, jnp.float32),
        jnp.asarray(tokens_BxP, jnp.int32),
    )
    shared = (jnp.asarray(centroids_KxG, jnp.float32),)
    what = f"the consistency search ({scene.name})"
    return calls.in_chunks(_consistent, arrays, shared, (scene, cfg), chunk, what=what, say=say)


def posterior_batch(
    key, batch, centroids_KxG, scene, cfg: OracleConfig = OracleConfig(), chunk=256, *, say=None
) -> Posterior:
    """posterior() on a Batch (its hidden tokens are `mask`); example j's key is the j % chunk
    th of split(fold_in(key, j // chunk)), as when the blocks were computed one by one."""
    b = batch.tokens.shape[0]
    blocks = [
        jax.random.split(jax.random.fold_in(key, i), min(chunk, b - i)) for i in range(0, b, chunk)
    ]
    keys = jnp.concatenate(blocks) if blocks else jax.random.split(key, 0)
    return _in_calls(keys, batch.points, batch.tokens, ~batch.mask, centroids_KxG, scene, cfg, say)


def predict_batch(
    key, batch, centroids_KxG, scene, cfg: OracleConfig = OracleConfig(), chunk=256, *, say=None
):
    """posterior_batch's ([B, P, K] posterior predictive, [B] ESS) as numpy arrays."""
    post = posterior_batch(key, batch, centroids_KxG, scene, cfg, chunk, say=say)
    return post.probs, post.ess


def summary(post: Posterior) -> dict:
    """Over the examples: the evidence's median relative Monte Carlo error; per component
    (in Scene.components' order: junction 2, 3, 4 strokes; rects min_rects ... num_rects)
    the mean posterior probability; the largest share of the evidence left out by the
    screening (a bound: Posterior.dropped) and the mean count of components that ran SMC to
    the end (walked 1 or 2);
    each example's own are in the Posterior."""
    return {
        "oracle_median_evidence_error": float(np.median(post.evidence_error)),
        "oracle_components": [round(float(c), 4) for c in post.components.mean(0)],
        "oracle_max_dropped": float(post.dropped.max()) if post.dropped.size else 0.0,
        "oracle_mean_walked": (
            float(np.isin(post.walked, (1, 2)).sum(-1).mean()) if post.walked.size else 0.0
        ),
    }


def _scalars(summary_: dict) -> dict:
    """summary() as eval/ scalars: a mixture's components one each (eval/oracle_component_m)."""
    out = {
        k: summary_[f"oracle_{k}"] for k in ("median_evidence_error", "max_dropped", "mean_walked")
    }
    out = {f"eval/oracle_{k}": v for k, v in out.items()}
    parts = summary_["oracle_components"]
    out.update({f"eval/oracle_component_{m}": c for m, c in enumerate(parts) if len(parts) > 1})
    return out


def evaluate(
    key, batch, centroids_KxG, scene, cfg: OracleConfig = OracleConfig(), chunk=256, *, say=None
):
    """Oracle metrics on a sparse eval batch: accuracy on the hidden tokens, its argmax
    tokens [B, P], the ESS per example, how many examples fall under cfg.min_ess, and the
    summary() of the evidence and the components."""
    post = posterior_batch(key, batch, centroids_KxG, scene, cfg, chunk, say=say)
    probs, ess = post.probs, post.ess
    pred = probs.argmax(-1)
    mask, tokens = np.asarray(batch.mask), np.asarray(batch.tokens)
    correct = (pred == tokens)[mask]
    return (
        {
            "eval/oracle_accuracy": float(correct.mean()),
            "eval/oracle_accuracy_stderr": float(correct.std() / np.sqrt(max(correct.size, 1))),
            "eval/oracle_unreliable": int(np.sum(ess < cfg.min_ess)),
            "eval/oracle_median_ess": float(np.median(ess)),
            **_scalars(summary(post)),
        },
        pred,
        ess,
    )
