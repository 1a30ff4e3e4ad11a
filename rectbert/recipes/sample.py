"""Joint samples of a trained sparse or grid run (at any of its checkpoints): completions
drawn from the model and scored against the scene's prior — samples.json and
figures/samples.png in its workdir. Rows: method (argmax, independent, joint with its order;
oracle and oracle_marginals, the references), visible, accuracy, consistent_fraction, mmd (to
posterior samples) and diversity, each with its standard error over examples. It holds the
workdir's lock while it writes (one writer: a run still training there, or another analysis,
is refused naming its process)."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import oracle_curve
from rectbert.analysis.samples import figure
from rectbert.analysis.samples.settings import ScoreConfig
from rectbert.recipes import finished
from rectbert.training import evaluation, signals
from rectbert.training import workdir as workdir_lib

NAME = "sample"
SETTINGS = (finished.FinishedRun, ScoreConfig)
SCENES = False
DEFAULTS: dict = {}
FIXED: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: object  # analysis.trained.Run
    task: object
    samples: ScoreConfig


def build(v: dict) -> Plan:
    given, samples = config.build(finished.FinishedRun, v), config.build(ScoreConfig, v)
    run, task = given.load(("sparse", "grid"), "the samples go in it")
    if oracle_curve.unnested(task):
        allowed = f"a run seen at nested visible counts ({oracle_curve.unnested(task)})"
        raise config.error(given, "workdir", allowed)
    try:
        samples.counts(task)
    except config.ConfigError as e:
        if e.field != "sampler":
            raise
        raise config.error(given, "workdir", f"a run with uniform points ({e.allowed})") from None
    return Plan(run, task, samples)


def main(plan: Plan, files: dict | None = None) -> None:
    del files  # it records nothing but its results
    workdir = plan.run.workdir
    with workdir_lib.lock(workdir), signals.stage(workdir, f"the samples at step {plan.run.step}"):
        signals.responsive(_main, plan)  # a stop is seen mid-call, the lock let go at once


def _main(plan: Plan) -> None:
    """(in the locked workdir)"""
    task = plan.task
    if task.name == "sparse":
        finished.note_transfer(task, "completions")
    predict = evaluation.make_predict(plan.run.model_config)
    figure.run(task, predict, plan.run.params, plan.run.step, plan.run.workdir, plan.samples)
