"""Joint samples of a trained sparse or grid run (finished, or still training): completions
drawn from the model and scored against the scene's prior — samples.json and
figures/samples.png in its workdir. Rows: method (argmax, independent, joint with its order;
oracle and oracle_marginals, the references), visible, accuracy, consistent_fraction, mmd (to
posterior samples) and diversity, each with its standard error over examples."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis.samples import figure
from rectbert.analysis.samples.scores import SamplesConfig
from rectbert.recipes import common
from rectbert.training import evaluation

NAME = "sample"
SETTINGS = (common.FinishedRun, SamplesConfig)
DEFAULTS: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: object  # analysis.trained.Run
    task: object
    samples: SamplesConfig


def build(v: dict) -> Plan:
    finished, samples = config.build(common.FinishedRun, v), config.build(SamplesConfig, v)
    run, task = finished.load(("sparse", "grid"), "the samples go in it")
    try:
        samples.counts(task)
    except config.ConfigError as e:
        if e.field != "sampler":
            raise
        raise config.error(
            finished, "workdir", f"a run with uniform points ({e.allowed})"
        ) from None
    return Plan(run, task, samples)


def main(plan: Plan, files: dict | None = None) -> None:
    del files  # it records nothing but its results
    task = plan.task
    if task.mask.schedule != "anycount" and task.name == "sparse":
        print(
            f"note: this run trained with --mask_schedule={task.mask.schedule} (count "
            f"{task.mask.count}); completions from other counts measure how it transfers",
            flush=True,
        )
    predict = evaluation.make_predict(plan.run.model_config)
    figure.run(task, predict, plan.run.params, plan.run.step, plan.run.workdir, plan.samples)
