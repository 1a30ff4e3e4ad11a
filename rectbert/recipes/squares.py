"""The squares experiment: n x n binary images of one square, every pixel a token (the
write-up's part 1-2: 1 or 20 % of the pixels hidden)."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import report
from rectbert.data.squares import SquaresTask
from rectbert.recipes import common
from rectbert.training import train
from rectbert.training.engine import RunConfig

NAME = "squares"
SCENES = False
SETTINGS = (*common.TRAINING, SquaresTask)
DEFAULTS = {**common.TRAINING_DEFAULTS, "workdir": "runs/squares", "num_epochs": 300}
FIXED: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: RunConfig
    workdir: str
    profile: tuple[int, int] | None


def build(v: dict) -> Plan:
    output = config.build(common.OutputSettings, v)
    run = common.run_config(SquaresTask, v)
    return Plan(run, output.workdir, output.window(run.train.num_steps))


def main(plan: Plan, files: dict | None = None) -> None:
    task = plan.run.task
    title = f"squares: {task.num_examples} images, {task.mask.count} of {task.seq_len} masked"
    print(
        f"{task.num_examples} squares (sides {task.min_side}-{task.max_side} on {task.n}x{task.n})"
    )

    def on_eval(ev: train.Evaluation) -> None:
        if ev.final:
            report.squares_figures(plan.workdir, ev.task, ev.batch, ev.preds, title)

    train.train(plan.run, plan.workdir, files=files, on_eval=on_eval, profile_steps=plan.profile)
