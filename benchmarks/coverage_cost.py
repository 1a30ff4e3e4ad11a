"""Coverage's cost with each row's segment count given (boundary_coverage(counts_N=...)) vs
without (every row padded to the set's largest drawing), in one run on one machine.

python -m benchmarks.coverage_cost [--shapes=64 --points=24 --largest=2000 --median=250
    --smallest=40 --repeats=7 --chunk=0 --items=0]

A synthetic set: star-shaped polygons with skewed segment counts (log-normal about --median,
in [--smallest, --largest]), all padded to --largest as a drawn scene's set is; --shapes of
them at --points window centres each, the default window (shapes.CELL, shapes.GRID). Each
path compiled once (jit, not timed), then timed --repeats times, the two paths in turn: the
median time a call, the ratio padded / counts (> 1: counts is faster), the largest
difference between the two, and XLA's temporary memory for each program. The same again with
every shape at --largest (no padding anywhere: what the counts path costs at worst).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import usage
from rectbert.geometry import polygons, shapes
from rectbert.scenes.exact import boundary_coverage

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_integer("shapes", 64, "Shapes (rows) a call.")
    flags.DEFINE_integer("points", 24, "Window centres a shape.")
    flags.DEFINE_integer("largest", 2000, "The set's largest segment count (the padding).")
    flags.DEFINE_integer("median", 250, "The median segment count of the skewed set.")
    flags.DEFINE_integer("smallest", 40, "The smallest segment count.")
    flags.DEFINE_integer("repeats", 7, "Timed calls of each path; medians are reported.")
    flags.DEFINE_integer("chunk", 0, f"Segments an item (0: polygons.CHUNK, {polygons.CHUNK}).")
    flags.DEFINE_integer("items", 0, "Items a loop step (0: polygons.ITEM_WORK's worth).")


def check(n: int, p: int, largest: int, median: int, smallest: int, repeats: int, chunk, items):
    """A usage.Error naming the first flag whose value is not allowed (before any compute)."""
    usage.integer("shapes", n, 1, 4096)
    usage.integer("points", p, 1, 1024)
    usage.integer("largest", largest, 3, 100_000)
    usage.integer("smallest", smallest, 3, largest)
    usage.integer("median", median, smallest, largest, " (between --smallest and --largest)")
    usage.integer("repeats", repeats, 1, 1000)
    usage.integer("chunk", chunk, 0, 100_000)
    usage.integer("items", items, 0, 1_000_000)


def skewed_counts(rng, n: int, largest: int, median: int, smallest: int) -> np.ndarray:
    """[n] segment counts, log-normal about median (a factor e^0.9 either side), clipped."""
    counts = np.round(np.exp(rng.normal(np.log(median), 0.9, n)))
    return np.clip(counts, smallest, largest).astype(np.int32)


def synthetic(rng, counts, s: int, p: int):
    """(a, b, weight, points): a star-shaped polygon of counts[i] vertices for each row, its
    edges first, then zero-weight padding to s; p window centres about each polygon."""
    n = len(counts)
    a = np.zeros((n, s, 2), np.float32)
    b, w = np.zeros_like(a), np.zeros((n, s), np.float32)
    pts = np.zeros((n, p, 2), np.float32)
    for i, k in enumerate(counts):
        centre, radius = rng.uniform(80, 176, 2), rng.uniform(30, 70)
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = radius * rng.uniform(0.4, 1.0, k)
        v = np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], -1)
        a[i, :k], b[i, :k], w[i, :k] = v, np.roll(v, -1, 0), 1.0
        a[i, k:] = b[i, k:] = v[0]
        pts[i] = centre + rng.uniform(-radius - 32, radius + 32, (p, 2))
    return a, b, w, pts


def programs(chunk: int, items: int):
    """(padded, counted): the two paths, each one compiled program; counted is
    boundary_coverage(counts_N=...) itself at the default chunk and step."""
    cell, grid = shapes.CELL, shapes.GRID
    padded = jax.jit(lambda a, b, w, pts, counts: boundary_coverage(a, b, w, pts, cell, grid))
    if not (chunk or items):
        counted = jax.jit(
            lambda a, b, w, pts, counts: boundary_coverage(
                a, b, w, pts, cell, grid, counts_N=counts
            )
        )
        return padded, counted
    counted_area = functools.partial(
        polygons.window_area_counted, chunk=chunk or polygons.CHUNK, items=items
    )

    @jax.jit
    def counted(a, b, w, pts, counts):  # boundary_coverage(counts_N=...) at these settings
        corner = jnp.asarray(pts) - grid * cell / 2
        area = counted_area(a, b, w, counts, corner, cell, grid) / cell**2
        return jnp.clip(area, 0.0, 1.0)

    return padded, counted


def measure(case, padded, counted, repeats: int) -> dict:
    """Both paths on one case: median seconds a call, the largest difference, temp bytes."""
    out = {}
    for name, fn in (("padded", padded), ("counts", counted)):
        out[name + "_temp"] = fn.lower(*case).compile().memory_analysis().temp_size_in_bytes
        out[name + "_result"] = np.asarray(jax.block_until_ready(fn(*case)))  # compiled
        out[name] = []
    for _ in range(repeats):  # in turn: a slower spell of the machine slows both
        for name, fn in (("padded", padded), ("counts", counted)):
            t = time.perf_counter()
            jax.block_until_ready(fn(*case))
            out[name].append(time.perf_counter() - t)
    out["diff"] = float(np.abs(out.pop("padded_result") - out.pop("counts_result")).max())
    for name in ("padded", "counts"):
        out[name] = float(np.median(out[name]))
    return out


def main(argv) -> None:
    del argv  # none (usage.run)
    n, p, largest = FLAGS.shapes, FLAGS.points, FLAGS.largest
    check(n, p, largest, FLAGS.median, FLAGS.smallest, FLAGS.repeats, FLAGS.chunk, FLAGS.items)
    rng = np.random.default_rng(0)
    skewed = skewed_counts(rng, n, largest, FLAGS.median, FLAGS.smallest)
    cases = {"skewed": skewed, "all at largest": np.full(n, largest, np.int32)}
    padded, counted = programs(FLAGS.chunk, FLAGS.items)
    print(
        f"coverage of {n} shapes x {p} points, {shapes.GRID}x{shapes.GRID} cells of "
        f"{shapes.CELL} px, padded to {largest} segments; {jax.devices()[0].device_kind}, "
        f"median of {FLAGS.repeats} calls after compiling"
    )
    ratios = {}
    for name, counts in cases.items():
        case = (*synthetic(rng, counts, largest, p), counts)
        r = measure(case, padded, counted, FLAGS.repeats)
        ratios[name] = r["padded"] / r["counts"]
        print(
            f"  {name}: counts median {np.median(counts):.0f}, mean {counts.mean():.0f}, "
            f"max {counts.max()} (work {counts.sum() / (n * largest):.2f} of padded): "
            f"padded {r['padded'] * 1e3:.1f} ms, counts {r['counts'] * 1e3:.1f} ms, "
            f"ratio {ratios[name]:.2f}x; max |diff| {r['diff']:.1e}; XLA temp memory "
            f"{r['padded_temp'] / 2**20:.1f} vs {r['counts_temp'] / 2**20:.1f} MiB",
            flush=True,
        )
    print(
        f"SUMMARY padded / counts: {ratios['skewed']:.2f}x on the skewed set, "
        f"{ratios['all at largest']:.2f}x with every shape at {largest} segments"
    )


if __name__ == "__main__":
    define_flags()
    usage.run(main)
