"""Completions drawn from a finished (or running) sparse or grid run, scored against the
scene's prior: samples.json and figures/samples.png in the workdir.

python -m experiments.sample --workdir=runs/sparse_anycount_quick [--sample_visible=2,4,8,16]
Rows: method (argmax, independent, joint with its order, oracle: posterior samples), visible,
accuracy, consistent_fraction, mmd (to posterior samples) and diversity, each with its
standard error over examples (rectbert/scores.py).
"""

from __future__ import annotations

import os

from absl import flags

from experiments import common
from rectbert.analysis.samples import figure, scores
from rectbert.training import evaluation


def define_flags(fv) -> None:
    flags.DEFINE_string(
        "workdir", None, "A sparse or grid run's directory (required).", flag_values=fv
    )
    define_sample_flags(fv)
    flags.DEFINE_integer(
        "step", None, "Checkpoint step to load (default: the latest).", flag_values=fv
    )


def define_experiment_flags(fv) -> None:
    """--samples and the sample flags, on an experiment that trains."""
    flags.DEFINE_bool(
        "samples",
        False,
        "At the final evaluation (also of a finished workdir) draw completions (argmax, "
        "independent, joint) and score them against the prior: samples.json, "
        "figures/samples.png.",
        flag_values=fv,
    )
    define_sample_flags(fv)


def define_sample_flags(fv) -> None:
    flags.DEFINE_list(
        "sample_visible",
        [],
        "Visible counts the completions start from; empty: 2,4,8,16 (sparse, those below the "
        "point count), the task's own visible count (grid).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "sample_examples", 32, "Held-out examples completed at each count.", flag_values=fv
    )
    flags.DEFINE_integer(
        "samples_per_example", 8, "Completions per example and method.", flag_values=fv
    )
    flags.DEFINE_float(
        "sample_temperature",
        1.0,
        "The model's logits are divided by it for independent and joint sampling (1: its own "
        "distribution; below 1: sharper).",
        flag_values=fv,
    )


def sample_counts(fv, task) -> tuple[int, ...]:
    """The counts from the flags, checked in one line before any compute."""
    given = fv.sample_visible or scores.default_visible(task)
    if not fv.sample_temperature > 0 or fv.sample_temperature == float("inf"):
        raise common.error(fv, "sample_temperature", "a finite number > 0 (argmax is its own row)")
    try:
        values = [float(v) for v in given]
        return scores.check(task, values, fv.sample_examples, fv.samples_per_example)
    except ValueError as e:
        msg = str(e)
        flag = (
            "sample_examples"
            if msg.startswith("examples")
            else "samples_per_example"
            if msg.startswith("samples")
            else ("point_sampler" if "point_sampler" in fv else "workdir")
            if "sampler" in msg
            else "sample_visible"
        )
        raise common.error(fv, flag, msg) from None


def run_samples(fv, task, predict, params, step: int, workdir: str, counts) -> list[dict]:
    """Score the completions and write samples.json and figures/samples.png into `workdir`."""
    print(
        f"samples: {len(counts)} visible counts x {fv.sample_examples} held-out examples x "
        f"{fv.samples_per_example} completions per method (step {step})",
        flush=True,
    )
    if not scores.scored(task):
        print(
            f"note: the oracle does not support {task.scene.oracle_unsupported()}: accuracy "
            "and diversity only (consistent_fraction and mmd null)",
            flush=True,
        )
    rows, kept = scores.score(
        task,
        predict,
        params,
        counts,
        fv.sample_examples,
        fv.samples_per_example,
        temperature=fv.sample_temperature,
    )
    for r in rows:
        r["step"], r["mask_schedule"] = step, task.mask.schedule
    fig = figure.figure(
        task, predict, params, kept, os.path.join(workdir, "figures", "samples.png")
    )
    for path in (scores.write(workdir, rows), fig):
        print(f"wrote {path}", flush=True)
    return rows


def main(fv) -> None:
    run, task = common.finished_run(fv, ("sparse", "grid"), "samples")
    if task.mask.schedule != "anycount" and task.name == "sparse":
        print(
            f"note: this run trained with --mask_schedule={task.mask.schedule} (count "
            f"{task.mask.count}); completions from other counts measure how it transfers",
            flush=True,
        )
    counts = sample_counts(fv, task)
    predict = evaluation.make_predict(run.model_config)
    run_samples(fv, task, predict, run.params, run.step, fv.workdir, counts)


if __name__ == "__main__":
    common.run(define_flags, main)
