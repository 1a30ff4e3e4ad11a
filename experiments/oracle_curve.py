"""The model against the Bayes-optimal oracle at every number of visible points, for a
finished (or running) sparse workdir: oracle_curve.json, calibration.json,
figures/oracle_curve.png and figures/reliability.png in the workdir.

python -m experiments.oracle_curve --workdir=runs/sparse_anycount_quick [--visible=1,4,23]
A model trained with --mask_schedule=anycount answers at every count; one trained at a fixed
count is shown at counts it never saw (what the curve then measures is how it transfers).
"""

from __future__ import annotations

from absl import flags

from experiments import common
from rectbert.analysis import oracle, oracle_curve
from rectbert.training import evaluation


def define_flags(fv) -> None:
    flags.DEFINE_string("workdir", None, "A sparse run's directory (required).", flag_values=fv)
    define_curve_flags(fv)
    flags.DEFINE_integer(
        "step", None, "Checkpoint step to load (default: the latest).", flag_values=fv
    )


def define_curve_flags(fv) -> None:
    flags.DEFINE_list(
        "curve_visible",
        [],
        "Visible counts of the oracle curve; empty: 1,2,4,8,12,16,20,23 (those below "
        "num_points - 1) and num_points - 1.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "curve_examples", 256, "Held-out examples the oracle curve scores.", flag_values=fv
    )


def visible_counts(fv, task) -> tuple[int, ...]:
    """The curve's counts from the flags, checked in one line before any compute."""
    given = fv.curve_visible or oracle_curve.default_visible(task.num_points)
    try:
        values = [float(v) for v in given]
        return oracle_curve.check(task, values, fv.curve_examples)
    except ValueError as e:
        flag = "curve_examples" if "examples" in str(e) else "curve_visible"
        raise common.error(fv, flag, str(e)) from None


def run_curve(fv, task, predict, params, step: int, workdir: str, counts) -> list[dict]:
    """The curve, written into `workdir`; prints where."""
    print(
        f"oracle curve: {len(counts)} visible counts x {fv.curve_examples} held-out examples "
        f"(step {step})",
        flush=True,
    )
    rows, calib = oracle_curve.curve(
        task, predict, params, counts, fv.curve_examples, oracle.OracleConfig()
    )
    for r in rows:  # which checkpoint and training regime the file describes
        r["step"], r["mask_schedule"] = step, task.mask.schedule
    title = f"{task.scene.name}, step {step}, {fv.curve_examples} held-out examples"
    for path in oracle_curve.write(workdir, rows, calib, title=title):
        print(f"wrote {path}", flush=True)
    return rows


def main(fv) -> None:
    run, task = common.finished_run(fv, ("sparse",), "the curve's files")
    if task.mask.schedule != "anycount":
        print(
            f"note: this run trained with --mask_schedule={task.mask.schedule} (count "
            f"{task.mask.count}); counts it never saw measure how it transfers",
            flush=True,
        )
    why = task.scene.oracle_unsupported()
    if why:
        raise common.error(fv, "workdir", f"a run whose scene the oracle supports, not {why}")
    counts = visible_counts(fv, task)
    predict = evaluation.make_predict(run.model_config)
    run_curve(fv, task, predict, run.params, run.step, fv.workdir, counts)


if __name__ == "__main__":
    common.run(define_flags, main)
