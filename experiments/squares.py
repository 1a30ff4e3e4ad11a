"""Inpaint n x n binary images of one square, every pixel a token (the write-up's part 1-2).

python -m experiments.squares --flagfile=experiments/flags/squares_20pct_quick.flags
"""

from __future__ import annotations

from absl import flags

from experiments import common
from rectbert.analysis import report
from rectbert.data.squares import SquaresTask

DEFAULTS = dict(presentations=40, num_epochs=300)  # the write-up's regime


def define_flags(fv) -> None:
    flags.DEFINE_integer("image_size", 8, "Image side n (tokens per image: n * n).", flag_values=fv)
    flags.DEFINE_integer("min_square", 2, "Smallest square side.", flag_values=fv)
    flags.DEFINE_integer("max_square", 5, "Largest square side.", flag_values=fv)
    common.define_train_flags(fv, "squares", **DEFAULTS)


RENAMES = {"n": "image_size", "min_side": "min_square", "max_side": "max_square"}


def build(fv):
    """(task, model config, training config) from the flags: validation only."""
    task = common.task(SquaresTask, fv, renames=RENAMES)
    return (task, *common.configs(fv, task, num_examples=task.num_examples))


def main(fv) -> None:
    task, model_cfg, train_cfg = build(fv)
    with common.start(fv, task, model_cfg, train_cfg) as task:
        title = f"squares: {task.num_examples} images, {task.mask.count} of {task.seq_len} masked"
        sides = f"sides {task.min_side}-{task.max_side} on {task.n}x{task.n}"
        print(f"{task.num_examples} squares ({sides})")

        def on_eval(state, batch, preds, metrics, final):
            if final:
                report.squares_figures(fv.workdir, task, batch, preds, title)

        common.train_run(fv, task, model_cfg, train_cfg, on_eval=on_eval)


if __name__ == "__main__":
    common.run(define_flags, main)
