"""The codebook alone: k-means of the patches of a scene's shapes, its reconstruction error on
held-out shapes, and the write-up's first two figures. The codebook is the one a grid or
sparse run with the same scene, codebook settings and seed fits."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np

from rectbert import config
from rectbert.analysis import report
from rectbert.config import setting
from rectbert.data.scene_tasks import GridTask, patches
from rectbert.data.tasks import MaskSpec
from rectbert.geometry import codebook
from rectbert.recipes import common
from rectbert.training import metrics, signals, workdir
from rectbert.viz import panels


@dataclasses.dataclass(frozen=True)
class Measure:
    """The codebook's own setting: how many held-out shapes measure it."""

    eval_rects: int = setting(1000, "Held-out shapes for the reconstruction error.")

    def __post_init__(self):
        config.validate(self, [(self.eval_rects >= 1, "eval_rects", "an integer >= 1")])


NAME = "codebook"
SCENES = True
SETTINGS = (common.OutputSettings, GridTask, Measure)
DEFAULTS = {"workdir": "runs/codebook"}
# it trains nothing; its held-out shapes are --eval_rects (the task's eval_examples)
FIXED = {"profile_steps": "", "num_train_rects": 0, "presentations": 1, "eval_examples": None}


@dataclasses.dataclass(frozen=True)
class Plan:
    task: GridTask
    workdir: str


def build(v: dict) -> Plan:
    measure = config.build(Measure, v)
    task = config.build(
        GridTask, v, scene=common.scene(v), mask=MaskSpec(1), eval_examples=measure.eval_rects
    )
    return Plan(task, config.build(common.OutputSettings, v).workdir)


def main(plan: Plan, files: dict | None = None) -> None:
    """Claims the workdir (a workdir in use, or holding another run, is refused), then fits."""
    record = {"experiment": "codebook", "task": plan.task.record()}
    main_process = jax.process_index() == 0
    declared = config.defaults(plan.task, "task.")
    with workdir.claim(plan.workdir, record, declared=declared, main=main_process, files=files):
        if jax.process_count() == 1:  # a stop seen mid-fit
            summary, task, counts = signals.responsive(fit, plan.task)
        else:  # every process fits alike: none stops alone
            summary, task, counts = fit(plan.task)
        if main_process:
            codebook.save(os.path.join(plan.workdir, "codebook.npy"), task.codebook)
            metrics.rewrite(plan.workdir, [summary])  # strict JSON, whole or not at all
        figures = os.path.join(plan.workdir, "figures")
        shape = task.eval_params[0]
        report.shape_figure(task.scene, shape, os.path.join(figures, "DownsampledRectangle.png"))
        path = os.path.join(figures, "RectangleClusterCenters.png")
        panels.codebook_tiles(task.codebook, path, counts_K=counts)
    print(json.dumps(summary))
    print(f"wrote {plan.workdir}/codebook.npy and {figures}/")


def fit(task: GridTask):
    """(metrics row, the task with its fitted codebook, each token's uses on held-out shapes):
    the fit's inertia and time, and how well the codebook alone reconstructs held-out images."""
    t0 = time.time()
    centroids, inertia = task.fit_codebook()
    task = task.with_codebook(centroids)
    fit_s = time.time() - t0
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
    return summary, task, counts
