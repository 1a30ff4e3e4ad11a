"""`rect`: one axis-aligned rectangle, the write-up's prior, with its closed-form density."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.geometry import shapes
from rectbert.scenes.base import Scene, option, outside_box, register, sampler


@register
@dataclasses.dataclass(frozen=True)
class Rect(Scene):
    """One axis-aligned rectangle, parameters (x0, y0, x1, y1): the write-up's prior.

    The width is uniform on side_range(); given it, the height is uniform on the sides that
    [min_side, max_side] and the aspect range allow; the position is uniform over the
    placements inside the canvas (that contain the canvas centre, if asked).
    """

    name: ClassVar[str] = "rect"
    param_dim: ClassVar[int] = 4
    ensemble_moves: ClassVar[int] = 0  # the oracle: axis-aligned edges, coordinate moves mix
    min_side: float = option(32.0, "Smallest rectangle side, canvas pixels.")
    max_side: float = option(192.0, "Largest rectangle side, canvas pixels.")
    aspect: tuple[float, float] | None = option(
        None, "Height/width range 'lo,hi'; empty for any.", kind="range"
    )
    contains_center: bool = option(False, "Rectangles all contain the canvas centre.")
    size: int = shapes.CANVAS

    def __post_init__(self):
        config.validate(
            self,
            [
                (0 < self.min_side <= self.size, "min_side", f"in (0, {self.size}]"),
                (
                    self.min_side <= self.max_side <= self.size,
                    "max_side",
                    f"in [min_side={self.min_side:g}, {self.size}]",
                ),
                (
                    lambda: (
                        self.aspect is None
                        or (len(self.aspect) == 2 and 0 < self.aspect[0] <= self.aspect[1])
                    ),
                    "aspect",
                    "two numbers 'lo,hi' with 0 < lo <= hi, or empty",
                ),
                (
                    lambda: self.side_range()[0] <= self.side_range()[1],
                    "aspect",
                    f"a range that admits sides in [{self.min_side}, {self.max_side}]",
                ),
            ],
        )

    def side_range(self) -> tuple[float, float]:
        """The width interval the sampler draws from; every width in it admits a height."""
        if self.aspect is None:
            return self.min_side, self.max_side
        lo, hi = self.aspect
        return max(self.min_side, self.min_side / hi), min(self.max_side, self.max_side / lo)

    def _height_range(self, w):
        if self.aspect is None:
            return jnp.full_like(w, self.min_side), jnp.full_like(w, self.max_side)
        return jnp.maximum(self.min_side, w * self.aspect[0]), jnp.minimum(
            self.max_side, w * self.aspect[1]
        )

    def _placements(self, side):
        lo, hi = jnp.zeros_like(side), self.size - side
        if self.contains_center:
            lo, hi = jnp.maximum(lo, self.size / 2 - side), jnp.minimum(hi, self.size / 2)
        return lo, hi

    @sampler
    def sample(self, key, n: int):
        kw, kh, kx, ky = jax.random.split(key, 4)
        w_lo, w_hi = self.side_range()
        w = jax.random.uniform(kw, (n,), minval=w_lo, maxval=w_hi)
        h_lo, h_hi = self._height_range(w)
        h = h_lo + (h_hi - h_lo) * jax.random.uniform(kh, (n,))

        def place(k, side):
            lo, hi = self._placements(side)
            return lo + (hi - lo) * jax.random.uniform(k, side.shape)

        x0, y0 = place(kx, w), place(ky, h)
        return jnp.stack([x0, y0, x0 + w, y0 + h], axis=-1)

    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        self.check(params_NxD, points_NxPx2)  # separable, already compiled: little memory
        return shapes.coverage(params_NxD, points_NxPx2, cell=cell, grid=grid)

    def downsample(self, params_NxD, *, cell: int = shapes.CELL):
        self.check(params_NxD)
        return shapes.downsample(params_NxD, size=self.size, cell=cell)  # separable: faster

    def log_density(self, params_NxD):
        r = jnp.asarray(params_NxD, jnp.float32)
        w, h = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
        w_lo, w_hi = self.side_range()
        h_lo, h_hi = self._height_range(w)
        (x_lo, x_hi), (y_lo, y_hi) = self._placements(w), self._placements(h)
        ok = (w >= w_lo) & (w <= w_hi) & (h >= h_lo) & (h <= h_hi)
        ok &= (r[:, 0] >= x_lo) & (r[:, 0] <= x_hi) & (r[:, 1] >= y_lo) & (r[:, 1] <= y_hi)
        # width 1 / (w_hi - w_lo); height 1 / (h_hi - h_lo); placements 1 / range (a point mass
        # when the range is 0, i.e. a side equal to the canvas: treated as density 1)
        log_p = -math.log(max(w_hi - w_lo, 1e-12)) - jnp.log(jnp.maximum(h_hi - h_lo, 1e-12))
        log_p -= jnp.log(jnp.maximum(x_hi - x_lo, 1e-12)) + jnp.log(jnp.maximum(y_hi - y_lo, 1e-12))
        return jnp.where(ok, log_p, -jnp.inf)

    def outside(self, params_NxD: np.ndarray) -> str | None:
        # any rectangle on the canvas (its coverage is exact), not only the prior's sides
        return on_canvas(params_NxD.reshape(len(params_NxD), 1, 4), self.size)

    def support(self) -> np.ndarray:
        lo, top = self.min_side, float(self.size)
        return np.array([[0.0, top - lo], [0.0, top - lo], [lo, top], [lo, top]], np.float32)

    def hard_bounds(self, points_Px2, hit_P):
        # a rectangle meeting the window of a point (half-width h) has x0 < px + h, x1 > px - h
        half = shapes.CELL * shapes.GRID / 2
        big = jnp.float32(1e9)
        box = jnp.asarray(self.support(), jnp.float32)
        x0_hi = jnp.min(jnp.where(hit_P, points_Px2[:, 0] + half, big))
        y0_hi = jnp.min(jnp.where(hit_P, points_Px2[:, 1] + half, big))
        x1_lo = jnp.max(jnp.where(hit_P, points_Px2[:, 0] - half, -big))
        y1_lo = jnp.max(jnp.where(hit_P, points_Px2[:, 1] - half, -big))
        box = box.at[0, 1].min(x0_hi).at[1, 1].min(y0_hi)
        return box.at[2, 0].max(x1_lo).at[3, 0].max(y1_lo)

    def outlines(self, params_D) -> list[np.ndarray]:
        x0, y0, x1, y1 = np.asarray(params_D, np.float64)
        return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])]

    def corners(self, params_NxD):
        return jnp.asarray(params_NxD)[:, jnp.array([[0, 1], [2, 1], [0, 3], [2, 3]])]

    def boundary(self, params_NxD):
        return ring_boundary(self.corners(params_NxD)[:, jnp.array([0, 1, 3, 2])])


def ring_boundary(polygon_NxVx2):
    """One closed polygon's edges as boundary() segments: ([N, V, 2] starts, ends, weights 1)."""
    a = jnp.asarray(polygon_NxVx2, jnp.float32)
    return a, jnp.roll(a, -1, 1), jnp.ones(a.shape[:2], jnp.float32)


def on_canvas(rects_NxMx4: np.ndarray, size: int) -> str | None:
    """Why a row of M rectangle slots (x0, y0, x1, y1) is not on the size x size canvas with
    x0 < x1 and y0 < y1 in each slot (all 0: an empty slot, where M > 1), or None."""
    n, m = rects_NxMx4.shape[:2]
    why = outside_box(rects_NxMx4.reshape(n, 4 * m), [(0.0, float(size))] * (4 * m))
    if why:
        return f"the canvas: {why}"
    r = rects_NxMx4
    empty = np.all(r == 0, -1) if m > 1 else np.zeros((n, m), bool)
    bad = np.argwhere(~empty & ((r[..., 0] >= r[..., 2]) | (r[..., 1] >= r[..., 3])))
    if not bad.size:
        return None
    row, slot = bad[0]
    where = f"row {row}" if m == 1 else f"row {row} slot {slot} (columns {4 * slot}-{4 * slot + 3})"
    empty_ok = " (or all 0: an empty slot)" if m > 1 else ""
    return f"x0 < x1 and y0 < y1{empty_ok}; {where} is {r[row, slot].tolist()}"
