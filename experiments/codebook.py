"""Fit the patch codebook and draw the write-up's first two figures.

python -m experiments.codebook [--num_clusters=20 --codebook_rects=100 --workdir=runs/codebook]
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import flags

from experiments import common
from rectbert import codebook, plots, shapes

flags.DEFINE_string("workdir", "runs/codebook", "Where codebook.npy and figures/ are written.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("eval_rects", 1000, "Held-out rectangles for the reconstruction error.")
common.define_rect_flags()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    prior = common.rect_prior()
    common.check_codebook()
    if FLAGS.eval_rects < 1:
        common.fail("eval_rects", FLAGS.eval_rects, "an integer >= 1")
    key_fit, key_km, key_eval = jax.random.split(jax.random.key(FLAGS.seed), 3)
    t0 = time.time()
    rects = shapes.sample_rects(key_fit, FLAGS.codebook_rects, **prior)
    centroids, inertia = codebook.fit_codebook(key_km, rects, FLAGS.num_clusters)
    fit_s = time.time() - t0
    # held-out rectangles: how well does the codebook alone reconstruct an image?
    held = shapes.downsample(shapes.sample_rects(key_eval, FLAGS.eval_rects, **prior))
    tokens = codebook.quantise(codebook.extract_patches(held), centroids)
    recon = codebook.stitch(codebook.decode(tokens, centroids))
    counts = np.bincount(np.asarray(tokens).ravel(), minlength=FLAGS.num_clusters)
    summary = {
        "step": 0,
        "codebook/inertia": float(inertia),
        "codebook/fit_seconds": fit_s,
        "eval/codebook_pixel_mse": float(np.mean((np.asarray(recon) - np.asarray(held)) ** 2)),
        "eval/unused_tokens": int(np.sum(counts == 0)),
    }
    os.makedirs(FLAGS.workdir, exist_ok=True)
    np.save(os.path.join(FLAGS.workdir, "codebook.npy"), np.asarray(centroids, np.float32))
    with open(os.path.join(FLAGS.workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps(summary) + "\n")
    figures = os.path.join(FLAGS.workdir, "figures")
    plots.downsampled_rectangle(rects[0], os.path.join(figures, "DownsampledRectangle.png"))
    plots.codebook_tiles(
        centroids, os.path.join(figures, "RectangleClusterCenters.png"), counts_K=counts
    )
    print(json.dumps(summary))
    print(f"wrote {FLAGS.workdir}/codebook.npy and {figures}/")


if __name__ == "__main__":
    common.run(main)
