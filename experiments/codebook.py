"""Fit the patch codebook and draw the write-up's first two figures.

python -m experiments.codebook [--num_clusters=20 --codebook_rects=100 --workdir=runs/codebook]
The codebook is the one a grid or sparse run with the same scene, flags and seed fits.
"""

from __future__ import annotations

import io
import json
import os
import time

import jax
import numpy as np
from absl import flags

from experiments import common
from rectbert.analysis import report
from rectbert.data import tasks
from rectbert.data.scene_tasks import GridTask, patches
from rectbert.geometry import codebook
from rectbert.training import metrics, workdir
from rectbert.viz import panels


def define_flags(fv) -> None:
    flags.DEFINE_string(
        "workdir", "runs/codebook", "Where codebook.npy, figures/ go.", flag_values=fv
    )
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=fv)
    flags.DEFINE_integer(
        "eval_rects", 1000, "Held-out shapes for the reconstruction error.", flag_values=fv
    )
    common.define_scene_flags(fv)
    common.define_codebook_flags(fv)


def build(fv) -> GridTask:
    renames = {**common.TASK_FLAGS, "eval_examples": "eval_rects"}
    return common.from_flags(
        GridTask, fv, renames, scene=common.scene(fv), mask=tasks.MaskSpec(1), num_train=0
    )


def main(fv) -> None:
    task = build(fv)
    main = jax.process_index() == 0
    record = {"experiment": "codebook", "task": task.record()}
    with common.claim(fv, record):  # a workdir in use, or holding another run, is refused
        _fit(fv, task, main)


def _fit(fv, task: GridTask, main: bool) -> None:
    t0 = time.time()
    centroids, inertia = task.fit_codebook()
    task = task.with_codebook(centroids)
    fit_s = time.time() - t0
    # held-out shapes: how well does the codebook alone reconstruct an image?
    held = task.scene.downsample(task.eval_params)
    tokens = task.tokens_of(patches(task.scene, task.eval_params))
    recon = codebook.stitch(codebook.decode(tokens, task.codebook))
    counts = np.bincount(np.asarray(tokens).ravel(), minlength=task.num_clusters)
    summary = {
        "step": 0,
        "codebook/inertia": float(inertia),
        "codebook/fit_seconds": fit_s,
        "eval/codebook_pixel_mse": float(np.mean((np.asarray(recon) - np.asarray(held)) ** 2)),
        "eval/unused_tokens": int(np.sum(counts == 0)),
    }
    if main:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(task.codebook, np.float32))
        workdir.write_atomic(os.path.join(fv.workdir, "codebook.npy"), buffer.getvalue())
        metrics.rewrite(fv.workdir, [summary])  # strict JSON, whole or not at all
    figures = os.path.join(fv.workdir, "figures")
    shape = task.eval_params[0]
    report.shape_figure(task.scene, shape, os.path.join(figures, "DownsampledRectangle.png"))
    path = os.path.join(figures, "RectangleClusterCenters.png")
    panels.codebook_tiles(task.codebook, path, counts_K=counts)
    print(json.dumps(summary))
    print(f"wrote {fv.workdir}/codebook.npy and {figures}/")


if __name__ == "__main__":
    common.run(define_flags, main)
