"""What a finished evaluation draws and measures: each experiment's figures, the sparse
model's dense rendering and occlusion, and its comparison with the Bayes-optimal oracle.

Every function writes under workdir/figures (and metrics.jsonl) and draws nothing at random
except from keys of the task's seed.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.analysis import calls, oracle, oracle_curve, render
from rectbert.analysis.samples import settings as samples_settings
from rectbert.config import setting
from rectbert.data import keys, points
from rectbert.model import losses
from rectbert.training import metrics
from rectbert.viz import curves, panels

OCCLUDED = (96.0, 96.0, 160.0, 160.0)  # the occlusion figure hides this square


def _figure(workdir: str, name: str) -> str:
    return os.path.join(workdir, "figures", name)


def squares_figures(workdir: str, task, batch, preds, title: str) -> None:
    """Training curves (named as the write-up's) and one example per square size."""
    seq_len = task.seq_len
    name = (
        "SinglePixelSquareMaskingTrainingLoss"
        if task.mask.count == 1
        else f"{round(100 * task.mask.count / seq_len)}PercentSquareMasking"
    )
    curves.training_curves(metrics.read(workdir), _figure(workdir, f"{name}.png"), title=title)
    pick = jnp.linspace(0, min(task.num_examples, len(batch.tokens)) - 1, 6).astype(int)
    panels.square_panels(
        batch.tokens[pick],
        batch.mask[pick],
        preds[pick],
        _figure(workdir, "square_panels.png"),
        n=task.n,
    )


def shape_figure(scene, params_D, path: str) -> str:
    """One shape at full resolution beside its area-downsampled image."""
    full = np.asarray(scene.rasterise(params_D[None]))[0]
    small = np.asarray(scene.downsample(params_D[None]))[0]
    return panels.downsampled_shape(full, small, scene.outlines(params_D), path)


def grid_figures(workdir: str, task, batch, preds, title: str) -> None:
    """Training curves, stitched inpaintings, the codebook and a downsampled shape."""
    curves.training_curves(
        metrics.read(workdir), _figure(workdir, "training_curves.png"), title=title
    )
    panels.grid_panels(
        task.scene.downsample(batch.scenes[:4]),
        batch.tokens[:4],
        batch.mask[:4],
        preds[:4],
        task.codebook,
        _figure(workdir, "RectangleGridInpainting.png"),
    )
    panels.codebook_tiles(task.codebook, _figure(workdir, "RectangleClusterCenters.png"))
    shape_figure(task.scene, batch.scenes[0], _figure(workdir, "DownsampledRectangle.png"))


def _rendered(task, predict, params, vis_points, vis_tokens, lattice):
    """The image the model paints from the visible points alone, queried at every lattice
    point in chunks of the training mask count (what a full-attention model was trained on)."""
    pred = render.query(predict, params, vis_points, vis_tokens, lattice, chunk=task.mask.count)
    return render.render(lattice, np.asarray(task.codebook)[np.asarray(pred)])


def sparse_figures(workdir, task, predict, params, batch, preds, title, dense_spacing) -> None:
    """Curves with the gap and baselines, held-out tokens, confusion matrix, and the model
    queried on a dense lattice: from an example's visible points, and with every visible point
    outside a hidden square (occlusion)."""
    outlines = [task.scene.outlines(p) for p in np.asarray(batch.scenes[:4])]
    curves.generalisation_curves(
        metrics.read(workdir), _figure(workdir, "RectangleContinuousTrainingLoss.png"), title=title
    )
    four = (batch.points[:4], batch.tokens[:4], batch.mask[:4], preds[:4], task.codebook)
    panels.sparse_results(outlines, *four, _figure(workdir, "RectangleTestResults.png"))
    hidden = batch.mask
    confusion = _figure(workdir, "confusion.png")
    curves.confusion(batch.tokens[hidden], preds[hidden], task.num_tokens, confusion)
    lattice = render.dense_lattice(dense_spacing)
    rows = [
        _dense_rows(task, predict, params, batch, preds, i, lattice, dense_spacing)
        for i in range(2)
    ]
    panels.dense_rendering(
        [dense for dense, _ in rows],
        _figure(workdir, "dense_rendering.png"),
        title="inpainting at any resolution: one query per lattice point",
    )
    panels.dense_rendering(
        [occluded for _, occluded in rows],
        _figure(workdir, "occlusion.png"),
        title="occlusion: the model fills a region it has no points in (truth left)",
    )
    unseen = task.unseen_eval_set()
    if unseen is not None:  # drawings never trained on: the model's rendering, the true edge
        shown = range(3)
        held = task.scene.unseen()
        panels.dense_rendering(
            [
                _unseen_row(task, held, predict, params, unseen, i, lattice, dense_spacing)
                for i in shown
            ],
            _figure(workdir, "unseen_rendering.png"),
            title="drawings never trained on: the model's rendering, their true outline dashed",
            outlines=[held.outlines(p) for p in np.asarray(unseen.scenes[:3])],
        )


def _unseen_row(task, held, predict, params, batch, i: int, lattice, spacing: float):
    """Example i of the unseen set rendered from its visible points (a panels row)."""
    shape = batch.scenes[i : i + 1]
    truth = np.asarray(held.rasterise(shape))[0]
    vis = ~batch.mask[i]
    img = _rendered(task, predict, params, batch.points[i][vis], batch.tokens[i][vis], lattice)
    name = held.name_of(np.asarray(shape)[0]) if hasattr(held, "name_of") else "a shape"
    # the figures' font draws Latin only: a kanji is named by its code point
    name = "".join(c if c.isascii() else f"U+{ord(c):04X}" for c in name)
    return (
        truth,
        np.asarray(batch.points[i][vis]),
        img,
        f"unseen {name}: every {spacing:g} px",
        None,
    )


def _dense_rows(task, predict, params, batch, preds, i: int, lattice, spacing: float):
    """Example i rendered from its visible points, and from as many points of its shape drawn
    outside the OCCLUDED square (or, with --occlude, its own box and visible points): two rows
    of panels.dense_rendering."""
    shape = batch.scenes[i : i + 1]
    truth = np.asarray(task.scene.rasterise(shape))[0]
    vis = ~batch.mask[i]
    img = _rendered(task, predict, params, batch.points[i][vis], batch.tokens[i][vis], lattice)
    dense = (truth, np.asarray(batch.points[i][vis]), img, f"queried every {spacing:g} px", None)
    boxes = task.eval_boxes() if hasattr(task, "eval_boxes") else None
    if boxes is not None:  # the run's own task: its box, its visible points around it
        hidden = np.asarray(batch.mask[i])
        right = int(np.sum((np.asarray(preds[i]) == np.asarray(batch.tokens[i]))[hidden]))
        label = f"the dashed box hidden: {right} of {hidden.sum()} queries in it right"
        box = tuple(float(v) for v in np.asarray(boxes[i]))
        return dense, (truth, np.asarray(batch.points[i][vis]), img, label, box)
    key = jax.random.fold_in(keys.key(task.seed, "figures"), i)
    cand = points.uniform(key, task.scene, shape, 400)[0]
    outside = ~points.in_box(cand[None], jnp.asarray([OCCLUDED], jnp.float32))[0]
    pts = cand[outside][: task.num_points - task.mask.count]
    toks = task.tokens_of(task.scene.coverage(shape, pts[None])[0])
    img = _rendered(task, predict, params, pts, toks, lattice)
    label = "no visible point inside the dashed square"
    return dense, (truth, np.asarray(pts), img, label, OCCLUDED)


def oracle_comparison(workdir: str, task, batch, preds, model_accuracy: float, step: int) -> dict:
    """The oracle on the model's held-out examples: its accuracy, the paired model - oracle
    difference on the same hidden tokens, and the posterior figure; appended to the metrics."""
    k_eval, k_samples = jax.random.split(keys.key(task.seed, "oracle"))
    m, oracle_pred, _ = oracle.evaluate(k_eval, batch, task.codebook, task.scene, say=calls.SAY)
    mask, tokens = np.asarray(batch.mask), np.asarray(batch.tokens)
    diff, stderr = losses.paired_difference(
        (np.asarray(preds) == tokens)[mask], (oracle_pred == tokens)[mask]
    )
    m["eval/model_over_oracle"] = model_accuracy / m["eval/oracle_accuracy"]
    m["eval/model_minus_oracle"], m["eval/model_minus_oracle_stderr"] = diff, stderr
    metrics.put(workdir, step, m)  # a re-run replaces the row
    pick = slice(0, 4)
    samples, live = oracle.posterior_samples(
        k_samples,
        batch.points[pick],
        batch.tokens[pick],
        ~batch.mask[pick],
        task.codebook,
        task.scene,
        say=calls.SAY,
    )
    samples, live = np.asarray(samples), np.asarray(live)
    panels.oracle_posterior(
        [task.scene.outlines(p) for p in np.asarray(batch.scenes[pick])],
        [[task.scene.outlines(s) for s in samples[i][live[i]][:60]] for i in range(len(samples))],
        batch.points[pick],
        batch.tokens[pick],
        batch.mask[pick],
        preds[pick],
        oracle_pred[pick],
        _figure(workdir, "oracle_posterior.png"),
    )
    return m


@dataclasses.dataclass(frozen=True)
class GridReport:
    """What a grid run's final evaluation adds beside its figures."""

    samples: bool = samples_settings.samples_setting()


@dataclasses.dataclass(frozen=True)
class SparseReport:
    """What a sparse run's final evaluation adds beside its figures (also on a finished run:
    the same command re-evaluates it)."""

    dense_spacing: float = setting(8.0, "Lattice spacing (px) of the dense-rendering figure.")
    eval_oracle: bool = setting(
        False,
        "At the final evaluation (also of a finished workdir) score the Bayes-optimal oracle "
        "on the same held-out examples.",
    )
    oracle_curve: bool = setting(
        False,
        "At the final evaluation (also of a finished workdir) score model and oracle at every "
        "visible count of --curve_visible: oracle_curve.json, figures/oracle_curve.png "
        "(--curve_on=unseen: of the drawings never trained on, oracle_curve_unseen.json, ...).",
    )
    samples: bool = samples_settings.samples_setting()

    def __post_init__(self):
        # finer than a pixel renders nothing new (and 0.001 px would be 37 billion queries)
        ok = 1 <= self.dense_spacing <= 192
        config.validate(self, [(ok, "dense_spacing", "a spacing in [1, 192] canvas pixels")])

    def check(self, task) -> None:
        """What the oracle needs of the task, for the analyses asked for (ConfigError)."""
        why = oracle.unsupported(task)
        for name in ("eval_oracle", "oracle_curve"):
            if getattr(self, name) and why:
                raise config.error(self, name, f"off for this run ({why})")
        for name in ("oracle_curve", "samples"):  # both show nested visible counts
            if getattr(self, name) and oracle_curve.unnested(task):
                raise config.error(self, name, f"off ({oracle_curve.unnested(task)})")
