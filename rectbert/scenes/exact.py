"""A family's exact coverage as one compiled program: checked first (Scene.check), run in
chunks of bounded size, and the exact areas of polygons and of a region given by its boundary."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.geometry import polygons, shapes


def compiled(coverage):
    """A family's coverage checked (Scene.check), then run as one compiled program (the scene
    and the sizes static): polygon clipping is many small operations, slow one by one. A large
    batch runs in chunks of the family's chunk_pairs (shape, point) pairs (in_chunks)."""
    fn = jax.jit(coverage, static_argnums=0, static_argnames=("cell", "grid"))

    @functools.wraps(coverage)
    def checked(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        self.check(params_NxD, points_NxPx2)
        shapes.check_window(cell, grid)
        run = functools.partial(fn, self, cell=cell, grid=grid)
        return in_chunks(run, params_NxD, points_NxPx2, self.chunk_pairs)

    return checked


def in_chunks(fn, params_NxD, points_NxPx2, pairs: int):
    """fn(params_NxD, points_NxPx2) -> [N, P, ...] (each row of shape and point on its own), at
    most `pairs` (shape, point) pairs per call when N x P is more (not inside a jit): blocks
    of rows, and of points when one row has more. Every call has the same shape (the last
    block padded with copies of the last row or point, then dropped): one compilation."""
    n, p = np.shape(points_NxPx2)[:2]
    if n * p <= pairs or _tracing(params_NxD, points_NxPx2):
        return fn(params_NxD, points_NxPx2)
    cols = min(p, max(1, pairs))
    rows = max(1, pairs // cols)
    params, points = np.asarray(params_NxD), np.asarray(points_NxPx2)
    params = np.pad(params, ((0, -n % rows), (0, 0)), mode="edge")
    points = np.pad(points, ((0, -n % rows), (0, -p % cols), (0, 0)), mode="edge")

    def block(i, j):  # one call's work at a time: the memory stays bounded
        return fn(params[i : i + rows], points[i : i + rows, j : j + cols]).block_until_ready()

    blocks = [[block(i, j) for j in range(0, p, cols)] for i in range(0, n, rows)]
    return jnp.concatenate([jnp.concatenate(b, 1) for b in blocks])[:n, :p]


def _tracing(*arrays) -> bool:
    """Whether these are traced, or this runs inside a jit trace (there jnp gives a tracer
    even of a constant)."""
    return any(isinstance(a, jax.core.Tracer) for a in (*arrays, jnp.zeros(())))


def polygon_coverage(polys_NxSxVx2, signs_S, points_NxPx2, cell, grid, clip=True):
    """[N, P, grid*grid]: sum over s of signs_S[s] x the area of polygon s inside each cell of
    each point's window, as a fraction of the cell (one polygon, or inclusion-exclusion;
    clip=False for a partial sum). Polygons of either orientation."""
    polys = jnp.asarray(polys_NxSxVx2, jnp.float32)
    n, s, v = polys.shape[:3]
    a, b, turn = polygons.ring_segments(polys)  # [N, S, V, 2] twice, [N, S] orientation
    weight = jnp.broadcast_to((turn * jnp.asarray(signs_S, jnp.float32))[..., None], (n, s, v))
    return boundary_coverage(
        a.reshape(n, s * v, 2),
        b.reshape(n, s * v, 2),
        weight.reshape(n, s * v),
        points_NxPx2,
        cell,
        grid,
        clip,
    )


def boundary_coverage(
    a_NxSx2, b_NxSx2, weight_NxS, points_NxPx2, cell, grid, clip=True, *, counts_N=None
):
    """[N, P, grid*grid]: the covered fraction of each cell of each point's window by the
    region whose counter-clockwise boundary is the directed segments a -> b (each weighted;
    polygons.window_area), clipped to [0, 1] unless clip=False.

    counts_N (optional, may be traced): row i's segments are its first counts_N[i], the rest
    padding (left out). A set of drawings is padded to its largest one's segment count S;
    without counts every row pays for all S segments, with them each row pays for about its
    own count (polygons.window_area_counted), with the same result to float32 rounding."""
    corner = jnp.asarray(points_NxPx2, jnp.float32) - grid * cell / 2
    if counts_N is None:
        area = polygons.window_area(a_NxSx2, b_NxSx2, weight_NxS, corner, cell, grid)
    else:
        area = polygons.window_area_counted(
            a_NxSx2, b_NxSx2, weight_NxS, counts_N, corner, cell, grid
        )
    total = area / cell**2
    return jnp.clip(total, 0.0, 1.0) if clip else total
