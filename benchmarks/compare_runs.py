"""Trained sparse runs against each other at every visible count, paired on the same hidden
tokens: the oracle curve's held-out examples and masks, no oracle needed.

python -m benchmarks.compare_runs --workdirs=runs/a,runs/b[,...] [--visible=1,2,4,8,12,16,20,23]
                                  [--examples=256]

Each run after the first is compared with the first: accuracy at each count and the paired
difference (points, with the standard error over hidden tokens, as the curve's own
model − oracle column). The runs must share their task (scene, schedule, points, seed): the
held-out examples are then the same tokens; a run with another task is refused.
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

flags.DEFINE_list("workdirs", [], "Trained sparse runs; the first is the baseline.")
flags.DEFINE_list("visible", ["1", "2", "4", "8", "12", "16", "20", "23"], "Visible counts.")
flags.DEFINE_integer("examples", 256, "Held-out examples per count (the curve's first ones).")
FLAGS = flags.FLAGS


def right_at(run, task, visible: int, examples: int) -> np.ndarray:
    """Per hidden token of the curve's held-out batch at `visible`: 1 where the run's argmax
    is the true token."""
    batch = oracle_curve.held_out(task, visible, examples)
    predict = evaluation.make_predict(run.model_config)
    probs = oracle_curve.model_probs(predict, run.params, batch)
    mask = np.asarray(batch.mask)
    return (probs.argmax(-1) == np.asarray(batch.tokens))[mask].astype(np.float64)


def main(argv):
    del argv  # none (usage.run)
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every restore at INFO
    if len(FLAGS.workdirs) < 2:
        raise usage.refuse("workdirs", FLAGS.workdirs, "two or more trained sparse runs")
    counts = usage.integers("visible", FLAGS.visible, 1)
    usage.integer("examples", FLAGS.examples, 1, 2**16)
    try:
        runs = [rectbert.load_run(w) for w in FLAGS.workdirs]
    except (ValueError, OSError) as e:
        raise usage.Error(str(e)) from None
    task = runs[0].task()
    for w, run in zip(FLAGS.workdirs[1:], runs[1:], strict=True):
        other = run.task()
        if other.record() != task.record() or not np.array_equal(other.codebook, task.codebook):
            raise usage.refuse("workdirs", w, f"a run of {FLAGS.workdirs[0]}'s task")
    if any(v >= task.seq_len for v in counts):
        raise usage.refuse("visible", FLAGS.visible, f"counts in [1, {task.seq_len - 1}]")
    for v in counts:
        rights = [right_at(run, run.task(), v, FLAGS.examples) for run in runs]
        line = f"visible {v:2d}: {FLAGS.workdirs[0]} {rights[0].mean():.4f}"
        for w, r in zip(FLAGS.workdirs[1:], rights[1:], strict=True):
            diff, se = losses.paired_difference(r, rights[0])
            line += f"; {w} {r.mean():.4f} ({100 * diff:+.2f} +- {100 * se:.2f} pt)"
        print(line, flush=True)


if __name__ == "__main__":
    usage.run(main)
