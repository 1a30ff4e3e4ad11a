"""Scene families: what an image is. Each family is a frozen dataclass with one interface.

Adding a family is one class in this module and its @register line; nothing else branches
on a family's name (the experiments' flags are made from the registered classes' fields).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config, shapes

SCENES: dict[str, type[Scene]] = {}


def register(cls):
    """Class decorator: make the family available as rectbert.scene(cls.name)."""
    SCENES[cls.name] = cls
    return cls


def option(default, help: str, **metadata):
    """A family option: its default and the help text of the flag made from it."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def options(cls) -> list[dataclasses.Field]:
    """The options a user may set (the canvas size is not one)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def scene(name: str, **opts) -> Scene:
    """The scene family `name` with these options, its defaults for the rest."""
    if name not in SCENES:
        raise config.ConfigError("scene", "scene", name, f"one of {sorted(SCENES)}")
    cls = SCENES[name]
    known = {f.name: f for f in options(cls)}
    for key in opts:
        if key not in known:
            raise config.ConfigError(
                cls.__name__, key, opts[key], f"unset: {name} has {list(known)}"
            )
    return cls(**{k: _typed(cls, known[k], v) for k, v in opts.items()})


def _typed(cls, f: dataclasses.Field, value):
    """An option's value as its default's type (ints for floats allowed), else ConfigError."""

    def number(v):
        return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)

    d = f.default
    if f.metadata.get("kind") == "range":
        if value is None or (isinstance(value, tuple | list) and len(value) == 0):
            return None
        if isinstance(value, tuple | list) and all(number(v) for v in value):
            return tuple(float(v) for v in value)
        want = "two numbers (lo, hi), or None"
    elif isinstance(d, bool):
        if isinstance(value, bool | np.bool_):
            return bool(value)
        want = "True or False"
    elif isinstance(d, int):
        if number(value) and float(value).is_integer():
            return int(value)
        want = "an integer"
    else:
        if number(value):
            return float(value)
        want = "a number"
    raise config.ConfigError(cls.__name__, f.name, value, want)


def implements(scene, method: str) -> bool:
    """Whether the scene's family has its own `method` (Scene's default raises)."""
    return getattr(type(scene), method) is not getattr(Scene, method)


def from_record(rec: dict) -> Scene:
    """The scene a Scene.record() describes."""
    rest = {k: v for k, v in rec.items() if k not in ("name", "size")}
    return dataclasses.replace(scene(rec["name"], **rest), size=rec.get("size", shapes.CANVAS))


class Scene:
    """The interface of a family. params_NxD holds one row of D numbers per image; points are
    (x, y) canvas pixels; every image lies on a size x size canvas (DESIGN.md)."""

    name: ClassVar[str]
    param_dim: ClassVar[int]
    size: int

    def sample(self, key, n: int):
        """[n, D] parameters drawn from the family's prior."""
        raise NotImplementedError

    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        """[N, P, grid*grid]: the exact covered fraction of each cell of the grid x grid
        window of cell-pixel cells centred on each point (row-major)."""
        raise NotImplementedError

    def log_density(self, params_NxD):
        """[N] the prior's log density; -inf outside its support."""
        raise NotImplementedError

    def support(self) -> np.ndarray:
        """[D, 2] a box (lo, hi per parameter) that holds the prior's whole support."""
        raise NotImplementedError

    def hard_bounds(self, points_Px2, hit_P):
        """[D, 2] a box holding every parameter row whose shape meets the window of each point
        where hit_P is True (the oracle proposes in it); the support unless a family knows more."""
        del points_Px2, hit_P
        return jnp.asarray(self.support(), jnp.float32)

    def downsample(self, params_NxD, *, cell: int = shapes.CELL):
        """[N, size/cell, size/cell]: each pixel the exact covered fraction of its cell."""
        shapes.check_cell(self.size, cell)
        n = self.size // cell
        t = (np.arange(n, dtype=np.float32) + 0.5) * cell
        ys, xs = np.meshgrid(t, t, indexing="ij")
        centres = jnp.asarray(np.stack([xs.ravel(), ys.ravel()], -1))
        points = jnp.broadcast_to(centres, (jnp.shape(params_NxD)[0], n * n, 2))
        return self.coverage(params_NxD, points, cell=cell, grid=1).reshape(-1, n, n)

    def rasterise(self, params_NxD, size: int | None = None):
        """[N, size, size] image (default: the canvas' resolution), pixels exact fractions."""
        size = self.size if size is None else size
        if size < 1 or self.size % size:
            raise ValueError(f"size must divide the canvas side {self.size}; got {size}")
        return self.downsample(params_NxD, cell=self.size // size)

    def outlines(self, params_D) -> list[np.ndarray]:
        """The shape's outline as closed polygons [V, 2] (x, y), for figures."""
        raise NotImplementedError

    def corners(self, params_NxD):
        """[N, C, 2] the shape's corners (the `nocorners` point sampler avoids them)."""
        raise NotImplementedError(f"scene {self.name!r} has no corners")

    def boundary_points(self, key, params_NxD, p: int):
        """[N, p, 2] points uniform along the shape's boundary (the `edges` point sampler)."""
        raise NotImplementedError(f"scene {self.name!r} has no boundary sampler")

    def record(self) -> dict:
        return {"name": self.name, **config.fields_record(self)}


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
                (self.min_side <= self.max_side <= self.size, "max_side", "in [min_side, size]"),
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
        return shapes.coverage(params_NxD, points_NxPx2, cell=cell, grid=grid)

    def downsample(self, params_NxD, *, cell: int = shapes.CELL):
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

    def boundary_points(self, key, params_NxD, p: int):
        r = jnp.asarray(params_NxD, jnp.float32)
        x0, y0, x1, y1 = (r[:, i, None] for i in range(4))
        w, h = x1 - x0, y1 - y0
        t = jax.random.uniform(key, (r.shape[0], p)) * 2 * (w + h)
        # walk the perimeter: top edge, right edge, bottom edge (backwards), left edge (backwards)
        x = jnp.select([t < w, t < w + h, t < 2 * w + h], [x0 + t, x1, x1 - (t - w - h)], x0)
        y = jnp.select(
            [t < w, t < w + h, t < 2 * w + h], [y0, y0 + (t - w), y1], y1 - (t - 2 * w - h)
        )
        return jnp.stack([x, y], axis=-1)
