"""Completions scored against the scene's prior: are they shapes, and are they as varied as
the posterior?

For each held-out example at each visible count (nested visible sets, as the oracle curve's),
every method completes the hidden tokens `per_example` times: independent argmax (one
completion), independent sampling, and each joint sampler of sampler.SAMPLERS that is asked
for; two references come from the oracle: its posterior samples (`oracle`)
and its per-token posterior marginals drawn independently (`oracle_marginals`: independent
sampling at its best). What is drawn: settings.py; the oracle's references: posterior.py;
the scores of a row: measures.py; what is said and written: output.py.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.samples import measures, output, sampler
from rectbert.analysis.samples.posterior import POSTERIOR, Posterior, consistency, posterior
from rectbert.analysis.samples.settings import ScoreConfig, methods, scored
from rectbert.data import keys
from rectbert.data.tasks import Batch


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


@dataclasses.dataclass
class Completions:
    """What one visible count made: the examples, every method's completions [B, S, L] by
    label, and the posterior (None where the oracle does not score the scene)."""

    batch: Batch
    made: dict
    posterior: Posterior | None


def complete(task, predict, params, batch, key, cfg: ScoreConfig, posterior_cfg, say=None):
    """Every method's completions of `batch` (the oracle's where it scores the scene)."""
    made, post = {}, None
    for m in methods(cfg):
        if m.cfg is not None:
            k = jax.random.fold_in(key, m.key)
            made[m.label] = draw(predict, params, batch, k, m.cfg, cfg.per_example)
    if scored(task):
        k = jax.random.fold_in(key, 99)
        post = posterior(task, batch, k, cfg.per_example, posterior_cfg, say=say)
        made["oracle"] = post.tokens[:, 0]  # set A; set B is the MMD's reference
        made["oracle_marginals"] = post.marginals
    return Completions(batch, made, post)


def consistent_by_method(task, c: Completions, key, check_cfg, say=None) -> dict:
    """{label: [B, S] whether each completion is a shape}: every method's completions
    searched in one call (fewer, fuller batches)."""
    labels = list(c.made)
    together = np.concatenate([c.made[label] for label in labels], axis=1)
    ok = consistency(task, c.batch.points, together, key, check_cfg, say=say)
    s = c.made[labels[0]].shape[1]
    return {label: ok[:, m * s : (m + 1) * s] for m, label in enumerate(labels)}


def score(
    task,
    predict,
    params,
    cfg: ScoreConfig | None = None,
    check_cfg: oracle.OracleConfig = oracle.CHECK,
    posterior_cfg: oracle.OracleConfig | None = None,
    log=output.say,
):
    """(rows, {visible: Completions}): every method at every visible count on the task's first
    `cfg.examples` held-out examples (see the module doc; cfg None: ScoreConfig()); the
    completions feed `figure`."""
    cfg = ScoreConfig() if cfg is None else cfg
    counts = cfg.counts(task)
    base = jax.tree.map(lambda a: a[: cfg.examples], jax.jit(task.eval_set)())  # one program
    rows, kept, start = [], {}, time.time()
    root = keys.key(task.seed, "samples")
    for i, v in enumerate(counts):
        k_v = jax.random.fold_in(root, v)
        batch = oracle_curve.held_out(task, v, cfg.examples, base)
        c = complete(task, predict, params, batch, k_v, cfg, posterior_cfg or POSTERIOR, log)
        ok = None
        if c.posterior is not None:
            ok = consistent_by_method(task, c, jax.random.fold_in(k_v, 200), check_cfg, log)
        for m in methods(cfg):
            if m.label in c.made:
                rows.append(measures.row(m, v, c, ok, cfg))
                log(output.line(m.label, rows[-1], time.time() - start))
        kept[v] = c
        elapsed, done = time.time() - start, (i + 1) / len(counts)
        log(f"  visible {v}: done [{elapsed:.0f} s, ETA {elapsed * (1 - done) / done:.0f} s]")
    return rows, kept
