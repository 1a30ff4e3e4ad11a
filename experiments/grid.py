"""Inpaint rectangles on the 16x16 grid of 169 overlapping 4x4 patch tokens (k-means codebook).

python -m experiments.grid --flagfile=experiments/flags/grid_quick.flags
"""

from __future__ import annotations

import os

from absl import flags

from experiments import common
from rectbert import plots, shapes, tasks, train

flags.DEFINE_integer("num_train_rects", 100, "Fixed training rectangles; 0: fresh every step.")
common.define_rect_flags()
common.define_train_flags("grid")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    prior = common.rect_prior()
    common.check_codebook()
    common.check_train_flags(169)
    if FLAGS.num_train_rects < 0:
        common.fail("num_train_rects", FLAGS.num_train_rects, "an integer >= 0 (0: fresh)")
    if FLAGS.num_train_rects == 0 and FLAGS.num_steps == -1:
        common.fail("num_steps", -1, "an explicit step count with fresh rectangles")
    workdir = common.prepare_workdir()
    n_train = FLAGS.num_train_rects
    centroids, train_rects = common.codebook_and_train_rects(workdir, prior, n_train)
    task = tasks.GridTask(
        mask=common.mask_spec(169),
        centroids=centroids,
        prior=prior,
        train_rects=train_rects,
        presentations=FLAGS.presentations,
        eval_examples=FLAGS.eval_examples,
    )
    figures = os.path.join(workdir, "figures")
    regime = f"{n_train} fixed rectangles" if n_train else "fresh rectangles every step"
    title = f"grid: {regime}, {task.mask.count} of 169 tokens masked"

    def on_eval(state, batch, preds, metrics, final):
        if final:
            plots.training_curves(
                train.read_metrics(workdir),
                os.path.join(figures, "training_curves.png"),
                title=title,
            )
            images = shapes.downsample(task.eval_rects(train.eval_key(FLAGS.seed)))[:4]
            plots.grid_panels(
                images,
                batch.tokens[:4],
                batch.mask[:4],
                preds[:4],
                centroids,
                os.path.join(figures, "RectangleGridInpainting.png"),
            )
            plots.codebook_tiles(centroids, os.path.join(figures, "RectangleClusterCenters.png"))
            plots.downsampled_rectangle(
                task.eval_rects(train.eval_key(FLAGS.seed))[0],
                os.path.join(figures, "DownsampledRectangle.png"),
            )

    steps = common.num_steps(n_train)
    train.train(
        task,
        common.model_config(task),
        common.train_config(steps),
        workdir,
        run_info={"codebook": "codebook.npy"},
        on_eval=on_eval,
    )


if __name__ == "__main__":
    common.run(main)
