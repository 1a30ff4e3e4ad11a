"""The rectangle prior's density: log p(rect) of shapes.sample_rects, in closed form.

Importance sampling (the oracle) needs it: weights are prior / proposal.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from rectbert import shapes


def log_density(
    rects_Nx4,
    *,
    size=shapes.CANVAS,
    min_side=32.0,
    max_side=192.0,
    aspect=None,
    contains_center=False,
):
    """[N] log p(rect) under sample_rects(..., same arguments); -inf outside its support.

    The sampler draws the width uniformly on side_range, the height uniformly on the interval
    that the width allows, then x0 and y0 uniformly on their allowed placements.
    """
    r = jnp.asarray(rects_Nx4, jnp.float32)
    w, h = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
    w_lo, w_hi = shapes.side_range(min_side, max_side, aspect)
    if aspect is None:
        h_lo, h_hi = jnp.full_like(w, min_side), jnp.full_like(w, max_side)
    else:
        h_lo = jnp.maximum(min_side, w * aspect[0])
        h_hi = jnp.minimum(max_side, w * aspect[1])

    def placements(side):
        lo, hi = jnp.zeros_like(side), size - side
        if contains_center:
            lo, hi = jnp.maximum(lo, size / 2 - side), jnp.minimum(hi, size / 2)
        return lo, hi

    (x_lo, x_hi), (y_lo, y_hi) = placements(w), placements(h)
    ok = (w >= w_lo) & (w <= w_hi) & (h >= h_lo) & (h <= h_hi)
    ok &= (r[:, 0] >= x_lo) & (r[:, 0] <= x_hi) & (r[:, 1] >= y_lo) & (r[:, 1] <= y_hi)
    # widths: 1 / (w_hi - w_lo); heights: 1 / (h_hi - h_lo); placements: 1 / range (a point
    # mass when the range is 0, i.e. a side equal to the canvas: treated as density 1)
    log_p = -math.log(max(w_hi - w_lo, 1e-12)) - jnp.log(jnp.maximum(h_hi - h_lo, 1e-12))
    log_p -= jnp.log(jnp.maximum(x_hi - x_lo, 1e-12)) + jnp.log(jnp.maximum(y_hi - y_lo, 1e-12))
    return jnp.where(ok, log_p, -jnp.inf)
