"""Flags shared by the experiments, and their one-line validation.

Only experiments/ reads flags; the library gets plain arguments (DESIGN.md).
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from rectbert import shapes

FLAGS = flags.FLAGS
# jax logs its search for TPU/GPU backends at INFO through absl; a CPU user needn't see it
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def define_rect_flags() -> None:
    """The rectangle prior and the patch codebook (grid, sparse and codebook experiments)."""
    flags.DEFINE_float("min_side", 32.0, "Smallest rectangle side, canvas pixels.")
    flags.DEFINE_float("max_side", 192.0, "Largest rectangle side, canvas pixels.")
    flags.DEFINE_list("aspect", [], "Height/width range 'lo,hi'; empty for any.")
    flags.DEFINE_bool("contains_center", False, "Rectangles all contain the canvas centre.")
    flags.DEFINE_integer("num_clusters", 20, "Codebook size K (k-means clusters).")
    flags.DEFINE_integer("codebook_rects", 100, "Rectangles whose patches fit the codebook.")


def fail(flag: str, value, allowed: str) -> None:
    """Exit non-zero with one line: the flag, the value given, what is allowed."""
    sys.exit(f"error: --{flag}={value} is not allowed: {allowed}")


def rect_prior() -> dict:
    """The validated rectangle-prior flags as sample_rects keyword arguments."""
    if not 0 < FLAGS.min_side <= shapes.CANVAS:
        fail("min_side", FLAGS.min_side, f"need 0 < min_side <= {shapes.CANVAS}")
    if not FLAGS.min_side <= FLAGS.max_side <= shapes.CANVAS:
        fail("max_side", FLAGS.max_side, f"need min_side <= max_side <= {shapes.CANVAS}")
    aspect = None
    if FLAGS.aspect:
        try:
            aspect = tuple(float(a) for a in FLAGS.aspect)
        except ValueError:
            aspect = ()
        if len(aspect) != 2 or not 0 < aspect[0] <= aspect[1]:
            fail("aspect", ",".join(FLAGS.aspect), "two numbers 'lo,hi' with 0 < lo <= hi")
        lo, hi = shapes.side_range(FLAGS.min_side, FLAGS.max_side, aspect)
        if lo > hi:
            fail("aspect", ",".join(FLAGS.aspect), "a range that admits sides in [min, max]")
    return dict(
        min_side=FLAGS.min_side,
        max_side=FLAGS.max_side,
        aspect=aspect,
        contains_center=FLAGS.contains_center,
    )


def check_codebook() -> None:
    num_patches = FLAGS.codebook_rects * (shapes.CANVAS // shapes.CELL - shapes.GRID + 1) ** 2
    if FLAGS.codebook_rects < 1:
        fail("codebook_rects", FLAGS.codebook_rects, "an integer >= 1")
    if not 2 <= FLAGS.num_clusters <= num_patches:
        fail("num_clusters", FLAGS.num_clusters, f"an integer in [2, {num_patches}] (patches)")
