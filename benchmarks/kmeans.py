"""k-means and coverage speed: ours vs scikit-learn's KMeans, in one run on one machine.

python -m benchmarks.kmeans [--points=1000000 --k=20 --repeats=3]
Prints the time and inertia ratios (ours / scikit-learn; < 1 is better for both).
"""

from __future__ import annotations

import functools
import time
import warnings

import jax
import numpy as np
from absl import flags

from benchmarks import usage
from rectbert import scenes
from rectbert.data import points
from rectbert.geometry import codebook, shapes

FLAGS = flags.FLAGS
RECT = scenes.scene("rect")


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_integer("points", 1_000_000, "Patch vectors to cluster.")
    flags.DEFINE_integer("k", 20, "Clusters.")
    flags.DEFINE_integer("repeats", 3, "Seeds per method; medians are reported.")
    flags.DEFINE_integer("n_init", 3, "Initialisations per fit, both methods (tames local minima).")


def timed(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def check(n_points: int, k: int, repeats: int, n_init: int) -> None:
    """A usage.Error naming the flag whose value is not allowed (before any compute)."""
    why = " (the [points, 16] patch vectors fit 2**31 float32 elements)"
    usage.integer("points", n_points, 1, 2**31 // 16, why)
    usage.integer("k", k, 1, min(n_points, 2**16), " (at most --points, and 2**16)")
    usage.integer("repeats", repeats, 1, 1000)
    usage.integer("n_init", n_init, 1, 1000)


def main(argv):
    del argv  # none (usage.run)
    check(FLAGS.points, FLAGS.k, FLAGS.repeats, FLAGS.n_init)
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_info

    n_rects = -(-FLAGS.points // 169)
    rects = RECT.sample(jax.random.key(0), n_rects)
    x = codebook.extract_patches(shapes.downsample(rects)).reshape(-1, 16)[: FLAGS.points]
    x = jax.block_until_ready(x)
    x_np = np.asarray(x)
    blas = ", ".join(f"{i['internal_api']}:{i.get('architecture')}" for i in threadpool_info())
    print(
        f"{len(x_np):,} patch vectors of {n_rects:,} rectangles, k={FLAGS.k}, "
        f"n_init={FLAGS.n_init}; sklearn {blas}"
    )

    def ours(seed, merge):
        key = jax.random.key(seed)
        return codebook.kmeans(key, x, FLAGS.k, n_init=FLAGS.n_init, merge_duplicates=merge)[1]

    def sklearn(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # too few distinct points for k: not here
            return KMeans(FLAGS.k, n_init=FLAGS.n_init, random_state=seed).fit(x_np).inertia_

    compile_s, _ = timed(functools.partial(ours, 99, True))
    timed(functools.partial(ours, 99, False))  # compile the unmerged size too
    rows = {"ours": [], "ours (no merging)": [], "scikit-learn": []}
    for seed in range(FLAGS.repeats):
        rows["ours"].append(timed(functools.partial(ours, seed, True)))
        rows["ours (no merging)"].append(timed(functools.partial(ours, seed, False)))
        rows["scikit-learn"].append(timed(functools.partial(sklearn, seed)))
    med = {
        m: (np.median([t for t, _ in r]), np.median([float(i) for _, i in r]))
        for m, r in rows.items()
    }
    for m, (t, i) in med.items():
        print(f"{m:>20}: {t:6.2f} s  inertia {i:,.1f}  (median of {FLAGS.repeats})")
    print(f"{'':>20}  first call with compilation: {compile_s:.2f} s")

    # coverage throughput: 1M points (1000 rectangles x 1000 points), compiled once
    r = RECT.sample(jax.random.key(2), 1000)
    pts = points.uniform(jax.random.key(1), RECT, r, 1000)
    cov = jax.jit(shapes.coverage)
    timed(lambda: cov(r, pts))
    cov_s = np.median([timed(lambda: cov(r, pts))[0] for _ in range(5)])
    print(f"coverage: {1 / cov_s:.1f} M points/s ({cov_s * 1e3:.1f} ms per 1M points)")
    (t_o, i_o), (t_s, i_s) = med["ours"], med["scikit-learn"]
    print(
        f"SUMMARY kmeans time ratio ours/sklearn {t_o / t_s:.2f}, inertia ratio {i_o / i_s:.4f}; "
        f"coverage {1 / cov_s:.1f} M points/s"
    )


if __name__ == "__main__":
    define_flags()
    usage.run(main)
