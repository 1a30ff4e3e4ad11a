"""`rotated`: one rectangle turned by an angle, wholly inside the canvas; exact polygon areas."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.geometry import shapes
from rectbert.scenes.base import Scene, option, register, sampler
from rectbert.scenes.exact import compiled, polygon_coverage
from rectbert.scenes.rect import ring_boundary


@register
@dataclasses.dataclass(frozen=True)
class Rotated(Scene):
    """One rectangle rotated by theta, parameters (cx, cy, w, h, theta).

    Sides uniform on [min_side, max_side], theta uniform on [0, pi/2), the centre uniform over
    the places where the whole rectangle lies inside the canvas (max_side <= size / sqrt 2, so
    every side pair and angle fits). Corners: c + R(theta)(+-w/2, +-h/2) on (x, y).
    """

    name: ClassVar[str] = "rotated"
    param_dim: ClassVar[int] = 5
    min_side: float = option(32.0, "Smallest rectangle side, canvas pixels.")
    max_side: float = option(160.0, "Largest rectangle side, canvas pixels.")
    size: int = shapes.CANVAS

    def __post_init__(self):
        fit = self.size / math.sqrt(2)
        config.validate(
            self,
            [
                (0 < self.min_side <= fit, "min_side", f"in (0, {fit:.1f}]"),
                (
                    self.min_side <= self.max_side <= fit,
                    "max_side",
                    f"in [min_side, {fit:.1f}] (size / sqrt 2: every angle fits the canvas)",
                ),
            ],
        )

    def _extent(self, w, h, theta):
        c, s = jnp.abs(jnp.cos(theta)), jnp.abs(jnp.sin(theta))
        return (w * c + h * s) / 2, (w * s + h * c) / 2

    @sampler
    def sample(self, key, n: int):
        kw, kh, kt, kx, ky = jax.random.split(key, 5)
        w = jax.random.uniform(kw, (n,), minval=self.min_side, maxval=self.max_side)
        h = jax.random.uniform(kh, (n,), minval=self.min_side, maxval=self.max_side)
        theta = jax.random.uniform(kt, (n,), maxval=jnp.pi / 2)
        ex, ey = self._extent(w, h, theta)
        cx = ex + (self.size - 2 * ex) * jax.random.uniform(kx, (n,))
        cy = ey + (self.size - 2 * ey) * jax.random.uniform(ky, (n,))
        return jnp.stack([cx, cy, w, h, theta], -1)

    def polygons(self, params_NxD):
        """[N, 4, 2] the corners, counter-clockwise for y up."""
        p = jnp.asarray(params_NxD, jnp.float32)
        c, s = jnp.cos(p[:, 4, None]), jnp.sin(p[:, 4, None])
        u = jnp.array([-0.5, 0.5, 0.5, -0.5]) * p[:, 2, None]
        v = jnp.array([-0.5, -0.5, 0.5, 0.5]) * p[:, 3, None]
        return jnp.stack([p[:, 0, None] + c * u - s * v, p[:, 1, None] + s * u + c * v], -1)

    @compiled
    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        polys = self.polygons(params_NxD)[:, None]
        return polygon_coverage(polys, jnp.ones(1), points_NxPx2, cell, grid)

    def log_density(self, params_NxD):
        p = jnp.asarray(params_NxD, jnp.float32)
        cx, cy, w, h, theta = (p[:, i] for i in range(5))
        ex, ey = self._extent(w, h, theta)
        ok = (w >= self.min_side) & (w <= self.max_side) & (h >= self.min_side)
        ok &= (h <= self.max_side) & (theta >= 0) & (theta < jnp.pi / 2)
        ok &= (cx >= ex) & (cx <= self.size - ex) & (cy >= ey) & (cy <= self.size - ey)
        log_p = -2 * math.log(max(self.max_side - self.min_side, 1e-12)) - math.log(math.pi / 2)
        log_p -= jnp.log(jnp.maximum(self.size - 2 * ex, 1e-12))
        log_p -= jnp.log(jnp.maximum(self.size - 2 * ey, 1e-12))
        return jnp.where(ok, log_p, -jnp.inf)

    def wrap(self, params_NxD):
        # the same rectangle is (w, h, theta) and (h, w, theta -+ pi/2): the seam at
        # theta = 0 | pi/2, which the oracle's moves cross here
        p = jnp.asarray(params_NxD, jnp.float32)
        turns = jnp.floor(p[:, 4] / (jnp.pi / 2))
        odd = (jnp.abs(turns) % 2 == 1)[:, None]
        theta = p[:, 4] - turns * (jnp.pi / 2)
        sides = jnp.where(odd, p[:, 3:1:-1], p[:, 2:4])
        return jnp.concatenate([p[:, :2], sides, theta[:, None]], -1)

    def support(self) -> np.ndarray:
        s, lo, hi = float(self.size), self.min_side, self.max_side
        return np.array(
            [[lo / 2, s - lo / 2], [lo / 2, s - lo / 2], [lo, hi], [lo, hi], [0.0, math.pi / 2]],
            np.float32,
        )

    def outlines(self, params_D) -> list[np.ndarray]:
        return [np.asarray(self.polygons(jnp.asarray(params_D)[None])[0], np.float64)]

    def corners(self, params_NxD):
        return self.polygons(params_NxD)

    def boundary(self, params_NxD):
        return ring_boundary(self.polygons(params_NxD))
