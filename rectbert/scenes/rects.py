"""`rects`: the union of up to four rectangles of the rect prior, exact by inclusion-exclusion."""

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
from rectbert.scenes.exact import boundary_vertices, compiled, union_boundary
from rectbert.scenes.rect import Rect, on_canvas


@register
@dataclasses.dataclass(frozen=True)
class Rects(Scene):
    """The union of up to num_rects axis-aligned rectangles, each from the rect prior.

    The count is uniform on [min_rects, num_rects] (min_rects 0: num_rects always); parameters
    num_rects x (x0, y0, x1, y1), the unused slots last and empty (all four 0). Coverage of
    the union is exact: inclusion-exclusion over the slots' overlaps (rectangles again).
    """

    name: ClassVar[str] = "rects"
    ensemble_moves: ClassVar[int] = 0  # the oracle: axis-aligned edges, coordinate moves mix
    num_rects: int = option(2, "Rectangles per image (at most; 1-4).")
    min_rects: int = option(0, "Fewest rectangles per image (0: always num_rects).")
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
                (1 <= self.num_rects <= 4, "num_rects", "an integer in [1, 4]"),
                (
                    0 <= self.min_rects <= self.num_rects,
                    "min_rects",
                    f"an integer in [0, num_rects={self.num_rects}] (0: always num_rects)",
                ),
            ],
        )
        try:  # the single-rectangle prior's own checks, naming the same options
            self._one()
        except config.ConfigError as e:
            raise config.ConfigError(type(self).__name__, e.field, e.value, e.allowed) from None

    param_dim = property(lambda self: 4 * self.num_rects)

    def _one(self) -> Rect:
        return Rect(self.min_side, self.max_side, self.aspect, self.contains_center, self.size)

    def _lo(self) -> int:
        return self.min_rects or self.num_rects

    @sampler
    def sample(self, key, n: int):
        k_count, k_rects = jax.random.split(key)
        m = self.num_rects
        rects = self._one().sample(k_rects, n * m).reshape(n, m, 4)
        count = jax.random.randint(k_count, (n, 1), self._lo(), m + 1)
        used = jnp.arange(m)[None, :] < count
        return jnp.where(used[..., None], rects, 0.0).reshape(n, 4 * m)

    def _subsets(self):
        """(member [S, m] bool, sign [S]) for every non-empty subset of the slots."""
        m = self.num_rects
        member = np.array([[(s >> i) & 1 for i in range(m)] for s in range(1, 2**m)], bool)
        return member, np.where(member.sum(1) % 2 == 1, 1.0, -1.0).astype(np.float32)

    @compiled
    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        r = jnp.asarray(params_NxD, jnp.float32).reshape(-1, self.num_rects, 4)
        member, sign = self._subsets()
        big = jnp.float32(1e9)
        lo = jnp.where(member[None, :, :, None], r[:, None, :, :2], -big).max(2)  # [N, S, 2]
        hi = jnp.where(member[None, :, :, None], r[:, None, :, 2:], big).min(2)
        overlap = jnp.concatenate([lo, hi], -1)  # an empty overlap has hi <= lo: covers 0
        n, s = overlap.shape[:2]
        pts = jnp.repeat(jnp.asarray(points_NxPx2, jnp.float32), s, axis=0)
        parts = shapes._coverage(overlap.reshape(n * s, 4), pts, cell, grid)
        parts = parts.reshape(n, s, *parts.shape[1:])
        return jnp.clip(jnp.einsum("nspg,s->npg", parts, sign), 0.0, 1.0)

    def log_density(self, params_NxD):
        r = jnp.asarray(params_NxD, jnp.float32).reshape(-1, self.num_rects, 4)
        empty = jnp.all(r == 0, -1)  # [N, m]
        count = jnp.sum(~empty, -1)
        m = self.num_rects
        ordered = jnp.all(~empty[:, :-1] | empty[:, 1:], -1)  # no used slot after an empty one
        ok = ordered & (count >= self._lo())
        each = self._one().log_density(r.reshape(-1, 4)).reshape(-1, m)
        log_p = jnp.sum(jnp.where(empty, 0.0, each), -1) - math.log(m - self._lo() + 1)
        return jnp.where(ok, log_p, -jnp.inf)

    def components(self):
        """Exactly k rectangles for each count k (4k parameters)."""
        counts = range(self._lo(), self.num_rects + 1)
        log_p = -math.log(len(counts))
        return tuple((log_p, dataclasses.replace(self, num_rects=k, min_rects=0)) for k in counts)

    def component_of(self, params_NxD):
        r = jnp.asarray(params_NxD, jnp.float32).reshape(-1, self.num_rects, 4)
        return (jnp.sum(jnp.any(r != 0, -1), -1) - self._lo()).astype(jnp.int32)

    def support(self) -> np.ndarray:
        one = self._one().support().copy()
        one[2:, 0] = 0.0  # an empty slot is all zeros
        return np.tile(one, (self.num_rects, 1))

    def outside(self, params_NxD: np.ndarray) -> str | None:
        # each slot empty or a rectangle on the canvas (as rect), not only the prior's sides
        return on_canvas(params_NxD.reshape(len(params_NxD), self.num_rects, 4), self.size)

    def outlines(self, params_D) -> list[np.ndarray]:
        r = np.asarray(params_D, np.float64).reshape(self.num_rects, 4)
        return [self._one().outlines(x)[0] for x in r if np.any(x != 0)]

    def boundary(self, params_NxD):
        """The union's boundary (exact.union_boundary of the used slots' rectangles)."""
        r = jnp.asarray(params_NxD, jnp.float32).reshape(-1, self.num_rects, 4)
        quads = r[..., jnp.array([[0, 1], [2, 1], [2, 3], [0, 3]])]  # counter-clockwise
        centre = jnp.full((r.shape[0], 2), self.size / 2, jnp.float32)
        return union_boundary(quads, jnp.any(r != 0, -1), centre)

    def corners(self, params_NxD):
        """[N, 4 num_rects^2, 2] the union's vertices (its convex and concave corners; a corner
        inside another rectangle is none), NaN for padding."""
        return boundary_vertices(*self.boundary(params_NxD))
