"""Rectangle geometry on the canvas: samplers, exact coverage, downsampling, squares.

Pure jnp with explicit keys, jit/vmap friendly; conventions are those of DESIGN.md.
"""

from __future__ import annotations

import functools

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


def check_rects(rects_Nx4, name: str = "rects_Nx4") -> None:
    """Shape check always (static); value check (finite, x0 < x1, y0 < y1) when concrete."""
    shape = jnp.shape(rects_Nx4)
    if len(shape) != 2 or shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] as (x0, y0, x1, y1); got {shape}")
    value = _concrete(rects_Nx4)
    if value is None:
        return
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite; got non-finite values")
    bad = np.flatnonzero((value[:, 0] >= value[:, 2]) | (value[:, 1] >= value[:, 3]))
    if bad.size:
        raise ValueError(
            f"{name} must have x0 < x1 and y0 < y1; row {bad[0]} is {value[bad[0]].tolist()}"
        )


def _check_cell(size: int, cell: int, grid: int | None = None) -> None:
    if cell <= 0 or size <= 0 or size % cell:
        raise ValueError(f"cell must divide size with both > 0; got size={size}, cell={cell}")
    if grid is not None and not 0 < grid <= size // cell:
        raise ValueError(f"grid must be in [1, size // cell = {size // cell}]; got {grid}")


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
    _check_cell(size, cell)
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
    """
    check_rects(rects_Nx4)
    shape = jnp.shape(points_NxPx2)
    if len(shape) != 3 or shape[2] != 2 or shape[0] != jnp.shape(rects_Nx4)[0]:
        raise ValueError(
            f"points_NxPx2 must have shape [N, P, 2] with N = {jnp.shape(rects_Nx4)[0]} "
            f"(the number of rects); got {shape}"
        )
    if cell <= 0 or grid <= 0:
        raise ValueError(f"cell and grid must be > 0; got cell={cell}, grid={grid}")
    return _coverage(rects_Nx4, points_NxPx2, cell, grid)


def lattice_points(*, size: int = CANVAS, cell: int = CELL, grid: int = GRID):
    """[L, 2] the grid task's token points (x, y), row-major: patch (i, j) at L index i*n + j."""
    _check_cell(size, cell, grid)
    n = size // cell - grid + 1
    centres = cell * grid / 2 + cell * np.arange(n, dtype=np.float32)
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return jnp.asarray(np.stack([xs.ravel(), ys.ravel()], axis=-1))


# ----------------------------------------------------------------------------- rectangles
def side_range(min_side: float, max_side: float, aspect: tuple[float, float] | None):
    """The width interval from which sample_rects draws; every width in it admits a height."""
    if aspect is None:
        return min_side, max_side
    lo, hi = aspect
    return max(min_side, min_side / hi), min(max_side, max_side / lo)


def check_rect_sampler(size, min_side, max_side, aspect, contains_center) -> None:
    if not 0 < min_side <= max_side <= size:
        raise ValueError(
            f"need 0 < min_side <= max_side <= size; got min_side={min_side}, "
            f"max_side={max_side}, size={size}"
        )
    if aspect is not None:
        if len(aspect) != 2 or not 0 < aspect[0] <= aspect[1]:
            raise ValueError(f"aspect must be (lo, hi) with 0 < lo <= hi; got {aspect}")
        w_lo, w_hi = side_range(min_side, max_side, aspect)
        if w_lo > w_hi:
            raise ValueError(
                f"aspect={tuple(aspect)} admits no rectangle with sides in [{min_side}, {max_side}]"
            )
    if contains_center and min_side <= 0:
        raise ValueError("contains_center needs min_side > 0")


def sample_rects(
    key,
    n: int,
    *,
    size: int = CANVAS,
    min_side: float = 32.0,
    max_side: float = 192.0,
    aspect: tuple[float, float] | None = None,
    contains_center: bool = False,
):
    """[n, 4] rectangles wholly inside the size x size canvas, with a closed-form density.

    The width is uniform on side_range(...); given the width, the height is uniform on the
    sides allowed by [min_side, max_side] and the aspect (height / width) range; the position
    is uniform over placements inside the canvas (that contain its centre, if asked).
    """
    check_rect_sampler(size, min_side, max_side, aspect, contains_center)
    kw, kh, kx, ky = jax.random.split(key, 4)
    w_lo, w_hi = side_range(min_side, max_side, aspect)
    w = jax.random.uniform(kw, (n,), minval=w_lo, maxval=w_hi)
    if aspect is None:
        h_lo, h_hi = jnp.full((n,), min_side), jnp.full((n,), max_side)
    else:
        h_lo = jnp.maximum(min_side, w * aspect[0])
        h_hi = jnp.minimum(max_side, w * aspect[1])
    h = h_lo + (h_hi - h_lo) * jax.random.uniform(kh, (n,))

    def place(k, side):
        lo, hi = jnp.zeros_like(side), size - side
        if contains_center:
            lo, hi = jnp.maximum(lo, size / 2 - side), jnp.minimum(hi, size / 2)
        return lo + (hi - lo) * jax.random.uniform(k, side.shape)

    x0, y0 = place(kx, w), place(ky, h)
    return jnp.stack([x0, y0, x0 + w, y0 + h], axis=-1)


# ----------------------------------------------------------------------------- points
POINT_SAMPLERS = ("uniform", "edges", "nocorners")


def point_bounds(*, size: int = CANVAS, cell: int = CELL, grid: int = GRID):
    """(lo, hi): the region where a point's grid x grid window lies inside the canvas.

    It is the square spanned by the grid task's lattice points (32..224 by default).
    """
    margin = cell * grid / 2
    return margin, size - margin


def sample_points_uniform(key, n: int, p: int, *, size=CANVAS, cell=CELL, grid=GRID):
    """[n, p, 2] points uniform over point_bounds."""
    lo, hi = point_bounds(size=size, cell=cell, grid=grid)
    return jax.random.uniform(key, (n, p, 2), minval=lo, maxval=hi)


def sample_points_edges(key, rects_Nx4, p: int, *, jitter=0.0, size=CANVAS, cell=CELL, grid=GRID):
    """[N, p, 2] points uniform along each rectangle's perimeter ("junction" sampling).

    `jitter` adds Gaussian noise of that std (pixels); points are clipped to point_bounds,
    so edges outside the bounds contribute points on the bounds' border.
    """
    rects_Nx4 = jnp.asarray(rects_Nx4, jnp.float32)
    kt, kj = jax.random.split(key)
    x0, y0, x1, y1 = (rects_Nx4[:, i, None] for i in range(4))
    w, h = x1 - x0, y1 - y0
    t = jax.random.uniform(kt, (rects_Nx4.shape[0], p)) * 2 * (w + h)
    # walk the perimeter: top edge, right edge, bottom edge (backwards), left edge (backwards)
    x = jnp.select([t < w, t < w + h, t < 2 * w + h], [x0 + t, x1, x1 - (t - w - h)], x0)
    y = jnp.select([t < w, t < w + h, t < 2 * w + h], [y0, y0 + (t - w), y1], y1 - (t - 2 * w - h))
    points = jnp.stack([x, y], axis=-1) + jitter * jax.random.normal(kj, (*t.shape, 2))
    lo, hi = point_bounds(size=size, cell=cell, grid=grid)
    return jnp.clip(points, lo, hi)


def window_has_corner(rects_Nx4, points_NxPx2, *, cell=CELL, grid=GRID):
    """[N, P] bool: the point's grid x grid window (half-open) contains a rectangle corner."""
    half = cell * grid / 2
    corners_Nx4x2 = jnp.asarray(rects_Nx4)[:, jnp.array([[0, 1], [2, 1], [0, 3], [2, 3]])]
    d_NxPx4x2 = corners_Nx4x2[:, None] - points_NxPx2[:, :, None]
    inside = (d_NxPx4x2 >= -half) & (d_NxPx4x2 < half)
    return jnp.any(jnp.all(inside, axis=-1), axis=-1)


def sample_points_nocorners(key, rects_Nx4, p: int, *, size=CANVAS, cell=CELL, grid=GRID):
    """[N, p, 2] points uniform over point_bounds minus the windows that hold a corner.

    Exact rejection sampling: rejected points are redrawn until none is left. The 4 corner
    windows cover at most 4 * (cell*grid)^2 of the (size - cell*grid)^2 region (45 % by
    default), so few rounds are needed.
    """
    rects_Nx4 = jnp.asarray(rects_Nx4, jnp.float32)
    lo, hi = point_bounds(size=size, cell=cell, grid=grid)
    if 4 * (cell * grid) ** 2 >= (hi - lo) ** 2:
        raise ValueError(
            f"nocorners sampling needs the corner windows to leave room: size={size}, "
            f"cell={cell}, grid={grid} leave none"
        )
    shape = (rects_Nx4.shape[0], p, 2)

    def cond(state):
        return jnp.any(state[2])

    def body(state):
        key, points, bad = state
        key, sub = jax.random.split(key)
        fresh = jax.random.uniform(sub, shape, minval=lo, maxval=hi)
        points = jnp.where(bad[..., None], fresh, points)
        return key, points, window_has_corner(rects_Nx4, points, cell=cell, grid=grid)

    init = (key, jnp.zeros(shape), jnp.ones(shape[:2], bool))
    return jax.lax.while_loop(cond, body, init)[1]


def sample_points(key, rects_Nx4, p: int, sampler: str = "uniform", **kwargs):
    """Dispatch to a point sampler by name (one of POINT_SAMPLERS)."""
    if sampler == "uniform":
        return sample_points_uniform(key, jnp.shape(rects_Nx4)[0], p, **kwargs)
    if sampler == "edges":
        return sample_points_edges(key, rects_Nx4, p, **kwargs)
    if sampler == "nocorners":
        return sample_points_nocorners(key, rects_Nx4, p, **kwargs)
    raise ValueError(f"sampler must be one of {POINT_SAMPLERS}; got {sampler!r}")


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
