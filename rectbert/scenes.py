"""Scene families: what an image is. Each family is a frozen dataclass with one interface.

Adding a family is one class in this module and its @register line; nothing else branches
on a family's name (the experiments' flags are made from the registered classes' fields).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config, polygons, shapes

SCENES: dict[str, type[Scene]] = {}


def register(cls):
    """Class decorator: make the family available as rectbert.scene(cls.name)."""
    SCENES[cls.name] = cls
    return cls


def sampler(sample):
    """A family's sample(key, n) as one compiled program per n (op by op, each new n would
    compile every small operation on its own)."""
    fn = jax.jit(sample, static_argnums=(0, 2), static_argnames=("n",))

    @functools.wraps(sample)
    def checked(self, key, n: int):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a count >= 0; got {n!r}")
        return fn(self, key, int(n))

    return checked


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

    def oracle_unsupported(self) -> str | None:
        """Why the oracle (a sampler over a continuous density on support()) cannot give this
        scene's posterior, or None when it can."""
        return None

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

    def check(self, params_NxD, points_NxPx2=None) -> None:
        """ValueError unless params_NxD is [N, param_dim] and points_NxPx2 [N, P, 2]; and,
        when they hold values (not inside a jit), finite."""
        shape, d = jnp.shape(params_NxD), self.param_dim
        if len(shape) != 2 or shape[1] != d:
            raise ValueError(
                f"params_NxD of scene {self.name!r} must have shape [N, {d}]; got {shape}"
            )
        arrays = [("params_NxD", params_NxD)]
        if points_NxPx2 is not None:
            p = jnp.shape(points_NxPx2)
            if len(p) != 3 or p[2] != 2 or p[0] != shape[0]:
                raise ValueError(
                    f"points_NxPx2 must have shape [N, P, 2] with N = {shape[0]} (the number "
                    f"of shapes); got {p}"
                )
            arrays.append(("points_NxPx2", points_NxPx2))
        for name, a in arrays:
            if not isinstance(a, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(a))):
                raise ValueError(f"{name} must be finite; got non-finite values")


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


def _window_cells(points_NxPx2, cell, grid):
    """([N, P, grid*grid] x0, y0) of the cells of each point's window, row-major."""
    offsets = (jnp.arange(grid, dtype=jnp.float32) - grid / 2) * cell
    pts = jnp.asarray(points_NxPx2, jnp.float32)
    x0 = pts[..., 0, None, None] + offsets[None, :]  # [N, P, 1, G]
    y0 = pts[..., 1, None, None] + offsets[:, None]  # [N, P, G, 1]
    x0, y0 = jnp.broadcast_arrays(x0, y0)
    n, p = pts.shape[:2]
    return x0.reshape(n, p, grid * grid), y0.reshape(n, p, grid * grid)


def compiled(coverage):
    """A family's coverage checked (Scene.check), then run as one compiled program (the scene
    and the sizes static): polygon clipping is many small operations, slow one by one."""
    fn = jax.jit(coverage, static_argnums=0, static_argnames=("cell", "grid"))

    @functools.wraps(coverage)
    def checked(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        self.check(params_NxD, points_NxPx2)
        shapes.check_window(cell, grid)
        return fn(self, params_NxD, points_NxPx2, cell=cell, grid=grid)

    return checked


def polygon_coverage(polys_NxSxVx2, signs_S, points_NxPx2, cell, grid, clip=True):
    """[N, P, grid*grid]: sum over s of signs_S[s] x the area of polygon s inside each cell of
    each point's window, as a fraction of the cell (one polygon, or inclusion-exclusion;
    clip=False for a partial sum)."""
    x0, y0 = _window_cells(points_NxPx2, cell, grid)
    polys = jnp.asarray(polys_NxSxVx2, jnp.float32)[:, None, None]  # [N, 1, 1, S, V, 2]
    area = polygons.box_area(
        polys, *(v[..., None] for v in (x0, y0, x0 + cell, y0 + cell))
    )  # [N, P, G*G, S]
    total = jnp.sum(area * jnp.asarray(signs_S, jnp.float32), -1) / cell**2
    return jnp.clip(total, 0.0, 1.0) if clip else total


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


@register
@dataclasses.dataclass(frozen=True)
class Rects(Scene):
    """The union of up to num_rects axis-aligned rectangles, each from the rect prior.

    The count is uniform on [min_rects, num_rects] (min_rects 0: num_rects always); parameters
    num_rects x (x0, y0, x1, y1), the unused slots last and empty (all four 0). Coverage of
    the union is exact: inclusion-exclusion over the slots' overlaps (rectangles again).
    """

    name: ClassVar[str] = "rects"
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

    def oracle_unsupported(self) -> str | None:
        if self._lo() == self.num_rects:
            return None
        return (
            f"rects with a varying count (min_rects={self.min_rects} < num_rects="
            f"{self.num_rects}): the posterior is over a varying dimension, the oracle samples "
            "a fixed one; use min_rects=0"
        )

    def support(self) -> np.ndarray:
        one = self._one().support().copy()
        one[2:, 0] = 0.0  # an empty slot is all zeros
        return np.tile(one, (self.num_rects, 1))

    def outlines(self, params_D) -> list[np.ndarray]:
        r = np.asarray(params_D, np.float64).reshape(self.num_rects, 4)
        return [self._one().outlines(x)[0] for x in r if np.any(x != 0)]

    def corners(self, params_NxD):
        """[N, 4 num_rects, 2]: an empty slot's corners lie far off the canvas."""
        r = jnp.asarray(params_NxD, jnp.float32).reshape(-1, 4)
        far = jnp.where(jnp.all(r == 0, -1, keepdims=True), -1e6, r)
        return self._one().corners(far).reshape(jnp.shape(params_NxD)[0], -1, 2)


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
        slow = (
            "its exact coverage inside the sampler's loops did not finish 16 examples in 10 "
            "minutes on a 2-core CPU"
        )
        if self.min_strokes == self.max_strokes == self.slots:
            return f"junction: {slow}"
        return (
            "junction: the stroke count varies or leaves slots unused (a posterior over a "
            f"varying dimension, the oracle samples a fixed one), and {slow}"
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
