"""Inpaint n x n binary images of one square, every pixel a token (the write-up's part 1-2).

python -m experiments.squares --flagfile=experiments/flags/squares_20pct_quick.flags
"""

from __future__ import annotations

import os

import jax.numpy as jnp
from absl import flags

from experiments import common
from rectbert import plots, shapes, tasks, train

flags.DEFINE_integer("image_size", 8, "Image side n (pixels = tokens per image: n * n).")
flags.DEFINE_integer("min_square", 2, "Smallest square side.")
flags.DEFINE_integer("max_square", 5, "Largest square side.")
common.define_train_flags("squares", presentations=40, num_epochs=300)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not 1 <= FLAGS.min_square <= FLAGS.max_square <= FLAGS.image_size:
        common.fail(
            "max_square",
            FLAGS.max_square,
            f"1 <= min_square ({FLAGS.min_square}) <= max_square <= image_size",
        )
    seq_len = FLAGS.image_size**2
    common.check_train_flags(seq_len)
    if FLAGS.loss == "soft" or FLAGS.aux_weight > 0:
        common.fail(
            "loss", FLAGS.loss, "ce or smooth: squares have no codebook (and no --aux_weight)"
        )
    if FLAGS.position == "learned" and FLAGS.image_size < 1:
        common.fail("image_size", FLAGS.image_size, "an integer >= 1")
    workdir = common.prepare_workdir()
    task = tasks.SquaresTask(
        mask=common.mask_spec(seq_len),
        n=FLAGS.image_size,
        min_side=FLAGS.min_square,
        max_side=FLAGS.max_square,
        presentations=FLAGS.presentations,
        eval_examples=FLAGS.eval_examples,
    )
    figures = os.path.join(workdir, "figures")
    title = f"squares: {task.num_examples} images, {task.mask.count} of {seq_len} masked"

    def on_eval(state, batch, preds, metrics, final):
        if final:
            rows = train.read_metrics(workdir)
            # named as the write-up's figures
            name = (
                "SinglePixelSquareMaskingTrainingLoss"
                if task.mask.count == 1
                else f"{round(100 * task.mask.count / seq_len)}PercentSquareMasking"
            )
            plots.training_curves(rows, os.path.join(figures, f"{name}.png"), title=title)
            # one example per square size, spread over the set
            pick = jnp.linspace(0, task.num_examples - 1, 6).astype(int)
            plots.square_panels(
                batch.tokens[pick],
                batch.mask[pick],
                preds[pick],
                os.path.join(figures, "square_panels.png"),
                n=task.n,
            )

    steps = common.num_steps(task.num_examples)
    print(
        f"{task.num_examples} squares (sides {FLAGS.min_square}-{FLAGS.max_square} on "
        f"{task.n}x{task.n}; {shapes.num_squares(task.n, task.min_side, task.max_side)})"
    )
    train.train(
        task,
        common.model_config(task),
        common.train_config(steps),
        workdir,
        run_info={"image_size": task.n},
        on_eval=on_eval,
    )


if __name__ == "__main__":
    common.run(main)
