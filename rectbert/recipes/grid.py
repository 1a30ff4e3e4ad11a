"""The grid experiment: shapes on the 16x16 grid of 169 overlapping 4x4 patch tokens, each a
k-means codebook index (the write-up's part 2), 20 % of them hidden."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import report
from rectbert.analysis.samples import figure as samples_figure
from rectbert.analysis.samples.settings import ScoreConfig
from rectbert.data.scene_tasks import GridTask
from rectbert.recipes import common
from rectbert.training import evaluation, train
from rectbert.training.engine import RunConfig

NAME = "grid"
SCENES = True  # --scene and its family's options
SETTINGS = (*common.TRAINING, GridTask, report.GridReport, ScoreConfig)
DEFAULTS = {**common.TRAINING_DEFAULTS, "workdir": "runs/grid", "num_train_rects": 100}
FIXED: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: RunConfig
    workdir: str
    profile: tuple[int, int] | None
    report: report.GridReport
    samples: ScoreConfig


def build(v: dict) -> Plan:
    output = config.build(common.OutputSettings, v)
    run = common.run_config(GridTask, v, scene=common.scene(v))
    samples, rep = config.build(ScoreConfig, v), config.build(report.GridReport, v)
    if rep.samples or samples != ScoreConfig():  # checked when used, and when given
        samples.counts(run.task)
    return Plan(run, output.workdir, output.window(run.train.num_steps), rep, samples)


def title(task) -> str:
    n = task.num_train
    regime = f"{n} fixed shapes" if n else "fresh shapes every step"
    return f"grid: {task.scene.name}, {regime}, {task.mask.count} of 169 tokens masked"


def main(plan: Plan, files: dict | None = None) -> None:
    def on_eval(ev: train.Evaluation) -> None:
        if not ev.final:
            return
        report.grid_figures(plan.workdir, ev.task, ev.batch, ev.preds, title(ev.task))
        if plan.report.samples:
            predict = evaluation.make_predict(plan.run.model)
            samples_figure.run(ev.task, predict, ev.params, ev.step, plan.workdir, plan.samples)

    train.train(plan.run, plan.workdir, files=files, on_eval=on_eval, profile_steps=plan.profile)
