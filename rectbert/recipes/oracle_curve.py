"""The oracle curve of a trained sparse run (at any of its checkpoints): the model against
the Bayes-optimal oracle at every number of visible points — oracle_curve.json,
calibration.json, figures/oracle_curve.png and figures/reliability.png in its workdir (with
--curve_on=unseen, on its drawings never trained on: each name ending in _unseen).
It holds the workdir's lock while it writes (one writer: a run still training there, or
another analysis, is refused naming its process).

A model trained with --mask_schedule=anycount answers at every count; one trained at a fixed
count is shown at counts it never saw (the curve then measures how it transfers)."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.oracle_curve import ON, CurveConfig
from rectbert.recipes import finished
from rectbert.training import evaluation, signals
from rectbert.training import workdir as workdir_lib

NAME = "oracle_curve"
SETTINGS = (finished.FinishedRun, CurveConfig)
SCENES = False
DEFAULTS: dict = {}
FIXED: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: object  # analysis.trained.Run
    task: object
    curve: CurveConfig


def build(v: dict) -> Plan:
    given, curve = config.build(finished.FinishedRun, v), config.build(CurveConfig, v)
    run, task = given.load(("sparse",), "the curve's files go in it")
    why = oracle.unsupported(oracle_curve.scored(task, curve.on)) if curve.on in ON else None
    if why:
        raise config.error(given, "workdir", f"a run the oracle can score ({why})")
    if oracle_curve.unnested(task):
        allowed = f"a run seen at nested visible counts ({oracle_curve.unnested(task)})"
        raise config.error(given, "workdir", allowed)
    curve.counts(task)
    return Plan(run, task, curve)


def main(plan: Plan, files: dict | None = None) -> None:
    del files  # it records nothing but its results
    workdir = plan.run.workdir
    with (
        workdir_lib.lock(workdir),
        signals.stage(workdir, f"the oracle curve at step {plan.run.step}"),
    ):
        signals.responsive(_main, plan)  # a stop is seen mid-call, the lock let go at once


def _main(plan: Plan) -> None:
    """(in the locked workdir)"""
    task = plan.task
    if task.name == "sparse":
        finished.note_transfer(task, "the curve's scores")
    predict = evaluation.make_predict(plan.run.model_config)
    oracle_curve.run(task, predict, plan.run.params, plan.run.step, plan.run.workdir, plan.curve)
