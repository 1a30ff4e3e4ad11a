"""`junction`: 2-4 straight strokes leaving one point (L, T, Y, X junctions), exact by
inclusion-exclusion over the strokes' convex overlaps."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.geometry import polygons, shapes
from rectbert.scenes.base import Scene, compiled, option, polygon_coverage, register, sampler


@register
@dataclasses.dataclass(frozen=True)
class Junction(Scene):
    """2-4 straight strokes of one width leaving one junction point: L, T, Y and X junctions.

    Parameters (jx, jy, width, then per stroke slot: length, angle), 4 slots, the unused ones
    last with length 0 and angle 0. Stroke i is the rectangle with one short side centred on
    the junction: corners j +- (width/2) n and j + length u +- (width/2) n, u = (cos a, sin a),
    n = (-sin a, cos a). The count is uniform on [min_strokes, max_strokes], the width on
    stroke_width, each length on [min_length, max_length] and each angle on [0, 2 pi); the
    junction is uniform on the middle [size/8, 7 size/8]^2. Strokes may leave the canvas:
    what lies outside is cut off (coverage, images and figures show the part inside).
    Coverage of the union is exact: inclusion-exclusion over the strokes' convex overlaps.
    """

    name: ClassVar[str] = "junction"
    param_dim: ClassVar[int] = 11
    min_strokes: int = option(2, "Fewest strokes at a junction (2-4).")
    max_strokes: int = option(4, "Most strokes at a junction (2-4).")
    stroke_width: tuple[float, float] | None = option(
        (8.0, 24.0), "Stroke width range 'lo,hi', canvas pixels.", kind="range"
    )
    min_length: float = option(40.0, "Shortest stroke, canvas pixels.")
    max_length: float = option(120.0, "Longest stroke, canvas pixels.")
    size: int = shapes.CANVAS
    slots: ClassVar[int] = 4
    chunk_pairs: ClassVar[int] = 2**13  # ~33 KB of clipping work a (shape, point) pair

    def __post_init__(self):
        w = self.stroke_width
        config.validate(
            self,
            [
                (2 <= self.min_strokes <= 4, "min_strokes", "an integer in [2, 4]"),
                (
                    self.min_strokes <= self.max_strokes <= 4,
                    "max_strokes",
                    f"an integer in [min_strokes={self.min_strokes}, 4]",
                ),
                (
                    w is not None and len(w) == 2 and 0 < w[0] <= w[1] <= self.size / 4,
                    "stroke_width",
                    f"two numbers 'lo,hi' with 0 < lo <= hi <= {self.size / 4:g}",
                ),
                (0 < self.min_length <= self.size, "min_length", f"in (0, {self.size}]"),
                (
                    self.min_length <= self.max_length <= self.size,
                    "max_length",
                    f"in [min_length, {self.size}]",
                ),
            ],
        )

    def _box(self):
        return self.size / 8, 7 * self.size / 8

    @sampler
    def sample(self, key, n: int):
        kj, kw, kc, kl, ka = jax.random.split(key, 5)
        lo, hi = self._box()
        j = jax.random.uniform(kj, (n, 2), minval=lo, maxval=hi)
        width = jax.random.uniform(
            kw, (n, 1), minval=self.stroke_width[0], maxval=self.stroke_width[1]
        )
        count = jax.random.randint(kc, (n, 1), self.min_strokes, self.max_strokes + 1)
        used = jnp.arange(self.slots)[None] < count
        length = jax.random.uniform(
            kl, (n, self.slots), minval=self.min_length, maxval=self.max_length
        )
        angle = jax.random.uniform(ka, (n, self.slots), maxval=2 * jnp.pi)
        strokes = jnp.stack([jnp.where(used, length, 0.0), jnp.where(used, angle, 0.0)], -1)
        return jnp.concatenate([j, width, strokes.reshape(n, 2 * self.slots)], -1)

    def polygons(self, params_NxD):
        """[N, 4, 4, 2] each stroke slot's quadrilateral (an unused one has no area)."""
        p = jnp.asarray(params_NxD, jnp.float32)
        j, half = p[:, None, None, :2], p[:, 2, None, None, None] / 2
        length, angle = p[:, 3::2, None, None], p[:, 4::2, None, None]
        u = jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], -1)  # [N, 4, 1, 2]
        nrm = jnp.concatenate([-jnp.sin(angle), jnp.cos(angle)], -1)
        along = jnp.array([0.0, 1.0, 1.0, 0.0])[None, None, :, None] * length
        side = jnp.array([-1.0, -1.0, 1.0, 1.0])[None, None, :, None] * half
        return j + along * u + side * nrm

    def _pieces(self, params_NxD):
        """{k: ([N, S_k, 4k, 2] the overlaps of the S_k subsets of k strokes, their sign)}: an
        overlap of k quadrilaterals has at most 4k vertices, so each size keeps its own.

        Each k-subset is a (k-1)-subset cut by one more stroke. All sizes share one padded
        shape (6 subsets of 16 vertices) so that one compiled cut, looped over k, makes them
        all: the clipping is compiled once, not once per subset (the coverage compiles in
        2.4 s here, was 7-8 s)."""
        quads = self.polygons(params_NxD)  # [N, 4, 4, 2]
        m, v = math.comb(self.slots, self.slots // 2), 4 * self.slots  # padded sizes
        subsets, steps = [(i,) for i in range(self.slots)], []
        for _ in range(2, self.slots + 1):
            grown = [(a, j) for a, s in enumerate(subsets) for j in range(s[-1] + 1, self.slots)]
            steps.append(np.array(grown + [(0, 0)] * (m - len(grown))).T)  # [2, m]
            subsets = [subsets[a] + (j,) for a, j in grown]
        padded = jnp.concatenate([quads, jnp.repeat(quads[:, :, -1:], v - 4, 2)], 2)
        first = jnp.concatenate([padded, padded[:, : m - self.slots]], 1)  # [N, m, v, 2]

        def grow(prev, step):
            cut = polygons.intersect(jnp.take(prev, step[0], 1), jnp.take(quads, step[1], 1))
            return (cut[..., :v, :],) * 2  # k quadrilaterals: <= 4k <= 16 vertices

        _, grown = jax.lax.scan(grow, first, jnp.asarray(np.stack(steps)))
        pieces = {1: (quads, 1.0)}
        for k in range(2, self.slots + 1):
            count = math.comb(self.slots, k)
            pieces[k] = (grown[k - 2][:, :count, : 4 * k], 1.0 if k % 2 else -1.0)
        return pieces

    @compiled
    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        total = 0.0
        for pieces, sign in self._pieces(params_NxD).values():
            ones = jnp.full(pieces.shape[1], sign)
            total = total + polygon_coverage(pieces, ones, points_NxPx2, cell, grid, clip=False)
        return jnp.clip(total, 0.0, 1.0)

    def log_density(self, params_NxD):
        p = jnp.asarray(params_NxD, jnp.float32)
        length, angle = p[:, 3::2], p[:, 4::2]
        used = length > 0
        count = jnp.sum(used, -1)
        lo, hi = self._box()
        w_lo, w_hi = self.stroke_width
        ok = jnp.all((p[:, :2] >= lo) & (p[:, :2] <= hi), -1)
        ok &= (p[:, 2] >= w_lo) & (p[:, 2] <= w_hi)
        ok &= (count >= self.min_strokes) & (count <= self.max_strokes)
        ok &= jnp.all(used[:, :-1] | ~used[:, 1:], -1)  # no used slot after an unused one
        ok &= jnp.all(
            jnp.where(used, (length >= self.min_length) & (length <= self.max_length), angle == 0),
            -1,
        )
        ok &= jnp.all((angle >= 0) & (angle < 2 * jnp.pi), -1)
        per_stroke = -math.log(max(self.max_length - self.min_length, 1e-12)) - math.log(
            2 * math.pi
        )
        log_p = (
            -2 * math.log(hi - lo)
            - math.log(max(w_hi - w_lo, 1e-12))
            - math.log(self.max_strokes - self.min_strokes + 1)
            + count * per_stroke
        )
        return jnp.where(ok, log_p, -jnp.inf)

    def oracle_unsupported(self) -> str | None:
        slow = "its coverage is too slow inside the sampler's loops"
        if self.min_strokes == self.max_strokes == self.slots:
            return f"junction: {slow}"
        return (
            "junction: the stroke count varies or leaves slots unused (a posterior over a "
            f"varying dimension; the oracle samples a fixed one), and {slow}"
        )

    def support(self) -> np.ndarray:
        lo, hi = self._box()
        rows = [[lo, hi], [lo, hi], list(self.stroke_width)]
        rows += [[0.0, self.max_length], [0.0, 2 * math.pi]] * self.slots
        return np.array(rows, np.float32)

    def outlines(self, params_D) -> list[np.ndarray]:
        quads = np.asarray(self.polygons(jnp.asarray(params_D)[None])[0], np.float64)
        lengths = np.asarray(params_D)[3::2]
        return [q for q, length in zip(quads, lengths, strict=True) if length > 0]
