"""Trained sparse runs against each other at every visible count, paired on the same hidden
tokens: the oracle curve's held-out examples and masks, no oracle needed.

python -m benchmarks.compare_runs --workdirs=runs/a,runs/b[,...] [--visible=1,2,4,8,12,16,20,23]
                                  [--examples=256]

Each run after the first is compared with the first: accuracy and NLL at each count and their
paired differences (points and nats, with the standard error over hidden tokens, as the
curve's own model − oracle column). The runs must share their task (scene, schedule,
points, seed) and codebook: the held-out examples are then the same tokens; a run with
another is refused.
"""

from __future__ import annotations

import numpy as np
from absl import flags
from absl import logging as absl_logging

import rectbert
from benchmarks import usage
from rectbert.analysis import oracle_curve
from rectbert.model import losses
from rectbert.training import evaluation

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_list("workdirs", [], "Trained sparse runs; the first is the baseline.")
    flags.DEFINE_list("visible", ["1", "2", "4", "8", "12", "16", "20", "23"], "Visible counts.")
    flags.DEFINE_integer("examples", 256, "Held-out examples per count (the curve's first ones).")


def scored_at(run, task, visible: int, examples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per hidden token of the curve's held-out batch at `visible`: 1 where the run's argmax
    is the true token, and the true token's negative log-probability (nats)."""
    batch = oracle_curve.held_out(task, visible, examples)
    predict = evaluation.make_predict(run.model_config)
    probs = oracle_curve.model_probs(predict, run.params, batch)
    mask, tokens = np.asarray(batch.mask), np.asarray(batch.tokens)
    right = (probs.argmax(-1) == tokens)[mask].astype(np.float64)
    p_true = np.take_along_axis(probs, tokens[..., None], -1)[..., 0][mask]
    return right, -np.log(np.maximum(p_true, 1e-30))


def check(workdirs, visible, examples: int):
    """(the runs, the visible counts) from the flags' values, or a usage.Error naming the flag
    (before any compute): sparse runs of one task, which holds `examples` held-out examples."""
    if len(workdirs) < 2:
        raise usage.refuse("workdirs", workdirs, "two or more trained sparse runs")
    counts = usage.integers("visible", visible, 1)
    try:
        runs = [rectbert.load_run(w) for w in workdirs]
        task = runs[0].task()
        others = [run.task() for run in runs[1:]]
    except (ValueError, OSError) as e:
        raise usage.Error(str(e)) from None
    if task.name != "sparse":
        said = f"trained sparse runs ({workdirs[0]} is a {task.name} run)"
        raise usage.refuse("workdirs", workdirs, said)
    if oracle_curve.unnested(task):
        said = (
            f"runs scored at nested visible counts ({workdirs[0]}: {oracle_curve.unnested(task)})"
        )
        raise usage.refuse("workdirs", workdirs, said)
    for w, other in zip(workdirs[1:], others, strict=True):
        if other.record() != task.record() or not np.array_equal(other.codebook, task.codebook):
            raise usage.refuse("workdirs", w, f"a run of {workdirs[0]}'s task")
    if any(v >= task.seq_len for v in counts):
        raise usage.refuse("visible", visible, f"counts in [1, {task.seq_len - 1}]")
    usage.integer("examples", examples, 1, task.eval_examples, " (the runs' held-out examples)")
    return runs, counts


def main(argv):
    del argv  # none (usage.run)
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every restore at INFO
    runs, counts = check(FLAGS.workdirs, FLAGS.visible, FLAGS.examples)
    for v in counts:
        scored = [scored_at(run, run.task(), v, FLAGS.examples) for run in runs]
        (r0, n0), line = scored[0], f"visible {v:2d}: {FLAGS.workdirs[0]}"
        line += f" {r0.mean():.4f} NLL {n0.mean():.3f}"
        for w, (r, nll) in zip(FLAGS.workdirs[1:], scored[1:], strict=True):
            diff, se = losses.paired_difference(r, r0)
            d_nll, se_nll = losses.paired_difference(nll, n0)
            line += (
                f"; {w} {r.mean():.4f} ({100 * diff:+.2f} +- {100 * se:.2f} pt), NLL "
                f"{nll.mean():.3f} ({d_nll:+.3f} +- {se_nll:.3f})"
            )
        print(line, flush=True)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
