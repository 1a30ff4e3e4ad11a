"""The oracle curve of a trained sparse run (finished, or still training): the model against
the Bayes-optimal oracle at every number of visible points — oracle_curve.json,
calibration.json, figures/oracle_curve.png and figures/reliability.png in its workdir.

A model trained with --mask_schedule=anycount answers at every count; one trained at a fixed
count is shown at counts it never saw (the curve then measures how it transfers)."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import oracle_curve
from rectbert.analysis.oracle_curve import CurveConfig
from rectbert.recipes import common
from rectbert.training import evaluation

NAME = "oracle_curve"
SETTINGS = (common.FinishedRun, CurveConfig)
DEFAULTS: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: object  # analysis.trained.Run
    task: object
    curve: CurveConfig


def build(v: dict) -> Plan:
    finished, curve = config.build(common.FinishedRun, v), config.build(CurveConfig, v)
    run, task = finished.load(("sparse",), "the curve's files go in it")
    why = task.scene.oracle_unsupported()
    if why:
        raise config.error(finished, "workdir", f"a run whose scene the oracle supports, not {why}")
    curve.counts(task)
    return Plan(run, task, curve)


def main(plan: Plan, files: dict | None = None) -> None:
    del files  # it records nothing but its results
    task = plan.task
    if task.mask.schedule != "anycount":
        print(
            f"note: this run trained with --mask_schedule={task.mask.schedule} (count "
            f"{task.mask.count}); counts it never saw measure how it transfers",
            flush=True,
        )
    predict = evaluation.make_predict(plan.run.model_config)
    oracle_curve.run(task, predict, plan.run.params, plan.run.step, plan.run.workdir, plan.curve)
