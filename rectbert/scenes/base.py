"""The Scene interface and the registry of scene families (name -> class), with the decorators
families use: @register, @sampler (one compiled program per n), @compiled (checked coverage).

A family is a frozen dataclass in a module of its own (rect.py, rotated.py, ...); its options
are fields declared with option(default, help), from which the experiments make their flags.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.geometry import shapes

SCENES: dict[str, type[Scene]] = {}
SUPPORT_TOL = 1e-5  # relative margin of the support check (a sample's float32 rounding)


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


option = config.setting  # a family option: its default and the help of the flag made from it
options = config.settings  # the options a user may set (the canvas size is not one)


def scene(name: str, **opts) -> Scene:
    """A scene family, made with these options.

    Args:
        name: a registered family (a key of SCENES).
        **opts: its options (the fields declared with option()); the rest take their
            defaults. A value of another type is taken where it means the same (an int for a
            float, a list for a range, 'a,b' for names).

    Returns:
        The family's frozen dataclass (a Scene).

    Raises:
        ConfigError (a ValueError): one line naming the option and what it allows, for an
        unknown name, an option the family lacks or a value it refuses.
    """
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

    d, kind = f.default, f.metadata.get("kind")
    if kind == "names":
        if isinstance(value, str):
            value = config.from_text(f, value)
        if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        want = "names 'a,b,...'"
    elif kind == "str" or isinstance(d, str):
        if isinstance(value, str):
            return value
        want = "text"
    elif kind == "range":
        if value is None or (isinstance(value, tuple | list) and len(value) == 0):
            return None
        if isinstance(value, tuple | list) and all(number(v) for v in value):
            return tuple(float(v) for v in value)
        # None only where it is the default (rect's aspect: any); glyph_size must be a range
        want = "two numbers (lo, hi)" + (", or None" if d is None else "")
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
    (x, y) canvas pixels; every image lies on a size x size canvas (docs: design, conventions)."""

    name: ClassVar[str]
    param_dim: ClassVar[int]
    size: int
    # (shape, point) pairs per compiled coverage call at most (in_chunks): about 300 MB of
    # work memory for rotated (~1 KB a pair) and rects (<= 1.3 KB); junction sets its own
    chunk_pairs: ClassVar[int] = 2**18
    branches: ClassVar[bool] = False  # coverage takes a lax.cond (batch it with care: not vmap)
    # the oracle's sampler: differential moves per sweep (moves.differential), which follow a
    # posterior's correlations (rotated's centre, sides and angle); a family whose posterior
    # the coordinate moves mix alone (rect's axis-aligned edges) sets 0 and runs faster
    ensemble_moves: ClassVar[int] = 2
    # the oracle's slice moves: the chains whose candidate may be taken are gathered and
    # judged in this many blocks, so the work follows their count (smc.Likelihood.gated);
    # 1 judges every chain at once. Pays where coverage is dear (junction's union, a
    # drawing's outline: 1.5x); where it is cheap the blocks' own operations cost more
    # than they save (docs/oracle.md, the speed section)
    oracle_blocks: ClassVar[int] = 1
    # distributions it reads beyond rectbert's own requirements (an optional extra): without
    # them it is refused when made, in one line naming the extra; the tests skip it
    requires: ClassVar[tuple[str, ...]] = ()

    def sample(self, key, n: int):
        """Shapes drawn from the family's prior (one compiled program per n).

        Args:
            key: a jax.random key (the same key gives the same shapes).
            n: how many, an integer >= 0.

        Returns:
            [n, D] float32 parameters, one row per shape, inside support().
        """
        raise NotImplementedError

    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        """The exact covered fraction of each cell of the window centred on each point.

        Args:
            params_NxD: one shape per row, inside the support (check()).
            points_NxPx2: P points (x, y) per shape, canvas pixels, finite.
            cell, grid: the window is grid x grid cells of cell pixels (4 x 16).

        Returns:
            [N, P, grid*grid] float32 in [0, 1], cells row-major (design: conventions).

        Raises:
            ValueError: one line naming the argument, for a bad shape or value, before
            compute (check()).
        """
        raise NotImplementedError

    def log_density(self, params_NxD):
        """The prior's log density (the oracle's target).

        Args:
            params_NxD: parameter rows, any values.

        Returns:
            [N] float32: log p(params), -inf outside the support (and outside support()).
        """
        raise NotImplementedError

    def support(self) -> np.ndarray:
        """Returns [D, 2] float32: a box (lo, hi per parameter) holding the prior's whole
        support: log_density is -inf outside it."""
        raise NotImplementedError

    def components(self) -> tuple[tuple[float, Scene], ...]:
        """The prior as a mixture of fixed-dimension scenes; the oracle samples each and
        weighs them by their evidence.

        Returns:
            ((log p(m), scene_m), ...): the log p(m) sum to one in probability, and the
            density of lift(m, x) is p(m) x scene_m's density of x. One component, the scene
            itself, unless its dimension varies (junction's stroke count, rects' rectangle
            count) or the drawing is a choice (glyph, kanji: one per drawing).
        """
        return ((0.0, self),)

    def component_batch(self):
        """None, or the components() as one shape mapped over their index: (log p(m) [M],
        scene_of(m) -> component m for a traced index m). The oracle then runs them as one
        program (one compilation, whatever M: a glyph per component); otherwise each
        component is its own (junction's differ in dimension)."""
        return None

    def component_of(self, params_NxD):
        """[N] int32: the index in components() of each shape's component (lift's inverse
        choice: the count of strokes or rectangles used, the drawing); 0 with one component.
        For shapes inside the support (outside it the index may be out of range)."""
        return jnp.zeros(jnp.shape(params_NxD)[0], jnp.int32)

    def lift(self, m: int, params_NxDm):
        """[N, D] component m's parameters in this scene's own (default: the used slots
        first, the unused ones 0, as junction and rects write them)."""
        del m
        p = jnp.asarray(params_NxDm, jnp.float32)
        return jnp.pad(p, ((0, 0), (0, self.param_dim - p.shape[1])))

    def wrap(self, params_NxD):
        """[N, D] the canonical parameters of the same shape (inside the support's box where a
        symmetry allows: a periodic angle, a seam), for points moved past the box's edges by
        the oracle's sampler; identity unless a family knows one."""
        return params_NxD

    def hard_bounds(self, points_Px2, hit_P):
        """[D, 2] a box holding every parameter row whose shape meets the window of each point
        where hit_P is True (the oracle proposes in it); the support unless a family knows more."""
        del points_Px2, hit_P
        return jnp.asarray(self.support(), jnp.float32)

    def unseen(self) -> Scene | None:
        """The same family over shapes held out of training (e.g. glyphs or fonts never
        seen), evaluated beside the held-out set as `eval/unseen_*`; None: no such split."""
        return None

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
        """The shapes' images, area-downsampled exactly.

        Args:
            params_NxD: one shape per row, inside the support.
            size: the image side, a divisor of the canvas' (None: the canvas' own).

        Returns:
            [N, size, size] float32: each pixel the fraction of it the shape covers.
        """
        size = self.size if size is None else size
        if size < 1 or self.size % size:
            raise ValueError(f"size must divide the canvas side {self.size}; got {size}")
        return self.downsample(params_NxD, cell=self.size // size)

    def outlines(self, params_D) -> list[np.ndarray]:
        """The shape's boundary, for figures and as the registry's contract test's reference.

        Args:
            params_D: one shape's parameters.

        Returns:
            Closed rings [V, 2] (x, y), float64. From the largest ring to the smallest, one
            of positive signed area (counter-clockwise in (x, y)) adds its inside, one of
            negative area cuts a hole; rings of one sign may overlap (their union).
        """
        raise NotImplementedError

    def corners(self, params_NxD):
        """[N, C, 2] the shape's corners, NaN for a padding slot (the `nocorners` point sampler
        avoids them)."""
        raise NotImplementedError(f"scene {self.name!r} has no corners")

    def boundary(self, params_NxD):
        """The shape's boundary as segments, the `edges` point sampler's support: ([N, S, 2]
        starts, [N, S, 2] ends, [N, S] weights, 0 for padding), canvas pixels."""
        raise NotImplementedError(f"scene {self.name!r} has no boundary")

    def centrelines(self, params_NxD):
        """The strokes' centrelines as segments, the `strokes` point sampler's support:
        ([N, T, 2] starts, [N, T, 2] ends, [N, T] weights, 0 for padding), canvas pixels."""
        raise NotImplementedError(f"scene {self.name!r} has no strokes")

    def junction_points(self, params_NxD, corner_angle: float):
        """The drawing's junctions (stroke ends, corners under `corner_angle` degrees, where
        strokes meet or cross; geometry/lines.py), the `junctions` point sampler's:
        ([N, J, 2] canvas pixels, [N, J] bool: a junction, not padding)."""
        raise NotImplementedError(f"scene {self.name!r} has no junctions")

    def record(self) -> dict:
        """Returns the family's name and options, JSON-able (config.json records it;
        from_record makes the scene again)."""
        return {"name": self.name, **config.fields_record(self)}

    def check(self, params_NxD, points_NxPx2=None, *, names=("params_NxD", "points_NxPx2")) -> None:
        """ValueError (one line, naming the argument: `names`) unless params_NxD is
        [N, param_dim] and points_NxPx2 [N, P, 2]; and, when they hold values (not inside a
        jit), finite and the parameters inside the scene's support (outside())."""
        shape, d = np.shape(params_NxD), self.param_dim
        if len(shape) != 2 or shape[1] != d:
            raise ValueError(
                f"{names[0]} of scene {self.name!r} must have shape [N, {d}]; got {shape}"
            )
        arrays = [(names[0], params_NxD)]
        if points_NxPx2 is not None:
            p = np.shape(points_NxPx2)
            if len(p) != 3 or p[2] != 2 or p[0] != shape[0]:
                raise ValueError(
                    f"{names[1]} must have shape [N, P, 2] with N = {shape[0]} (the number "
                    f"of shapes); got {p}"
                )
            arrays.append((names[1], points_NxPx2))
        if any(isinstance(a, jax.core.Tracer) for _, a in arrays):
            return
        values = [shapes.finite(a, name) for name, a in arrays]
        if len(values) > 1:
            shapes.check_points(values[1], names[1])
        why = self.outside(values[0].astype(np.float64))
        if why:
            raise ValueError(f"{names[0]} of scene {self.name!r} must lie in its support: {why}")

    def outside(self, params_NxD: np.ndarray) -> str | None:
        """What the first row outside the scene's support breaks (its column, the allowed
        range, the value), or None: here, outside the box support() (the sampler's ranges:
        sizes > 0, shapes on the canvas)."""
        return outside_box(params_NxD, self.support())


def outside_box(params_NxD: np.ndarray, box_Dx2) -> str | None:
    """The first entry of params_NxD outside box_Dx2 (lo, hi per column), said in words, or
    None; with a margin of SUPPORT_TOL for a sampler's float32 rounding."""
    box = np.asarray(box_Dx2, np.float64)
    tol = SUPPORT_TOL * np.maximum(1.0, np.abs(box))
    bad = np.argwhere((params_NxD < box[:, 0] - tol[:, 0]) | (params_NxD > box[:, 1] + tol[:, 1]))
    if not bad.size:
        return None
    r, c = bad[0]
    return f"column {c} in [{box[c, 0]:g}, {box[c, 1]:g}]; row {r} has {params_NxD[r, c]:g}"
