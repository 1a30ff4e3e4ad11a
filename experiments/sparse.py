"""Predict hidden tokens at continuous points of rectangles (the write-up's open problem).

python -m experiments.sparse                      # CPU-sized run that generalises
python -m experiments.sparse --flagfile=experiments/flags/sparse_memorise_quick.flags
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import flags

from experiments import common
from rectbert import codebook, inference, oracle, plots, shapes, tasks, train

flags.DEFINE_integer("num_points", 24, "Points per rectangle.")
flags.DEFINE_enum(
    "point_sampler",
    "uniform",
    list(shapes.POINT_SAMPLERS),
    "uniform; edges (on the rectangle's edges); nocorners (no corner in window).",
)
flags.DEFINE_integer("num_train_rects", 0, "Fixed training rectangles (write-up: 100); 0: fresh.")
flags.DEFINE_bool("fixed_points", False, "Fixed set: draw each rectangle's points only once.")
flags.DEFINE_float("dense_spacing", 8.0, "Lattice spacing (px) of the dense-rendering figure.")
flags.DEFINE_bool(
    "eval_oracle",
    False,
    "At the final evaluation (also of a finished workdir) score the Bayes-optimal "
    "oracle on the same held-out examples.",
)
common.define_rect_flags()
common.define_train_flags(
    "sparse",
    position="sincos",
    attention="context",
    embed_dim=64,
    mlp_dim=128,
    num_layers=3,
    num_steps=6000,
)
FLAGS = flags.FLAGS
OCCLUDED = (96.0, 96.0, 160.0, 160.0)  # the occlusion demo hides this square


def draw_figures(task, run_predict, params, batch, preds, workdir, title):
    figures = os.path.join(workdir, "figures")
    k_eval = train.eval_key(FLAGS.seed)
    rects = task.eval_rects(k_eval)
    plots.generalisation_curves(
        train.read_metrics(workdir),
        os.path.join(figures, "RectangleContinuousTrainingLoss.png"),
        title=title,
    )
    plots.sparse_results(
        rects[:4],
        batch.points[:4],
        batch.tokens[:4],
        batch.mask[:4],
        preds[:4],
        task.centroids,
        os.path.join(figures, "RectangleTestResults.png"),
    )
    plots.confusion(
        batch.tokens[batch.mask],
        preds[batch.mask],
        task.num_tokens,
        os.path.join(figures, "confusion.png"),
    )
    lattice = inference.dense_lattice(FLAGS.dense_spacing)
    c = np.asarray(task.centroids)

    def rendered(visible_points, visible_tokens, rect):
        pred = inference.query(
            run_predict, params, visible_points, visible_tokens, lattice, chunk=task.mask.count
        )
        truth = np.asarray(shapes.rasterise(rect[None]))[0]
        return truth, np.asarray(visible_points), inference.render(lattice, c[np.asarray(pred)])

    dense, occluded = [], []
    key = jax.random.fold_in(k_eval, 9)
    for i in range(2):
        vis = ~batch.mask[i]
        truth, pts, img = rendered(batch.points[i][vis], batch.tokens[i][vis], rects[i])
        dense.append((truth, pts, img, f"queried every {FLAGS.dense_spacing:g} px", None))
        # occlusion: visible points only outside the hidden square
        cand = shapes.sample_points_uniform(jax.random.fold_in(key, i), 1, 400)[0]
        x0, y0, x1, y1 = OCCLUDED
        outside = ~((cand[:, 0] >= x0) & (cand[:, 0] < x1) & (cand[:, 1] >= y0) & (cand[:, 1] < y1))
        pts = cand[outside][: task.num_points - task.mask.count]
        toks = codebook.quantise(shapes.coverage(rects[i : i + 1], pts[None])[0], task.centroids)
        truth, pts, img = rendered(pts, toks, rects[i])
        occluded.append((truth, pts, img, "no visible point inside the dashed square", OCCLUDED))
    plots.dense_rendering(
        dense,
        os.path.join(figures, "dense_rendering.png"),
        title="inpainting at any resolution: one query per lattice point",
    )
    plots.dense_rendering(
        occluded,
        os.path.join(figures, "occlusion.png"),
        title="occlusion: the model fills a region it has no points in",
    )


def score_oracle(task, batch, preds, metrics, step, workdir):
    """The oracle on the model's held-out examples: its accuracy, the paired difference."""
    m, oracle_pred, _ = oracle.evaluate(
        jax.random.fold_in(train.eval_key(FLAGS.seed), 11), batch, task.centroids, task.prior
    )
    mask = np.asarray(batch.mask)
    diff = (
        (np.asarray(preds) == np.asarray(batch.tokens)).astype(float)
        - (oracle_pred == np.asarray(batch.tokens))
    )[mask]
    m["eval/model_over_oracle"] = metrics["eval/masked_accuracy"] / m["eval/oracle_accuracy"]
    m["eval/model_minus_oracle"] = float(diff.mean())
    m["eval/model_minus_oracle_stderr"] = float(diff.std() / np.sqrt(diff.size))
    train.append_metrics(workdir, step, m)
    pick = slice(0, 4)
    samples, live = oracle.posterior_samples(
        jax.random.key(FLAGS.seed),
        batch.points[pick],
        batch.tokens[pick],
        ~batch.mask[pick],
        task.centroids,
        task.prior,
    )
    plots.oracle_posterior(
        task.eval_rects(train.eval_key(FLAGS.seed))[pick],
        samples,
        live,
        batch.points[pick],
        batch.tokens[pick],
        batch.mask[pick],
        preds[pick],
        oracle_pred[pick],
        os.path.join(workdir, "figures", "oracle_posterior.png"),
    )
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()), flush=True)
    if m["eval/model_minus_oracle"] > 2 * m["eval/model_minus_oracle_stderr"]:
        print(
            "WARNING: the model beats the oracle beyond its uncertainty: the oracle is wrong "
            "for this configuration",
            flush=True,
        )


def main(argv):
    del argv
    prior = common.rect_prior()
    common.check_codebook()
    if FLAGS.num_points < 2:
        common.fail("num_points", FLAGS.num_points, "an integer >= 2")
    common.check_train_flags(FLAGS.num_points)
    if FLAGS.position == "learned":
        common.fail("position", "learned", "a continuous embedding: sincos, fourier, nerf, mlp")
    if FLAGS.num_train_rects < 0:
        common.fail("num_train_rects", FLAGS.num_train_rects, "an integer >= 0 (0: fresh)")
    if FLAGS.num_train_rects == 0 and FLAGS.num_steps == -1:
        common.fail("num_steps", -1, "an explicit step count with fresh rectangles")
    if FLAGS.eval_oracle and FLAGS.point_sampler != "uniform":
        common.fail(
            "eval_oracle", True, "the oracle models uniform points: --point_sampler=uniform"
        )
    if FLAGS.dense_spacing <= 0:
        common.fail("dense_spacing", FLAGS.dense_spacing, "a spacing > 0 pixels")
    workdir = common.prepare_workdir()
    centroids, train_rects = common.codebook_and_train_rects(workdir, prior, FLAGS.num_train_rects)
    n = FLAGS.num_train_rects
    task = tasks.SparseTask(
        mask=common.mask_spec(FLAGS.num_points),
        centroids=centroids,
        prior=prior,
        num_points=FLAGS.num_points,
        sampler=FLAGS.point_sampler,
        train_rects=train_rects,
        fixed_points=FLAGS.fixed_points,
        presentations=FLAGS.presentations,
        eval_examples=FLAGS.eval_examples,
    )
    regime = (
        f"{n} fixed rectangles" + (", fixed points" if FLAGS.fixed_points else "")
        if n
        else "fresh rectangles every step"
    )
    title = (
        f"sparse: {regime}, {FLAGS.point_sampler} points, {FLAGS.position} positions, "
        f"{FLAGS.attention} attention"
    )
    model_cfg = common.model_config(task)
    run_predict = train.make_predict(model_cfg)

    def on_eval(state, batch, preds, metrics, final):
        if final:
            draw_figures(task, run_predict, state.params, batch, preds, workdir, title)
            if FLAGS.eval_oracle:
                score_oracle(task, batch, preds, metrics, int(state.step), workdir)

    train.train(
        task,
        model_cfg,
        common.train_config(common.num_steps(n)),
        workdir,
        run_info={"codebook": "codebook.npy", "regime": regime},
        on_eval=on_eval,
    )


if __name__ == "__main__":
    common.run(main)
