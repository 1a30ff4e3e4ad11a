"""The model against the Bayes-optimal oracle at every number of visible points: accuracy,
negative log-likelihood of the true token, KL(oracle || model) and calibration.

On the same held-out shapes and points at every count: each example's points are put in one
random order and the first `visible` of them are shown, so the visible sets are nested (the
curve's points are paired). Standard errors are over examples (the hidden tokens of one
example are not independent).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.analysis import calls, kept_counts, oracle
from rectbert.config import setting
from rectbert.data import keys
from rectbert.data.tasks import Batch
from rectbert.files import write_atomic
from rectbert.viz import curves

VISIBLE = (1, 2, 4, 8, 12, 16, 20, 23)  # of 24 points (the curve's default counts)
FLOOR = 1e-3  # the oracle's probabilities, for its NLL only, mixed with this share of uniform
BINS = 10  # reliability diagram / ECE: equal-width confidence bins
SAY = calls.SAY
ON = ("held_out", "unseen")  # the examples a curve scores (CurveConfig.on)


def default_visible(num_points: int) -> tuple[int, ...]:
    """VISIBLE's counts below num_points - 1, and num_points - 1 (one point hidden)."""
    return tuple(v for v in VISIBLE if v < num_points - 1) + (num_points - 1,)


def counts_allowed(length: int, what: str = "tokens") -> str:
    return f"integers in [1, {length - 1}] (of {length} {what}, one stays hidden)"


def visible_counts(visible, length: int) -> tuple[int, ...] | None:
    """Sorted distinct visible counts in [1, length - 1] from a sequence of whole numbers, or
    None when `visible` is not one (empty, not whole, out of range, not a sequence)."""
    if isinstance(visible, str | bytes):
        return None
    try:
        counts = tuple(sorted({int(v) for v in visible}))
        whole = all(not isinstance(v, bool) and float(v) == int(v) for v in visible)
    except (TypeError, ValueError, OverflowError):
        return None
    if not counts or not whole or counts[0] < 1 or counts[-1] > length - 1:
        return None
    return counts


def examples_allowed(examples, most: int) -> bool:
    whole = isinstance(examples, int | np.integer) and not isinstance(examples, bool)
    return whole and 2 <= examples <= most


@dataclasses.dataclass(frozen=True)
class CurveConfig:
    """Where the curve is measured: which visible counts, on how many held-out examples."""

    visible: tuple[int, ...] = setting(
        (),
        "Visible counts of the oracle curve; empty: 1,2,4,8,12,16,20,23 (those below "
        "num_points - 1) and num_points - 1.",
        flag="curve_visible",
        kind="counts",
    )
    examples: int = setting(
        256, "Held-out examples the oracle curve scores.", flag="curve_examples"
    )
    on: str = setting(
        "held_out",
        "Which examples the oracle curve scores: held_out (the run's held-out set) or unseen "
        "(drawings held out of training: --unseen_glyphs, --unseen_fraction, ...; the oracle's "
        "prior then those drawings); files of unseen end in _unseen.",
        flag="curve_on",
        choices=ON,
    )

    def counts(self, task, *, oracle_needed: bool = True) -> tuple[int, ...]:
        """The sorted counts for this sparse task (a ConfigError naming the field, before any
        compute); with oracle_needed, also a ValueError unless the oracle can score it."""
        most = task.eval_examples
        if not examples_allowed(self.examples, most):
            allowed = f"an integer in [2, {most}] (the task's held-out set; two for a stderr)"
            raise config.error(self, "examples", allowed)
        visible = self.visible or default_visible(task.num_points)
        counts = visible_counts(visible, task.num_points)
        if counts is None:
            raise config.error(self, "visible", counts_allowed(task.num_points, "points"))
        if unnested(task):
            raise config.error(self, "visible", f"unset for this run ({unnested(task)})")
        if self.on not in ON:
            raise config.error(self, "on", " or ".join(ON))
        if self.on == "unseen" and task.scene.unseen() is None:
            allowed = "held_out (this run's scene holds no drawings out of training)"
            raise config.error(self, "on", allowed)
        why = oracle.unsupported(scored(task, self.on)) if oracle_needed else None
        if why:
            raise ValueError(f"the oracle curve cannot be measured: {why}")
        return counts


def unnested(task) -> str | None:
    """Why a task's held-out examples cannot be shown at nested visible counts, or None: with
    --query_points or --occlude a point's place depends on whether it is hidden."""
    if not getattr(task, "split_points", False):
        return None
    return (
        "its hidden points fall elsewhere than its visible ones (--query_points or --occlude), "
        "so a count's first points are not the task's visible points"
    )


def order(task, examples: int):
    """[E, P] each example's random rank of its points: the first v are visible at count v."""
    noise = jax.random.uniform(keys.key(task.seed, "curve"), (examples, task.seq_len))
    return np.argsort(np.argsort(np.asarray(noise), axis=1), axis=1)


def scored(task, on: str):
    """The task whose prior the oracle takes for the examples `on` names: the run's own, or
    (unseen) the same with its scene's unseen part."""
    return dataclasses.replace(task, scene=task.scene.unseen()) if on == "unseen" else task


def examples_on(task, on: str, examples: int):
    """(the scene whose prior the oracle takes, the `examples` first examples) of the run's
    held-out set (on="held_out") or of its drawings never trained on (on="unseen")."""
    if on == "unseen":
        return task.scene.unseen(), jax.tree.map(lambda a: a[:examples], task.unseen_eval_set())
    return task.scene, jax.tree.map(lambda a: a[:examples], jax.jit(task.eval_set)())


def held_out(task, visible: int, examples: int, base: Batch | None = None) -> Batch:
    """The first `examples` held-out examples with `visible` points shown (nested in v);
    `base`: those examples, when already made (task.eval_set() is not free)."""
    if unnested(task):
        raise ValueError(f"no nested visible counts: {unnested(task)}")
    if base is None:
        base = jax.tree.map(lambda a: a[:examples], jax.jit(task.eval_set)())  # one program
    return dataclasses.replace(base, mask=jnp.asarray(order(task, examples) >= visible))


def model_probs(predict, params, batch: Batch, chunk: int = 512):
    """[B, P, K] float32 softmax of the model at every position."""
    out = []
    for i in range(0, batch.tokens.shape[0], chunk):
        part = jax.tree.map(lambda a, s=slice(i, i + chunk): a[s], batch)
        out.append(np.asarray(jax.nn.softmax(predict(params, part).astype(jnp.float32), -1)))
    return np.concatenate(out)


def mean_stderr(per_example_E) -> tuple[float, float]:
    x = np.asarray(per_example_E, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


def calibration(confidence_N, correct_N, bins: int = BINS) -> dict:
    """Reliability diagram of an argmax predictor: per equal-width confidence bin the count,
    mean confidence and accuracy; ECE = sum over bins of count/N x |accuracy - confidence|."""
    conf = np.asarray(confidence_N, np.float64)
    right = np.asarray(correct_N, np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, conf, bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, right, bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / max(conf.size, 1))
    return {
        "ece": ece,
        "count": count.tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": accuracy.tolist(),
    }


def scores(tokens_BxP, hidden_BxP, model_BxPxK, oracle_BxPxK) -> dict:
    """Per hidden token (flattened, example order): whether each argmax is right, each NLL of
    the true token, KL(oracle || model), the confidences; and each token's example index."""
    k = model_BxPxK.shape[-1]
    t = np.asarray(tokens_BxP)[hidden_BxP]
    m = np.asarray(model_BxPxK, np.float64)[hidden_BxP]
    o = np.asarray(oracle_BxPxK, np.float64)[hidden_BxP]
    rows = np.arange(t.size)
    log_m = np.log(np.maximum(m, 1e-30))
    o_floor = (1 - FLOOR) * o + FLOOR / k
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(o > 0, o * (np.log(np.where(o > 0, o, 1.0)) - log_m), 0.0).sum(-1)
    return {
        "example": np.nonzero(hidden_BxP)[0],
        "model_correct": m.argmax(-1) == t,
        "oracle_correct": o.argmax(-1) == t,
        "model_nll": -log_m[rows, t],
        "oracle_nll": -np.log(o_floor[rows, t]),
        "kl": kl,
        "model_confidence": m.max(-1),
        "oracle_confidence": o.max(-1),
    }


SCORES = (  # the per-token scores of a count (scores())
    "example",
    "model_correct",
    "oracle_correct",
    "model_nll",
    "oracle_nll",
    "kl",
    "model_confidence",
    "oracle_confidence",
)


def row(visible: int, s: dict, ess_E, min_ess: float) -> dict:
    """One curve point: each metric's mean over hidden tokens and its standard error over
    examples; the paired model - oracle accuracy; ECEs; unreliable oracle examples."""
    n = int(np.asarray(ess_E).size)

    def per_example(x):
        return np.bincount(s["example"], np.asarray(x, np.float64), n) / np.bincount(
            s["example"], minlength=n
        )

    out = {"visible": visible, "examples": n, "hidden_tokens": int(s["example"].size)}
    for name in ("model_accuracy", "oracle_accuracy", "model_nll", "oracle_nll", "kl"):
        key = {"model_accuracy": "model_correct", "oracle_accuracy": "oracle_correct"}.get(
            name, name
        )
        out[name], out[name + "_stderr"] = mean_stderr(per_example(s[key]))
    diff = s["model_correct"].astype(float) - s["oracle_correct"].astype(float)
    out["model_minus_oracle"], out["model_minus_oracle_stderr"] = mean_stderr(per_example(diff))
    out["model_over_oracle"] = out["model_accuracy"] / max(out["oracle_accuracy"], 1e-12)
    # the paired NLL gap: KL(posterior || model) in expectation when the oracle is exact; the
    # oracle's Monte Carlo error lowers it as it raises the plug-in `kl` (true KL between)
    gap = np.asarray(s["model_nll"]) - np.asarray(s["oracle_nll"])
    out["nll_gap"], out["nll_gap_stderr"] = mean_stderr(per_example(gap))
    out["model_ece"] = calibration(s["model_confidence"], s["model_correct"])["ece"]
    out["oracle_ece"] = calibration(s["oracle_confidence"], s["oracle_correct"])["ece"]
    out["oracle_unreliable"] = int(np.sum(np.asarray(ess_E) < min_ess))
    out["oracle_median_ess"] = float(np.median(ess_E))
    return out


ROW_ESS = 100  # a row's oracle is converged where the median ESS is at least this, and
ROW_EVIDENCE = 0.2  # (a mixture) the replicas' evidences disagree by a median of at most this


def converged(r: dict) -> dict:
    """The row with `oracle_converged`: whether its median ESS is ROW_ESS or more and, for a
    mixture (whose p(component | visible) the evidence weighs), the median relative
    disagreement of the replicas' evidences ROW_EVIDENCE or less. A row that is not is
    kept, and said."""
    mixture = len(r.get("oracle_components", ())) > 1
    ok = r["oracle_median_ess"] >= ROW_ESS
    ok = ok and not (mixture and r["oracle_median_evidence_error"] > ROW_EVIDENCE)
    return {**r, "oracle_converged": bool(ok)}


def curve(
    task,
    predict,
    params,
    visible=None,
    examples: int = 256,
    cfg: oracle.OracleConfig | None = None,
    log=SAY,
    on: str = "held_out",
    partial: kept_counts.Partial | None = None,
):
    """(rows, calibration): the curve at each visible count (default: default_visible) on
    the task's first `examples` held-out examples (on="unseen": of its drawings never trained
    on, the oracle's prior theirs), and the reliability diagrams of model and oracle over
    every hidden token of every count. `predict(params, batch)` gives logits
    (evaluation.make_predict). With `partial`, each count is kept there as it is done and
    the counts it already holds are taken from it (kept_counts.Partial: a resumed curve)."""
    given = () if visible is None else visible
    given = tuple(given) if not isinstance(given, str) else given
    counts = CurveConfig(given, examples, on).counts(task)
    cfg = cfg or oracle.OracleConfig()
    scene, base = examples_on(task, on, examples)
    if partial:  # kept for these very examples, codebook and oracle
        made_for = {**partial.made_for, "oracle": repr(cfg), "backend": jax.default_backend()}
        made_for["examples_sha"] = kept_counts.fingerprint(base.points, base.tokens, task.codebook)
        partial = dataclasses.replace(partial, made_for=made_for)
    done = partial.load(log) if partial else {}
    rows, pooled, todo = [], [], [v for v in counts if v not in done]
    start = time.time()
    for v in counts:
        if v in done:
            r, s = done[v]
            log(_said(r, examples) + f"  (kept from an earlier run: {partial.path})")
        else:
            r, s = _count(task, predict, params, v, examples, base, scene, cfg, on, log)
            done[v] = r, s
            if partial:
                partial.save(done)
            i, elapsed = todo.index(v) + 1, time.time() - start
            log(
                _said(r, examples)
                + f"  [{elapsed:.0f} s, ETA {elapsed / i * (len(todo) - i):.0f} s]"
            )
        rows.append(r)
        pooled.append(s)
    cat = {k: np.concatenate([s[k] for s in pooled]) for k in pooled[0]}
    calib = {
        who: calibration(cat[f"{who}_confidence"], cat[f"{who}_correct"])
        for who in ("model", "oracle")
    }
    return rows, calib


def _count(task, predict, params, v, examples, base, scene, cfg, on, log):
    """(row, scores) of one visible count."""
    batch = held_out(task, v, examples, base)
    probs_m = model_probs(predict, params, batch)
    post = oracle.posterior_batch(
        jax.random.fold_in(keys.key(task.seed, "oracle"), 1000 + v),
        batch,
        task.codebook,
        scene,
        cfg,
        say=log,
    )
    s = scores(batch.tokens, np.asarray(batch.mask), probs_m, post.probs)
    return converged({**row(v, s, post.ess, cfg.min_ess), **oracle.summary(post), "on": on}), s


def _said(r: dict, examples: int) -> str:
    return (
        f"  visible {r['visible']:2d}: model {r['model_accuracy']:.4f} oracle"
        f" {r['oracle_accuracy']:.4f} (x{r['model_over_oracle']:.4f})  NLL {r['model_nll']:.3f}"
        f" / {r['oracle_nll']:.3f}  KL {r['kl']:.4f}  unreliable {r['oracle_unreliable']}/"
        f"{examples}"
        + ("" if r["oracle_converged"] else "  (row UNRELIABLE: the oracle not converged)")
    )


def write(
    workdir_path: str, rows: list[dict], calib: dict, *, title: str = "", on: str = "held_out"
) -> list[str]:
    """oracle_curve.json (the rows), calibration.json, figures/oracle_curve.png and
    figures/reliability.png (on="unseen": each name ending in _unseen); each written
    atomically (a reader never sees half a file), the numbers before the figures. Both JSON
    files record the step and the counts they were made from (the rows each;
    calibration.json as its `made_from`), so a pair left unmatched by a kill between the two
    writes shows."""
    if on not in ON:
        raise ValueError(f"on must be one of {ON}; got {on!r}")
    made_from = {k: rows[0][k] for k in ("step", "mask_schedule", "on") if k in rows[0]}
    made_from.update(visible=[r["visible"] for r in rows], examples=rows[0]["examples"])
    end = "" if on == "held_out" else f"_{on}"
    c_path = os.path.join(workdir_path, f"calibration{end}.json")
    write_atomic(c_path, json.dumps({"made_from": made_from, **calib}, indent=1) + "\n")
    path = os.path.join(workdir_path, f"oracle_curve{end}.json")
    write_atomic(path, json.dumps(rows, indent=1) + "\n")
    figs = os.path.join(workdir_path, "figures")
    return [
        c_path,
        path,
        curves.oracle_curve(rows, os.path.join(figs, f"oracle_curve{end}.png"), title=title),
        curves.reliability(calib, os.path.join(figs, f"reliability{end}.png"), title=title),
    ]


def count_list(counts) -> str:
    """'visible count 8', 'visible counts 1, 4, 23': what a stage's first line names."""
    return f"visible count{'s' * (len(counts) != 1)} {', '.join(map(str, counts))}"


def run(task, predict, params, step: int, workdir: str, cfg: CurveConfig, log=SAY) -> list:
    """The curve of the run at `step`, written into `workdir` (rows record the checkpoint's
    step and the training schedule); says what it does and where it wrote."""
    counts = cfg.counts(task)
    which = "held-out" if cfg.on == "held_out" else "unseen"
    n = f"{count_list(counts)} x {cfg.examples} {which} examples"
    log(f"oracle curve: {n} (step {step})")
    end = "" if cfg.on == "held_out" else f"_{cfg.on}"
    # what the kept counts were made for: a run trained anew to the same step differs
    made_for = {"format": kept_counts.FORMAT, "step": step, "on": cfg.on, "seed": task.seed}
    made_for["params"] = kept_counts.fingerprint(params)
    path = os.path.join(workdir, f"oracle_curve{end}.partial.json")
    partial = kept_counts.Partial(path, made_for, SCORES)
    rows, calib = curve(
        task, predict, params, counts, cfg.examples, log=log, on=cfg.on, partial=partial
    )
    for r in rows:  # which checkpoint, training regime and examples the file describes
        r["step"], r["mask_schedule"] = step, task.mask.schedule
    title = f"{task.scene.name}, step {step}, {cfg.examples} {which} examples"
    for path in write(workdir, rows, calib, title=title, on=cfg.on):
        log(f"wrote {path}")
    partial.finish(counts)
    return rows
