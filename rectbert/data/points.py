"""Where a sparse example's points fall: a registry of samplers, name -> function.

Every sampler is fn(key, scene, params_NxD, p) -> points_NxPx2 inside shapes.point_bounds()
(where a point's window lies on the canvas). Adding one: a function here and its @register.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rectbert import scenes
from rectbert.geometry import shapes


@dataclasses.dataclass(frozen=True)
class Sampler:
    fn: Callable
    help: str
    uniform: bool  # independent of the shape: what the oracle's likelihood assumes
    needs: tuple[str, ...] = ()  # the Scene methods it calls (a scene must implement them)

    def supports(self, scene) -> bool:
        return all(scenes.implements(scene, method) for method in self.needs)


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, help: str, *, uniform: bool = False, needs: tuple[str, ...] = ()):
    def add(fn):
        SAMPLERS[name] = Sampler(fn, help, uniform, needs)
        return fn

    return add


def get(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"point sampler must be one of {sorted(SAMPLERS)}; got {name!r}")
    return SAMPLERS[name]


def sample(name: str, key, scene, params_NxD, p: int):
    """[N, p, 2] points for each shape, by the sampler `name`."""
    return get(name).fn(key, scene, params_NxD, p)


@register("uniform", "uniform over the canvas region", uniform=True)
def uniform(key, scene, params_NxD, p: int):
    del scene
    lo, hi = shapes.point_bounds()
    return jax.random.uniform(key, (jnp.shape(params_NxD)[0], p, 2), minval=lo, maxval=hi)


@register(
    "edges",
    "uniform along the shape's boundary (clipped to the region)",
    needs=("boundary_points",),
)
def edges(key, scene, params_NxD, p: int):
    lo, hi = shapes.point_bounds()
    return jnp.clip(scene.boundary_points(jax.random.split(key)[0], params_NxD, p), lo, hi)


@register("nocorners", "uniform, but no shape corner in any point's window", needs=("corners",))
def nocorners(key, scene, params_NxD, p: int):
    """Exact rejection sampling: rejected points are redrawn until none is left. Four corner
    windows cover at most 45 % of the region by default, so few rounds are needed."""
    lo, hi = shapes.point_bounds()
    corners = scene.corners(params_NxD)
    if corners.shape[1] * (shapes.CELL * shapes.GRID) ** 2 >= (hi - lo) ** 2:
        raise ValueError("nocorners: the corner windows leave no room for points")
    shape = (corners.shape[0], p, 2)

    def body(state):
        key, points, bad = state
        key, sub = jax.random.split(key)
        fresh = jax.random.uniform(sub, shape, minval=lo, maxval=hi)
        points = jnp.where(bad[..., None], fresh, points)
        return key, points, shapes.window_has_corner(corners, points)

    init = (key, jnp.zeros(shape), jnp.ones(shape[:2], bool))
    return jax.lax.while_loop(lambda s: jnp.any(s[2]), body, init)[1]
