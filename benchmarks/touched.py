"""Coverage of the windows some segment touches only (polygons.on_touched) vs every window
(polygons.window_area), on a scene's prior shapes, in one run on one machine.

python -m benchmarks.touched [--scenes=junction,glyph,rotated] [--shapes=20000,96]
    [--points=24] [--repeats=5]

For each scene (its own exact coverage, whose boundary_coverage takes no counts) and each count
of --shapes: that many prior shapes at --points window centres, uniform on the canvas and
the same for every shape (as a rejection check's prior draws at one example's points), their
tokens under both paths, each program compiled once (not timed), then timed --repeats times,
the two in turn. Prints the median time a call, the ratio every / touched (> 1: touched is
faster), the share of touched pairs and of tokens equal. polygons.TOUCHED_PAIRS, the size
from which boundary_coverage takes the touched path, rests on these numbers.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import rectbert
from benchmarks import usage
from rectbert.geometry import codebook, polygons, shapes

FLAGS = flags.FLAGS
SCENES = ("junction", "glyph", "rotated")  # coverage by boundary segments, without counts
MOST_PAIRS = 10**6  # shapes x points a call (every window's path: GBs beyond)


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_list("scenes", list(SCENES), f"Scenes of {list(SCENES)}.")
    flags.DEFINE_list("shapes", ["20000", "96"], "Prior shapes a call, one or more counts.")
    flags.DEFINE_integer("points", 24, "Window centres, shared by every shape.")
    flags.DEFINE_integer("repeats", 5, "Timed calls of each path; medians are reported.")


def check(scenes, shapes_, points: int, repeats: int):
    """(scenes, shape counts) from the flags' values, or a usage.Error naming the flag."""
    names = usage.names("scenes", scenes, SCENES)
    counts = usage.integers("shapes", shapes_, 1, 10**6)
    usage.integer("points", points, 1, 10**4)
    usage.integer("repeats", repeats, 1, 1000)
    most = MOST_PAIRS // points  # every window's program holds pairs x segments x 20 floats
    usage.integers("shapes", [str(c) for c in counts], 1, max(1, most))
    return names, counts


def paths(scene, points_Px2, centroids):
    """The two programs: shapes [N, D] -> tokens [N, P] by the scene's own coverage, with
    boundary_coverage taking the touched path at any size / at none (polygons.TOUCHED_PAIRS
    as each program is traced)."""
    raw = type(scene).coverage.__wrapped__  # exact.compiled's function, not its jit

    def tokens(threshold: int):
        def fn(params):
            held, polygons.TOUCHED_PAIRS = polygons.TOUCHED_PAIRS, threshold
            try:
                pts = jnp.broadcast_to(points_Px2, (params.shape[0], *points_Px2.shape))
                return codebook.quantise(raw(scene, params, pts), centroids)
            finally:
                polygons.TOUCHED_PAIRS = held

        return jax.jit(fn)

    return tokens(0), tokens(2**62)


def share_touched(scene, params, points_Px2) -> float:
    a, b, w = scene.boundary(params)[:3]
    pts = jnp.broadcast_to(points_Px2, (params.shape[0], *points_Px2.shape))
    corner = pts - shapes.GRID * shapes.CELL / 2
    return float(jnp.mean(polygons.touched(a, b, w, corner, shapes.GRID * shapes.CELL)))


def measure(name: str, n: int, points: int, repeats: int) -> str:
    scene = rectbert.scene(name)
    params = scene.sample(jax.random.key(1), n)
    pts = jax.random.uniform(jax.random.key(2), (points, 2)) * scene.size
    centroids = jax.random.uniform(jax.random.key(3), (20, shapes.GRID**2))
    touched, every = paths(scene, pts, centroids)
    got = [np.asarray(f(params)) for f in (touched, every)]  # compiled here
    times = ([], [])
    for _ in range(repeats):
        for f, t in zip((touched, every), times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(f(params))
            t.append(time.perf_counter() - start)
    mine, theirs = (float(np.median(t)) for t in times)
    return (
        f"{name}: {n} shapes x {points} points: touched {mine * 1e3:.1f} ms, every "
        f"{theirs * 1e3:.1f} ms a call ({theirs / mine:.2f}x); touched pairs "
        f"{share_touched(scene, params, pts):.2f}; tokens equal {np.mean(got[0] == got[1]):.5f}"
    )


def main(argv) -> None:
    del argv  # none (usage.run)
    names, counts = check(FLAGS.scenes, FLAGS.shapes, FLAGS.points, FLAGS.repeats)
    for name in names:
        for n in counts:
            print(measure(name, n, FLAGS.points, FLAGS.repeats), flush=True)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
