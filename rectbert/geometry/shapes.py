"""Rectangle geometry on the canvas: exact coverage, downsampling, lattice, squares.

Pure jnp, jit/vmap friendly; the conventions (docs: design) are defined here.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

CANVAS = 256  # canvas side in pixels
CELL = 16  # downsampling factor: one downsampled pixel is CELL x CELL canvas pixels
GRID = 4  # a token describes GRID x GRID cells centred on its point


# ----------------------------------------------------------------------------- validation
def _concrete(x) -> np.ndarray | None:
    """The value of `x` when it is known now (not a tracer inside jit), else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


F32_MAX = float(np.finfo(np.float32).max)


def finite32(value: np.ndarray) -> bool:
    """Whether every entry is finite as float32 too (what the computations run in)."""
    if not np.all(np.isfinite(value)):
        return False
    return value.dtype.kind != "f" or not value.size or np.abs(value).max() <= F32_MAX


MAX_COORD = 1e6  # a point's coordinates: far enough off the canvas to cover nothing, and
# small enough that its window's corners (float32) stay exact to a 16th of a pixel


def finite(array, name: str) -> np.ndarray:
    """`array` on the host; ValueError (one line, naming it) unless it holds finite reals (as
    float32 too: what the computations run in)."""
    value = np.asarray(array)
    if value.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be finite real numbers; got dtype {value.dtype}")
    if not finite32(value):
        raise ValueError(f"{name} must be finite (as float32); got non-finite values")
    return value


def check_key(key, name: str = "key") -> None:
    """ValueError unless `key` is one PRNG key: jax.random.key(seed), or a raw uint32 [2] key."""
    if isinstance(key, jax.Array | np.ndarray):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape == ():
                return
        elif key.dtype == np.uint32 and key.shape == (2,):
            return
    raise ValueError(f"{name} must be one PRNG key (jax.random.key(seed)); got {key!r:.60}")


def check_whole(name: str, value, lo: int, hi: float = math.inf) -> None:
    """ValueError (one line) unless `value` is an integer (not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        bound = f"in [{lo}, {hi}]" if hi != math.inf else f">= {lo}"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")


def check_points(points: np.ndarray, name: str = "points_NxPx2") -> None:
    """ValueError (one line) unless the concrete points are finite reals within MAX_COORD."""
    points = finite(points, name)
    if points.size and np.abs(points).max() > MAX_COORD:
        raise ValueError(
            f"{name} must lie within +-{MAX_COORD:g} (the canvas is [0, {CANVAS}]); got "
            f"{np.abs(points).max():g}"
        )


def check_rects(rects_Nx4, name: str = "rects_Nx4") -> None:
    """Shape check always (static); value check (finite, x0 < x1, y0 < y1) when concrete."""
    shape = np.shape(rects_Nx4)
    if len(shape) != 2 or shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] as (x0, y0, x1, y1); got {shape}")
    value = _concrete(rects_Nx4)
    if value is None:
        return
    value = finite(value, name)
    bad = np.flatnonzero((value[:, 0] >= value[:, 2]) | (value[:, 1] >= value[:, 3]))
    if bad.size:
        raise ValueError(
            f"{name} must have x0 < x1 and y0 < y1; row {bad[0]} is {value[bad[0]].tolist()}"
        )


MAX_GRID, MAX_SIZE = 64, 8192  # a window of 64 x 64 cells; an image of 8192^2 pixels (256 MB)


def check_window(cell: int, grid: int) -> None:
    """A point's window: grid x grid cells of cell pixels, whole numbers within bounds (a
    point's [grid * grid] values and its cells' areas must fit memory)."""
    check_whole("cell", cell, 1, MAX_SIZE)
    check_whole("grid", grid, 1, MAX_GRID)


def check_cell(size: int, cell: int, grid: int | None = None) -> None:
    check_whole("size", size, 1, MAX_SIZE)
    check_whole("cell", cell, 1, size)
    if size % cell:
        raise ValueError(f"cell must divide size; got size={size}, cell={cell}")
    if grid is not None:
        check_whole("grid", grid, 1, size // cell)


# ----------------------------------------------------------------------------- coverage
def _fractions(lo, cell, a, b):
    """Covered fraction of each interval [lo, lo + cell) by [a, b): an exact overlap length."""
    return jnp.clip(jnp.minimum(lo + cell, b) - jnp.maximum(lo, a), 0.0) / cell


@functools.partial(jax.jit, static_argnames=("size", "cell"))
def _downsample(rects_Nx4, size, cell):
    rects_Nx4 = jnp.asarray(rects_Nx4, jnp.float32)
    lo_W = jnp.arange(size // cell, dtype=jnp.float32) * cell
    x0, y0, x1, y1 = (rects_Nx4[:, i, None] for i in range(4))
    fx_NxW = _fractions(lo_W, cell, x0, x1)
    fy_NxH = _fractions(lo_W, cell, y0, y1)
    return fy_NxH[:, :, None] * fx_NxW[:, None, :]


def downsample(rects_Nx4, *, size: int = CANVAS, cell: int = CELL):
    """[N, size // cell, size // cell]: the exact fraction of each cell x cell block covered."""
    check_rects(rects_Nx4)
    check_cell(size, cell)
    return _downsample(rects_Nx4, size, cell)


def rasterise(rects_Nx4, *, size: int = CANVAS):
    """[N, size, size] full-resolution image; border pixels carry their exact coverage."""
    return downsample(rects_Nx4, size=size, cell=1)


@functools.partial(jax.jit, static_argnames=("cell", "grid"))
def _coverage(rects_Nx4, points_NxPx2, cell, grid):
    rects_Nx4 = jnp.asarray(rects_Nx4, jnp.float32)
    points_NxPx2 = jnp.asarray(points_NxPx2, jnp.float32)
    offsets_G = (jnp.arange(grid, dtype=jnp.float32) - grid / 2) * cell
    x0, y0, x1, y1 = (rects_Nx4[:, None, i, None] for i in range(4))
    fx_NxPxG = _fractions(points_NxPx2[..., 0:1] + offsets_G, cell, x0, x1)
    fy_NxPxG = _fractions(points_NxPx2[..., 1:2] + offsets_G, cell, y0, y1)
    n, p = points_NxPx2.shape[:2]
    return (fy_NxPxG[..., :, None] * fx_NxPxG[..., None, :]).reshape(n, p, grid * grid)


def coverage(rects_Nx4, points_NxPx2, *, cell: int = CELL, grid: int = GRID):
    """[N, P, grid*grid]: covered fractions of the grid x grid cells centred on each point.

    Cell (r, c) of point (px, py) is x in [px - grid*cell/2 + cell*c, ... + cell), same for y
    with r; entries are row-major, so at the lattice points they equal downsample's patches.

    Args:
        rects_Nx4: one rectangle (x0, y0, x1, y1) per row, x0 < x1 and y0 < y1, canvas pixels.
        points_NxPx2: P points (x, y) per rectangle, finite.
        cell: a cell's side in pixels (16).
        grid: cells per side of each point's window (4).

    Returns:
        [N, P, grid*grid] float32: the exact fraction of each cell the rectangle covers.

    Raises:
        ValueError: one line naming the argument, for a bad shape or value, before compute.
    """
    check_rects(rects_Nx4)
    shape = np.shape(points_NxPx2)
    if len(shape) != 3 or shape[2] != 2 or shape[0] != np.shape(rects_Nx4)[0]:
        raise ValueError(
            f"points_NxPx2 must have shape [N, P, 2] with N = {np.shape(rects_Nx4)[0]} "
            f"(the number of rects); got {shape}"
        )
    points = _concrete(points_NxPx2)
    if points is not None:
        check_points(points)
    check_window(cell, grid)
    return _coverage(rects_Nx4, points_NxPx2, cell, grid)


def lattice_points(*, size: int = CANVAS, cell: int = CELL, grid: int = GRID):
    """[L, 2] the grid task's token points (x, y), row-major: patch (i, j) at L index i*n + j."""
    check_cell(size, cell, grid)
    n = size // cell - grid + 1
    centres = cell * grid / 2 + cell * np.arange(n, dtype=np.float32)
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return jnp.asarray(np.stack([xs.ravel(), ys.ravel()], axis=-1))


# ----------------------------------------------------------------------------- points
def point_bounds(*, size: int = CANVAS, cell: int = CELL, grid: int = GRID):
    """(lo, hi): the region where a point's grid x grid window lies inside the canvas.

    It is the square spanned by the grid task's lattice points (32..224 by default).
    """
    margin = cell * grid / 2
    return margin, size - margin


def window_has_corner(corners_NxCx2, points_NxPx2, *, cell=CELL, grid=GRID):
    """[N, P] bool: the point's grid x grid window (half-open) contains one of the corners."""
    half = cell * grid / 2
    d_NxPxCx2 = jnp.asarray(corners_NxCx2)[:, None] - points_NxPx2[:, :, None]
    inside = (d_NxPxCx2 >= -half) & (d_NxPxCx2 < half)
    return jnp.any(jnp.all(inside, axis=-1), axis=-1)


# ----------------------------------------------------------------------------- squares
def enumerate_squares(n: int = 8, min_side: int = 2, max_side: int = 5):
    """Every axis-aligned integer square with side in [min_side, max_side] on an n x n grid.

    Returns (images [M, n, n] int32 with 1 inside, squares [M, 4] as (x0, y0, x1, y1)),
    ordered by side, then row, then column; sides 2-5 on 8 x 8 give M = 126.
    """
    if not 1 <= min_side <= max_side <= n:
        raise ValueError(
            f"need 1 <= min_side <= max_side <= n; got min_side={min_side}, "
            f"max_side={max_side}, n={n}"
        )
    squares = [
        (x, y, x + s, y + s)
        for s in range(min_side, max_side + 1)
        for y in range(n - s + 1)
        for x in range(n - s + 1)
    ]
    squares = np.array(squares, np.int32)
    idx = np.arange(n)
    inside_x = (idx >= squares[:, 0, None]) & (idx < squares[:, 2, None])
    inside_y = (idx >= squares[:, 1, None]) & (idx < squares[:, 3, None])
    images = (inside_y[:, :, None] & inside_x[:, None, :]).astype(np.int32)
    return jnp.asarray(images), jnp.asarray(squares)


def num_squares(n: int, min_side: int, max_side: int) -> int:
    """How many squares enumerate_squares returns, without building them."""
    return sum((n - s + 1) ** 2 for s in range(min_side, max_side + 1))
