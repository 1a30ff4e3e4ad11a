"""Completions scored against the scene's prior: are they shapes, and are they as varied as
the posterior?

For each held-out example at each visible count (nested visible sets, as the oracle curve's),
every method completes the hidden tokens `per_example` times: independent argmax (one
completion), independent sampling, joint sampling in random order and most-confident-first
(rectbert.sampling); two references come from the oracle: its posterior samples (`oracle`)
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
  cannot tell the posterior from its marginals (measured; README).
- diversity: the mean fraction of hidden tokens on which two completions of one example
  differ (argmax: 0); beside the oracle's, how spread the completions are.
- accuracy: the share of hidden tokens equal to the truth.

Standard errors are over examples. Scenes the oracle does not support get accuracy and
diversity only (consistent_fraction and mmd null).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.samples import sampler
from rectbert.data import keys, points
from rectbert.data.tasks import Batch
from rectbert.geometry import codebook
from rectbert.training import workdir

VISIBLE = (2, 4, 8, 16)


TAU = 2.0  # kernel length, in differing tokens


# the posterior samples: more exact sweeps than the predictive needs, so that a replica's
# chains (resampled copies of few ancestors) move apart: 64 sweeps took the MMD between the
# two replicas' sets from 0.049 +- 0.024 (16 sweeps) to 0.017 +- 0.016 at 8 visible (rect)
POSTERIOR = oracle.OracleConfig(mcmc_steps=64)


def methods(temperature: float = 1.0) -> list[tuple[str, sampler.SampleConfig | None]]:
    """(row name, sampling config; None: the oracle's posterior samples) of every method."""
    cfg = sampler.SampleConfig(temperature=temperature)
    return [
        ("argmax", sampler.SampleConfig(method="argmax")),
        ("independent", dataclasses.replace(cfg, method="independent")),
        ("joint (random)", dataclasses.replace(cfg, order="random")),
        ("joint (confident)", dataclasses.replace(cfg, order="confident")),
        ("oracle", None),
    ]


def default_visible(task) -> tuple[int, ...]:
    """VISIBLE's counts below the sequence length (grid: the task's own visible count)."""
    if task.name != "sparse":
        return (task.seq_len - task.mask.count,)
    return tuple(v for v in VISIBLE if v < task.seq_len) or (task.seq_len - 1,)


def check(task, visible, examples: int, per_example: int) -> tuple[int, ...]:
    """The sorted visible counts, or a ValueError in one line (before any compute)."""
    length = task.seq_len
    if task.name not in ("sparse", "grid"):
        raise ValueError(f"samples are scored for sparse and grid runs; this is {task.name}")
    counts = oracle_curve.visible_counts(visible, length)
    for name, value, lo, hi in (
        ("examples", examples, 2, task.eval_examples),
        # each set of posterior samples comes from one replica's chains: no more than those
        ("samples per example", per_example, 2, oracle.OracleConfig().chains // 2),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or not (lo <= value <= hi)
        ):
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
    if task.name == "sparse" and scored(task):
        if not points.get(task.sampler).uniform:
            raise ValueError(
                f"the posterior needs uniformly sampled points; the task's sampler is "
                f"{task.sampler!r}"
            )
    return counts


def scored(task) -> bool:
    """Whether the oracle scores this task's completions (consistency and MMD)."""
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


def posterior(task, batch: Batch, key, s: int, cfg: oracle.OracleConfig):
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
    return chosen, np.take_along_axis(toks, pick[..., None], axis=2), marginal, found


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
    """ceiling's mean and standard error over the finite entries (unscored examples are NaN);
    None when there are none."""
    x = np.asarray(x, np.float64)
    return oracle_curve._mean_stderr(x[np.isfinite(x)]) if np.isfinite(x).any() else (None, None)


def score(
    task,
    predict,
    params,
    visible=None,
    examples: int = 32,
    per_example: int = 8,
    check_cfg: oracle.OracleConfig = oracle.CHECK,
    posterior_cfg: oracle.OracleConfig | None = None,
    temperature: float = 1.0,
    log=print,
):
    """(rows, figure data): every method at every visible count on the task's first `examples`
    held-out examples (see the module doc). Figure data: per count, the completions of every
    method and the posterior samples' parameters, for `figure`."""
    visible = default_visible(task) if visible is None else visible
    counts = check(task, visible, examples, per_example)
    has_oracle = scored(task)
    posterior_cfg = posterior_cfg or POSTERIOR
    base = jax.tree.map(lambda a: a[:examples], task.eval_set())
    rows, kept = [], {}
    start = time.time()
    root = keys.key(task.seed, "samples")
    for i, v in enumerate(counts):
        batch = oracle_curve.held_out(task, v, examples, base)
        hidden = np.asarray(batch.mask)
        k_v = jax.random.fold_in(root, v)
        made = {}
        for j, (name, cfg) in enumerate(methods(temperature)):
            if cfg is not None:
                made[name] = draw(
                    predict, params, batch, jax.random.fold_in(k_v, j), cfg, per_example
                )
        post = None
        if has_oracle:
            post = posterior(task, batch, jax.random.fold_in(k_v, 99), per_example, posterior_cfg)
            made["oracle"] = post[1][:, 0]  # set A; set B is the MMD's reference
            made["oracle_marginals"] = post[2]
            # every method's completions searched in one call (fewer, fuller batches)
            labels = list(made)
            together = np.concatenate([made[label] for label in labels], axis=1)
            ok_all = consistency(
                task, batch.points, together, jax.random.fold_in(k_v, 200), check_cfg
            )
            s = per_example
            ok_by = {label: ok_all[:, m * s : (m + 1) * s] for m, label in enumerate(labels)}
        for label, comp in made.items():
            truth = np.asarray(batch.tokens)[:, None]
            acc = ((comp == truth) & hidden[:, None]).sum((1, 2)) / (hidden.sum(1) * per_example)
            div = [diversity(comp[e], hidden[e]) for e in range(examples)]
            r = {"method": label.split(" ")[0], "order": None, "visible": v}
            if label.startswith("joint"):
                r["order"] = label.split("(")[1].rstrip(")")
            r.update(examples=examples, samples_per_example=per_example)
            model_sampled = label not in ("argmax", "oracle", "oracle_marginals")
            r["temperature"] = temperature if model_sampled else None
            r["accuracy"], r["accuracy_stderr"] = _mean_stderr(acc)
            r["diversity"], r["diversity_stderr"] = _mean_stderr(div)
            r["consistent_fraction"] = r["consistent_fraction_stderr"] = None
            r["mmd"] = r["mmd_stderr"] = None
            if has_oracle:
                found = post[3]
                frac = np.where(found, ok_by[label].mean(1), np.nan)
                r["consistent_fraction"], r["consistent_fraction_stderr"] = _mean_stderr(frac)
                ref = post[1][:, 1]
                mm = [mmd2(comp[e], ref[e]) if found[e] else np.nan for e in range(examples)]
                r["mmd"], r["mmd_stderr"] = _mean_stderr(mm)
                r["scored_examples"] = int(found.sum())  # consistency and MMD: over these
            rows.append(r)
            elapsed = time.time() - start
            log(
                f"  visible {v:2d} {label:18s} accuracy {r['accuracy']:.3f}  diversity "
                f"{r['diversity']:.3f}"
                + (
                    f"  consistent {r['consistent_fraction']:.3f}  MMD {r['mmd']:.4f}"
                    if r["mmd"] is not None
                    else ""
                )
                + f"  [{elapsed:.0f} s]"
            )
        kept[v] = {
            "batch": batch,
            "made": made,
            "posterior": None if post is None else post[0],
            "found": None if post is None else post[3],
        }
        done = (i + 1) / len(counts)
        log(
            f"  visible {v}: done [{time.time() - start:.0f} s, ETA "
            f"{(time.time() - start) * (1 - done) / done:.0f} s]"
        )
    return rows, kept


def write(workdir_path: str, rows: list[dict]) -> str:
    """samples.json (the rows), written atomically."""
    path = os.path.join(workdir_path, "samples.json")
    workdir.write_atomic(path, json.dumps(rows, indent=1) + "\n")
    return path
