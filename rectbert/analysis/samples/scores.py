"""Completions scored against the scene's prior: are they shapes, and are they as varied as
the posterior?

For each held-out example at each visible count (nested visible sets, as the oracle curve's),
every method completes the hidden tokens `per_example` times: independent argmax (one
completion), independent sampling, joint sampling in random order and most-confident-first
(sampler.py); two references come from the oracle: its posterior samples (`oracle`)
and its per-token posterior marginals drawn independently (`oracle_marginals`: independent
sampling at its best). Per row:

- consistent_fraction: the share of completions whose full token set is the token set of
  some shape of the scene (oracle.consistent: a search, certain when it says yes). On the
  oracle's own posterior samples, all consistent by construction, it measures the search's
  hit rate: a model's fraction is at most about that. This is the score that sees the joint
  law (`oracle_marginals` has every marginal right and is rarely a shape).
- mmd: the squared maximum mean discrepancy (unbiased) between the completions and a second,
  independent set of posterior samples (the other replica's), kernel exp(-d / TAU) with d
  the number of differing tokens; the oracle's row is the estimator's floor (0 in
  expectation). At 8 completions per example it separates mode-seeking from sampling but
  cannot tell the posterior from its marginals (measured: docs, joint samples).
- diversity: the mean fraction of hidden tokens on which two completions of one example
  differ (argmax: 0); beside the oracle's, how spread the completions are.
- accuracy: the share of hidden tokens equal to the truth.

Standard errors are over examples. Scenes the oracle does not support get accuracy and
diversity only (consistent_fraction and mmd null).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.samples import sampler
from rectbert.config import setting
from rectbert.data import keys
from rectbert.data.tasks import Batch
from rectbert.files import write_atomic
from rectbert.geometry import codebook

VISIBLE = (2, 4, 8, 16)


TAU = 2.0  # kernel length, in differing tokens


# the posterior samples: more exact sweeps than the predictive needs, so that a replica's
# chains (resampled copies of few ancestors) move apart: 64 sweeps took the MMD between the
# two replicas' sets from 0.049 +- 0.024 (16 sweeps) to 0.017 +- 0.016 at 8 visible (rect)
POSTERIOR = oracle.OracleConfig(mcmc_steps=64)
SAY = functools.partial(print, flush=True)  # progress lines go to stdout as they happen


@dataclasses.dataclass(frozen=True)
class Method:
    """One row kind of samples.json: a sampler of the model's, or a reference from the oracle."""

    label: str  # in logs and figures, e.g. "joint (random)"
    method: str  # samples.json's "method": argmax, independent, joint, oracle, oracle_marginals
    order: str | None = None  # joint sampling's order
    cfg: sampler.SampleConfig | None = None  # None: from the oracle's posterior
    key: int = 0  # fold_in index of its draws

    @property
    def sampled(self) -> bool:
        """Drawn from the model at a temperature (not argmax, not the oracle)."""
        return self.cfg is not None and self.cfg.method != "argmax"


def methods(temperature: float = 1.0) -> list[Method]:
    """The model's samplers, then the oracle's two references (module doc)."""
    cfg = sampler.SampleConfig(temperature=temperature)
    joint = [
        Method(f"joint ({o})", "joint", o, dataclasses.replace(cfg, order=o), key=2 + i)
        for i, o in enumerate(sampler.ORDERS)
    ]
    return [
        Method("argmax", "argmax", cfg=sampler.SampleConfig(method="argmax"), key=0),
        Method(
            "independent", "independent", cfg=dataclasses.replace(cfg, method="independent"), key=1
        ),
        *joint,
        Method("oracle", "oracle"),
        Method("oracle_marginals", "oracle_marginals"),
    ]


def default_visible(task) -> tuple[int, ...]:
    """VISIBLE's counts below the sequence length (grid: the task's own visible count)."""
    if task.name != "sparse":
        return (task.seq_len - task.mask.count,)
    return tuple(v for v in VISIBLE if v < task.seq_len) or (task.seq_len - 1,)


def samples_setting():
    """The --samples switch of the experiments that train (sparse, grid)."""
    return setting(
        False,
        "At the final evaluation (also of a finished workdir) draw completions (argmax, "
        "independent, joint) and score them against the prior: samples.json, "
        "figures/samples.png.",
    )


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Which completions are drawn and scored: from which visible counts, of how many
    held-out examples, how many per example and method, at which temperature. (How one
    completion is drawn is sampler.SampleConfig.)"""

    visible: tuple[int, ...] = setting(
        (),
        "Visible counts the completions start from; empty: 2,4,8,16 (sparse, those below the "
        "point count), the task's own visible count (grid).",
        flag="sample_visible",
        kind="counts",
    )
    examples: int = setting(
        32, "Held-out examples completed at each count.", flag="sample_examples"
    )
    per_example: int = setting(8, "Completions per example and method.", flag="samples_per_example")
    temperature: float = setting(
        1.0,
        "The model's logits are divided by it for independent and joint sampling (1: its own "
        "distribution; below 1: sharper).",
        flag="sample_temperature",
    )

    def __post_init__(self):
        t = self.temperature
        number = isinstance(t, int | float) and not isinstance(t, bool)
        allowed = "a finite number > 0 (argmax is its own row)"
        config.validate(self, [(number and t > 0, "temperature", allowed)])

    def counts(self, task, *, scoring: bool = True) -> tuple[int, ...]:
        """The sorted counts for this task, or a ConfigError naming the field, before any
        compute; with `scoring`, also the task's sampler (the posterior needs uniform points)."""
        if task.name not in ("sparse", "grid"):
            raise ValueError(f"samples are scored for sparse and grid runs; this is {task.name}")
        counts = oracle_curve.visible_counts(self.visible or default_visible(task), task.seq_len)
        if counts is None:
            raise config.error(self, "visible", oracle_curve.counts_allowed(task.seq_len))
        if not oracle_curve.examples_allowed(self.examples, task.eval_examples):
            raise config.error(self, "examples", f"an integer in [2, {task.eval_examples}]")
        # each set of posterior samples comes from one replica's chains: no more than those
        most = oracle.OracleConfig().chains // 2
        if not oracle_curve.examples_allowed(self.per_example, most):
            raise config.error(self, "per_example", f"an integer in [2, {most}]")
        if scoring and scored(task) and oracle.unsupported(task):  # supported, but its points
            raise config.error(task, "sampler", "uniform: the posterior's likelihood assumes it")
        return counts


def scored(task) -> bool:
    """Whether the oracle scores this task's completions (consistency and MMD): its scene's
    posterior is one the oracle samples."""
    return task.scene.oracle_unsupported() is None


def _repeat(batch: Batch, s: int) -> Batch:
    """Each example s times in a row: [B * s, ...]."""
    return jax.tree.map(lambda a: jnp.repeat(a, s, axis=0), batch)


def draw(predict, params, batch: Batch, key, cfg: sampler.SampleConfig, s: int):
    """[B, s, L] completions by one method (argmax: s identical copies)."""
    b, length = batch.tokens.shape
    if cfg.method == "argmax":
        one = sampler.sample(predict, params, batch, key, cfg)
        return np.repeat(np.asarray(one)[:, None], s, axis=1)
    out = sampler.sample(predict, params, _repeat(batch, s), key, cfg)
    return np.asarray(out).reshape(b, s, length)


class Posterior(NamedTuple):
    params: np.ndarray  # [B, 2, s, D] a set of s posterior samples from each replica
    tokens: np.ndarray  # [B, 2, s, L] their tokens
    marginals: np.ndarray  # [B, s, L] each token drawn from replica 0's marginal alone
    found: np.ndarray  # [B] both replicas reached the posterior (else the example is unscored)


def posterior(task, batch: Batch, key, s: int, cfg: oracle.OracleConfig) -> Posterior:
    """Two sets of s posterior samples per example, one from each of the oracle's two
    independent replicas, and s completions with each token drawn independently from the
    first replica's posterior marginals (its chains, position by position): (params
    [B, 2, s, D], tokens [B, 2, s, L], marginal tokens [B, s, L], found [B]: both replicas
    reached the posterior; examples where one did not are left out of every score)."""
    x, live = oracle.posterior_samples(
        key, batch.points, batch.tokens, ~batch.mask, task.codebook, task.scene, cfg
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


def consistency(task, points_BxLx2, completions_BxSxL, key, cfg=oracle.CHECK):
    """[B, S] whether each completion is some shape's token set (each distinct completion of
    an example searched once)."""
    b, s, length = completions_BxSxL.shape
    flat = np.asarray(completions_BxSxL).reshape(b * s, length)
    example = np.repeat(np.arange(b), s)
    rows = np.concatenate([example[:, None], flat], 1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    points = np.asarray(points_BxLx2)[unique[:, 0]]
    found, _ = oracle.consistent(key, points, unique[:, 1:], task.codebook, task.scene, cfg)
    return found[inverse.ravel()].reshape(b, s)


def _hamming(a_SxL, b_TxL):
    return (a_SxL[:, None, :] != b_TxL[None, :, :]).sum(-1)


def mmd2(x_SxL, y_TxL, tau: float = TAU) -> float:
    """Unbiased squared MMD between two sets of token vectors, kernel exp(-hamming / tau)."""
    kxx, kyy = np.exp(-_hamming(x_SxL, x_SxL) / tau), np.exp(-_hamming(y_TxL, y_TxL) / tau)
    kxy = np.exp(-_hamming(x_SxL, y_TxL) / tau)
    s, t = len(x_SxL), len(y_TxL)
    within_x = (kxx.sum() - np.trace(kxx)) / (s * (s - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (t * (t - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def diversity(x_SxL, hidden_L) -> float:
    """Mean over pairs of completions of the fraction of hidden tokens where they differ."""
    s, h = len(x_SxL), max(int(np.sum(hidden_L)), 1)
    d = _hamming(x_SxL[:, hidden_L], x_SxL[:, hidden_L])
    return float((d.sum() - np.trace(d)) / (s * (s - 1)) / h)


def _mean_stderr(x) -> tuple[float | None, float | None]:
    """The oracle curve's mean and standard error over the finite entries (unscored examples
    are NaN); None when there are none."""
    x = np.asarray(x, np.float64)
    return oracle_curve.mean_stderr(x[np.isfinite(x)]) if np.isfinite(x).any() else (None, None)


@dataclasses.dataclass
class Completions:
    """What one visible count made: the examples, every method's completions [B, S, L] by
    label, and the posterior (None where the oracle does not score the scene)."""

    batch: Batch
    made: dict
    posterior: Posterior | None


def complete(task, predict, params, batch, key, cfg: ScoreConfig, posterior_cfg):
    """Every method's completions of `batch` (the oracle's where it scores the scene)."""
    made, post = {}, None
    for m in methods(cfg.temperature):
        if m.cfg is not None:
            k = jax.random.fold_in(key, m.key)
            made[m.label] = draw(predict, params, batch, k, m.cfg, cfg.per_example)
    if scored(task):
        post = posterior(task, batch, jax.random.fold_in(key, 99), cfg.per_example, posterior_cfg)
        made["oracle"] = post.tokens[:, 0]  # set A; set B is the MMD's reference
        made["oracle_marginals"] = post.marginals
    return Completions(batch, made, post)


def consistent_by_method(task, c: Completions, key, check_cfg) -> dict:
    """{label: [B, S] whether each completion is a shape}: every method's completions
    searched in one call (fewer, fuller batches)."""
    labels = list(c.made)
    together = np.concatenate([c.made[label] for label in labels], axis=1)
    ok = consistency(task, c.batch.points, together, key, check_cfg)
    s = c.made[labels[0]].shape[1]
    return {label: ok[:, m * s : (m + 1) * s] for m, label in enumerate(labels)}


def row(m: Method, visible: int, c: Completions, ok, cfg: ScoreConfig) -> dict:
    """One row of samples.json: the method's scores over the examples (module doc)."""
    comp, hidden = c.made[m.label], np.asarray(c.batch.mask)
    examples, per_example = comp.shape[:2]
    truth = np.asarray(c.batch.tokens)[:, None]
    acc = ((comp == truth) & hidden[:, None]).sum((1, 2)) / (hidden.sum(1) * per_example)
    r = {"method": m.method, "order": m.order, "visible": visible, "examples": examples}
    r["samples_per_example"] = per_example
    r["temperature"] = cfg.temperature if m.sampled else None
    r["accuracy"], r["accuracy_stderr"] = _mean_stderr(acc)
    div = [diversity(comp[e], hidden[e]) for e in range(examples)]
    r["diversity"], r["diversity_stderr"] = _mean_stderr(div)
    r["consistent_fraction"] = r["consistent_fraction_stderr"] = None
    r["mmd"] = r["mmd_stderr"] = None
    if c.posterior is not None:
        found, ref = c.posterior.found, c.posterior.tokens[:, 1]
        frac = np.where(found, ok[m.label].mean(1), np.nan)
        r["consistent_fraction"], r["consistent_fraction_stderr"] = _mean_stderr(frac)
        mm = [mmd2(comp[e], ref[e]) if found[e] else np.nan for e in range(examples)]
        r["mmd"], r["mmd_stderr"] = _mean_stderr(mm)
        r["scored_examples"] = int(found.sum())  # consistency and MMD: over these
    return r


def _line(label: str, r: dict, elapsed: float) -> str:
    scores = f"accuracy {r['accuracy']:.3f}  diversity {r['diversity']:.3f}"
    if r["mmd"] is not None:
        scores += f"  consistent {r['consistent_fraction']:.3f}  MMD {r['mmd']:.4f}"
    return f"  visible {r['visible']:2d} {label:18s} {scores}  [{elapsed:.0f} s]"


def score(
    task,
    predict,
    params,
    cfg: ScoreConfig = ScoreConfig(),
    check_cfg: oracle.OracleConfig = oracle.CHECK,
    posterior_cfg: oracle.OracleConfig | None = None,
    log=SAY,
):
    """(rows, {visible: Completions}): every method at every visible count on the task's first
    `cfg.examples` held-out examples (see the module doc); the completions feed `figure`."""
    counts = cfg.counts(task)
    base = jax.tree.map(lambda a: a[: cfg.examples], jax.jit(task.eval_set)())  # one program
    rows, kept, start = [], {}, time.time()
    root = keys.key(task.seed, "samples")
    for i, v in enumerate(counts):
        k_v = jax.random.fold_in(root, v)
        batch = oracle_curve.held_out(task, v, cfg.examples, base)
        c = complete(task, predict, params, batch, k_v, cfg, posterior_cfg or POSTERIOR)
        ok = None
        if c.posterior is not None:
            ok = consistent_by_method(task, c, jax.random.fold_in(k_v, 200), check_cfg)
        for m in methods(cfg.temperature):
            if m.label in c.made:
                rows.append(row(m, v, c, ok, cfg))
                log(_line(m.label, rows[-1], time.time() - start))
        kept[v] = c
        elapsed, done = time.time() - start, (i + 1) / len(counts)
        log(f"  visible {v}: done [{elapsed:.0f} s, ETA {elapsed * (1 - done) / done:.0f} s]")
    return rows, kept


def write(workdir_path: str, rows: list[dict]) -> str:
    """samples.json (the rows), written atomically."""
    path = os.path.join(workdir_path, "samples.json")
    write_atomic(path, json.dumps(rows, indent=1) + "\n")
    return path
