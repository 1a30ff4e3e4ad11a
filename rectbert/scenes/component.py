"""One drawing of a drawn scene (glyph, kanji, icon: drawn.py), the oracle's mixture component;
and the rings of a placed drawing's boundary, for its figures. Registers no family."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from rectbert.geometry import shapes
from rectbert.scenes.base import Scene

if TYPE_CHECKING:
    from rectbert.scenes.drawn import Drawn


def chains(a_Sx2: np.ndarray, b_Sx2: np.ndarray) -> list[np.ndarray]:
    """The rings of a boundary given as consecutive segments (each ring's in order)."""
    rings, start = [], 0
    for i in range(len(a_Sx2)):
        if i == len(a_Sx2) - 1 or not np.allclose(b_Sx2[i], a_Sx2[i + 1]):
            rings.append(a_Sx2[start : i + 1])
            start = i + 1
    return rings


@dataclasses.dataclass(frozen=True)
class One(Scene):
    """One drawing of a Drawn scene (a mixture component of the oracle): parameters (size,
    angle, x, y), or (size, x, y) where the angle is fixed; the parent's conditional prior
    given the drawing. Not registered."""

    parent: Drawn
    index: int  # or a traced int32 scalar (component_batch)

    name = property(lambda self: self.parent.name)
    size = property(lambda self: self.parent.size)
    free_angle = property(lambda self: self.parent._angles()[0] < self.parent._angles()[1])
    param_dim = property(lambda self: 4 if self.free_angle else 3)
    chunk_pairs = property(lambda self: self.parent.chunk_pairs)
    oracle_blocks = property(lambda self: self.parent.oracle_blocks)

    def _keep(self):
        return [1, 2, 3, 4] if self.free_angle else [1, 3, 4]

    def full(self, params_NxD):
        return self.parent.lift(self.index, params_NxD)

    # plain methods, not @sampler / @compiled: the index may be traced (component_batch),
    # and a traced value cannot be a compiled program's static argument; the oracle, their
    # caller, is compiled as a whole
    def sample(self, key, n: int):
        return self.parent._sample(key, n, self.index)[:, jnp.asarray(self._keep())]

    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        return self.parent._coverage(self.full(params_NxD), points_NxPx2, cell, grid)

    def log_density(self, params_NxD):
        return self.parent.log_density(self.full(params_NxD)) + math.log(self.parent.count)

    def support(self) -> np.ndarray:
        return self.parent.support()[self._keep()]

    def hard_bounds(self, points_Px2, hit_P):
        return self.parent.hard_bounds(points_Px2, hit_P)[jnp.asarray(self._keep())]

    def outlines(self, params_D) -> list[np.ndarray]:
        return self.parent.outlines(self.full(jnp.asarray(params_D)[None])[0])
