"""Joint samplers and training objectives against the posterior, paired on the same held-out
examples: the shape rate, diversity and pairwise TV of each sampler's completions, per
example, beside the posterior's own.

python -m benchmarks.joint_samples --workdirs=runs/a[,runs/a2,...] [--against=runs/b[,...]]
    [--samplers=random,repair] [--visible=2,4,8,16] [--examples=32] [--per_example=8]
    [--json=out.json]

Each workdir is scored by every sampler; within a run, each sampler after the first is
compared with the first (paired by example). With --against (one run per workdir, in the same
order: the same scene, seed and codebook, so the same held-out examples), each sampler of
each --against run is compared with the same sampler of its workdir: a training lever against
the baseline. Several workdirs (seeds) pool their examples. The posterior's samples come from
the oracle once per workdir and count (`oracle` row: its shape rate is the search's hit rate,
its diversity the target, its pairwise TV the estimator's floor).
"""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
from absl import flags
from absl import logging as absl_logging

import rectbert
from benchmarks import usage
from rectbert import config
from rectbert.analysis import oracle_curve
from rectbert.analysis.samples import measures, posterior, sampler, scores
from rectbert.analysis.samples.settings import ScoreConfig
from rectbert.data import keys
from rectbert.model import losses
from rectbert.training import evaluation

FLAGS = flags.FLAGS
SCORES = ("shape", "diversity", "pair_tv")
FLAG_OF = {"visible": "visible", "examples": "examples", "per_example": "per_example"}


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_list("workdirs", [], "Trained any-count sparse runs (seeds pool).")
    flags.DEFINE_list("against", [], "Runs compared with --workdirs, one each, same task.")
    flags.DEFINE_list("samplers", ["random", "repair"], f"Of {list(sampler.SAMPLERS)}.")
    flags.DEFINE_list("visible", ["2", "4", "8", "16"], "Visible counts.")
    flags.DEFINE_integer("examples", 32, "Held-out examples per count (the curve's first).")
    flags.DEFINE_integer("per_example", 8, "Completions per example and sampler.")
    flags.DEFINE_string("json", "", "Where to write every per-example score (empty: nowhere).")


def check(workdirs, against, samplers, visible, examples, per_example):
    """(runs, runs against, sampler names, counts), or a usage.Error naming the flag."""
    if not workdirs:
        raise usage.refuse("workdirs", workdirs, "one or more trained any-count sparse runs")
    if against and len(against) != len(workdirs):
        raise usage.refuse("against", against, f"one run per workdir ({len(workdirs)})")
    names = usage.names("samplers", samplers, sampler.SAMPLERS)
    counts = usage.integers("visible", visible, 1)
    for flag, given in (("samplers", names), ("visible", counts), ("workdirs", workdirs)):
        if len(set(given)) < len(given):  # one counted twice would halve its errors
            raise usage.refuse(flag, given, "no name or count twice")
    runs, others = _loaded("workdirs", workdirs), _loaded("against", against)
    tasks = [run.task() for run in runs]
    for w, task in zip(workdirs, tasks, strict=True):
        try:
            ScoreConfig(visible=counts, examples=examples, per_example=per_example).counts(task)
        except config.ConfigError as e:
            if e.field in FLAG_OF:  # a count or size this run cannot give
                flag = FLAG_OF[e.field]
                given = {"visible": visible, "examples": examples, "per_example": per_example}
                raise usage.refuse(flag, given[flag], f"{e.allowed} (for {w})") from None
            raise usage.refuse("workdirs", w, f"a run the samples score ({e.allowed})") from None
        except ValueError as e:
            raise usage.refuse("workdirs", w, f"a run the samples score ({e})") from None
    for w, run, task in zip(against, others, tasks[: len(against)], strict=True):
        mine = run.task()
        same = (mine.scene, mine.seed, mine.seq_len) == (task.scene, task.seed, task.seq_len)
        if not (same and np.array_equal(run.codebook, task.codebook)):
            raise usage.refuse("against", w, "a run of its workdir's scene, seed and codebook")
    return runs, others, names, counts


def _loaded(flag: str, workdirs) -> list:
    out = []
    for w in workdirs:
        try:
            out.append(rectbert.load_run(w))
        except (ValueError, OSError) as e:
            raise usage.refuse(flag, w, f"a trained run ({e})") from None
    return out


_predict = functools.cache(evaluation.make_predict)  # one function a model: compiled once


def per_example(run, task, batch, post, name: str, s: int, key) -> dict:
    """{score: [B] values} of one sampler's s completions of each example (NaN where the
    posterior was not reached)."""
    predict = _predict(run.model_config)
    comp = scores.draw(predict, run.params, batch, key, sampler.SampleConfig(order=name), s)
    return _scored(task, batch, post, comp, jax.random.fold_in(key, 1))


def _scored(task, batch, post, comp, key) -> dict:
    ok = posterior.consistency(task, batch.points, comp, key)
    hidden, ref = np.asarray(batch.mask), post.tokens[:, 1]
    out = {k: np.full(len(comp), np.nan) for k in SCORES}
    for e in np.flatnonzero(post.found):
        out["shape"][e] = ok[e].mean()
        out["diversity"][e] = measures.diversity(comp[e], hidden[e])
        out["pair_tv"][e] = measures.pairwise_tv(comp[e], ref[e], hidden[e])
    return out


def score_all(runs, others, names, counts, examples, s) -> dict:
    """{(group, sampler or 'oracle', v): {score: [examples pooled over the runs]}}."""
    pooled: dict = {}
    for i, run in enumerate(runs):
        task = run.task()
        base = jax.tree.map(lambda a: a[:examples], jax.jit(task.eval_set)())
        for v in counts:
            batch = oracle_curve.held_out(task, v, examples, base)
            key = jax.random.fold_in(keys.key(task.seed, "samples"), v)  # as experiments.sample
            post = posterior.posterior(
                task, batch, jax.random.fold_in(key, 99), s, posterior.POSTERIOR
            )
            found = [
                (
                    "oracle",
                    _scored(task, batch, post, post.tokens[:, 0], jax.random.fold_in(key, 200)),
                )
            ]
            for group, r in [("workdirs", run)] + ([("against", others[i])] if others else []):
                for name in names:
                    k = jax.random.fold_in(key, 2 + list(sampler.SAMPLERS).index(name))
                    found.append(((group, name), per_example(r, task, batch, post, name, s, k)))
            for label, got in found:
                entry = pooled.setdefault((label, v), {k: [] for k in SCORES})
                for k in SCORES:
                    entry[k].append(got[k])
            print(f"  {run.workdir} visible {v}: scored", flush=True)
    return {key: {k: np.concatenate(x) for k, x in e.items()} for key, e in pooled.items()}


def _mean_se(x, runs: int = 1) -> str:
    """The mean +- its standard error over examples; with several runs (seeds, their examples
    in turn), also the standard deviation of the runs' own means."""
    ok = x[np.isfinite(x)]
    text = f"{ok.mean():.3f} +- {ok.std(ddof=1) / np.sqrt(max(ok.size, 1)):.3f}"
    if runs > 1:
        means = [np.nanmean(part) for part in np.split(x, runs)]
        text += f" (sd over {runs} runs {np.std(means, ddof=1):.3f})"
    return text


def _diff(a, b) -> str:
    ok = np.isfinite(a) & np.isfinite(b)
    d, se = losses.paired_difference(a[ok], b[ok])
    return f"{d:+.3f} +- {se:.3f}"


def report(pooled, names, counts, against: bool, runs: int) -> None:
    groups = ["workdirs", "against"] if against else ["workdirs"]
    for v in counts:
        print(
            f"visible {v}: oracle "
            + "  ".join(f"{k} {_mean_se(pooled['oracle', v][k])}" for k in SCORES)
        )
        for g in groups:
            first = pooled[(g, names[0]), v]
            for name in names:
                got, line = pooled[(g, name), v], f"  {g} {name:10s}"
                for k in SCORES:
                    line += f"  {k} {_mean_se(got[k], runs)}"
                    if name != names[0]:
                        line += f" ({_diff(got[k], first[k])} vs {names[0]})"
                    if g == "against":
                        line += f" ({_diff(got[k], pooled[('workdirs', name), v][k])} vs workdirs)"
                print(line, flush=True)


def main(argv):
    del argv  # none (usage.run)
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every restore at INFO
    usage.integer("examples", FLAGS.examples, 2)
    usage.integer("per_example", FLAGS.per_example, 2)
    runs, others, names, counts = check(
        FLAGS.workdirs,
        FLAGS.against,
        FLAGS.samplers,
        FLAGS.visible,
        FLAGS.examples,
        FLAGS.per_example,
    )
    out = usage.output("json", FLAGS.json)  # made only once every other flag is allowed
    pooled = score_all(runs, others, names, counts, FLAGS.examples, FLAGS.per_example)
    report(pooled, names, counts, bool(others), len(runs))
    if out:
        rows = [
            {
                "label": list(label) if isinstance(label, tuple) else label,
                "visible": v,
                **{k: [float(y) if np.isfinite(y) else None for y in x] for k, x in e.items()},
            }
            for (label, v), e in pooled.items()
        ]
        with open(out, "w") as f:
            json.dump(rows, f)
        print(f"wrote {out}")


if __name__ == "__main__":
    define_flags()
    usage.run(main)
