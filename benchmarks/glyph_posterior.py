"""Which letter is it? From v visible points of one held-out glyph: the oracle's posterior over
the letter, the trained model's dense rendering and its joint completion, and a shape drawn
from the oracle's posterior.

python -m benchmarks.glyph_posterior [--workdir=runs/sparse_glyph_quick] [--visible=2,4,8]
    [--example=0] [--out=docs/figures/glyph_posterior.png]

The workdir is a finished glyph run (sparse_glyph_quick). Its held-out example `example`
(-1, the default: the one whose first points meet the letter most often) keeps its 24
points; the first v are visible. The oracle is the mixture over the set's letters (one
sampler program mapped over them); the rendering queries the model every 8 px (argmax tokens
painted with their centroids); the joint completion samples the model's tokens on a 48 px
lattice one at a time in random order, each seen by the next.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags
from absl import logging as absl_logging
from matplotlib.figure import Figure

import rectbert
from benchmarks import usage
from rectbert.analysis import oracle, render, trained
from rectbert.viz.base import outline, save

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_string("workdir", "runs/sparse_glyph_quick", "A finished glyph run.")
    flags.DEFINE_list("visible", ["2", "4", "8"], "Visible counts, a row of the figure each.")
    flags.DEFINE_integer("example", -1, "The held-out example; -1: the one most points hit.")
    flags.DEFINE_string("out", "docs/figures/glyph_posterior.png", "The figure.")


def check(workdir: str, visible, example: int, out: str):
    """(the run, the visible counts, the example: -1 for the one most points hit) from the
    flags' values, or a usage.Error naming the flag (before any compute)."""
    counts = usage.integers("visible", visible, 1)
    try:
        run = rectbert.load_run(workdir)
        task = run.task()
    except (ValueError, OSError) as e:
        raise usage.refuse("workdir", workdir, f"a finished glyph run ({e})") from None
    scene = run.scene
    if task.name != "sparse" or scene is None or scene.component_batch() is None:
        kind = f"{scene.name} {task.name}" if scene else task.name
        raise usage.refuse("workdir", workdir, f"a sparse glyph run (this is a {kind} run)")
    points, held = task.seq_len, task.eval_examples
    if max(counts) > points:
        raise usage.refuse("visible", visible, f"counts in [1, {points}] (the run's points)")
    said = f" (the run holds {held} held-out examples; -1: the one most points hit)"
    usage.integer("example", example, -1, held - 1, said)
    usage.output("out", out)  # last: it makes the folder
    return run, counts, example


def main(argv) -> None:
    del argv  # none (usage.run)
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every restore at INFO
    run, counts, e = check(FLAGS.workdir, FLAGS.visible, FLAGS.example, FLAGS.out)
    scene, batch = run.scene, run.task().eval_set()
    if e == -1:  # the held-out example whose first points most often meet the letter
        empty = int(np.bincount(np.asarray(batch.tokens).ravel()).argmax())
        e = int(np.argmax(np.sum(np.asarray(batch.tokens)[:, : max(counts)] != empty, 1)))
    points, tokens, shape = batch.points[e], batch.tokens[e], np.asarray(batch.scenes[e])
    letters = [n.split(":")[-1] for n in scene.library.names]
    fig = Figure(figsize=(15, 3.6 * len(counts)))
    axes = fig.subplots(len(counts), 4, squeeze=False)
    for row, v in enumerate(counts):
        _row(axes[row], run, points, tokens, shape, v, letters)
    fig.suptitle(f"{FLAGS.workdir}: held-out example {e}")
    print("wrote", save(fig, FLAGS.out))


def _row(axes, run, points, tokens, shape, v, letters) -> None:
    """One row of the figure: v visible points (true outline, oracle's letters, the model's
    dense rendering, its joint completion with an oracle draw)."""
    scene, centroids = run.scene, np.asarray(run.codebook)
    visible = np.arange(points.shape[0]) < v
    t = time.perf_counter()
    post = oracle.posterior(
        jax.random.key(v), points[None], tokens[None], visible[None], centroids, scene
    )
    took = time.perf_counter() - t
    comp = post.components[0]
    print(f"{v} visible: oracle {took:.1f} s, ESS {post.ess[0]:.0f}, top", flush=True)
    top = np.argsort(-comp)[:3]
    print("  " + ", ".join(f"{letters[i]} {comp[i]:.3f}" for i in top), flush=True)
    a_true, a_post, a_dense, a_joint = axes
    for ax in (a_true, a_dense, a_joint):
        ax.set(xlim=(0, 256), ylim=(256, 0), aspect="equal", xticks=[], yticks=[])
    vis = np.asarray(points)[visible]
    outline(a_true, scene.outlines(shape), color="C3", lw=1.2, ls="--")
    a_true.scatter(*vis.T, c="k", s=18, zorder=3)
    a_true.set_title(f"{v} visible of {scene.name_of(shape)}, outline dashed", fontsize=9)
    a_post.bar(range(len(letters)), comp, color="C0")
    a_post.bar([int(round(shape[0]))], [comp[int(round(shape[0]))]], color="C3")
    a_post.set_xticks(range(len(letters)), letters, fontsize=7)
    a_post.set_ylim(0, 1)
    a_post.set_title(f"oracle p(letter | {v} visible), true red, {took:.0f} s", fontsize=9)
    # the model's dense rendering: argmax tokens every 8 px, painted with their centroids
    grid = render.dense_lattice(8.0)
    predict = trained._predict_fn(run.model_config)
    q = render.query(predict, run.params, vis, np.asarray(tokens)[visible], grid, chunk=20)
    a_dense.imshow(
        render.render(grid, centroids[np.asarray(q)], cell=16),
        cmap="gray_r",
        vmin=0,
        vmax=1,
        extent=(0, 256, 256, 0),
    )
    a_dense.scatter(*vis.T, c="C1", s=18, zorder=3)
    a_dense.set_title("model: argmax every 8 px", fontsize=9)
    # the model's joint completion on a 48 px lattice, and an oracle posterior draw
    lattice = render.dense_lattice(48.0)
    pts = np.concatenate([vis, lattice])[None]
    toks = np.concatenate([np.asarray(tokens)[visible], np.zeros(len(lattice), int)])[None]
    seen = np.arange(pts.shape[1]) < v
    joint = np.asarray(run.sample(pts, toks, seen[None], jax.random.key(100 + v)))[0]
    a_joint.imshow(
        render.render(pts[0][v:], centroids[joint[v:]], cell=16),
        cmap="gray_r",
        vmin=0,
        vmax=1,
        extent=(0, 256, 256, 0),
        alpha=0.8,
    )
    draws = post.samples[0][post.live[0]]
    if len(draws):
        outline(a_joint, scene.outlines(draws[0]), color="C2", lw=1.2)
    a_joint.scatter(*vis.T, c="C1", s=18, zorder=3)
    a_joint.set_title("model: joint completion; green: oracle draw", fontsize=9)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
