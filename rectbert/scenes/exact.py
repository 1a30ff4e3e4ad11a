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

    Without counts, in a batch of polygons.TOUCHED_PAIRS (shape, point) pairs or more, only the
    windows some segment touches are computed (polygons.on_touched: the others are exactly
    0; a traced loop: that path is not reverse-differentiable). counts_N (optional, may be
    traced): row i's segments are its
    first counts_N[i], the rest padding (left out). A set of drawings is padded to its
    largest one's segment count S; without counts every row pays for all S segments, with
    them each row pays for about its own count (polygons.window_area_counted), with the same
    result to float32 rounding."""
    corner = jnp.asarray(points_NxPx2, jnp.float32) - grid * cell / 2
    pairs = corner.shape[0] * corner.shape[1]
    if counts_N is None and pairs >= polygons.TOUCHED_PAIRS:  # untouched windows are 0
        area = polygons.on_touched(
            polygons.window_area, a_NxSx2, b_NxSx2, weight_NxS, corner, cell, grid
        )
    elif counts_N is None:
        area = polygons.window_area(a_NxSx2, b_NxSx2, weight_NxS, corner, cell, grid)
    else:
        area = polygons.window_area_counted(
            a_NxSx2, b_NxSx2, weight_NxS, counts_N, corner, cell, grid
        )
    total = area / cell**2
    return jnp.clip(total, 0.0, 1.0) if clip else total


def union_boundary(quads_NxKx4x2, used_NxK, origin_Nx2):
    """The boundary of the union of K convex quadrilaterals (counter-clockwise, in the (x, y)
    sense of polygons.signed_area; an unused one left out) as directed segments, region on the
    left: ([N, S, 2] starts, [N, S, 2] ends, [N, S] weights 1, or 0 for an unused quad's),
    S = 4 K x K. Computed relative to origin_Nx2 (a point near the shapes: float32 digits).

    Each edge loses its parts inside the other quads (an interval of the edge per convex quad,
    Cyrus-Beck); of the complement of those K - 1 intervals (at most K gaps, sorted by start)
    each gap is a segment. A point on another quad's boundary counts as inside it: edges two
    quads share in opposite directions (a straight bar through a junction) both go, as they
    cancel. Edges shared in the same direction (two quads alike: probability 0 under the
    priors that use this) would both go."""
    quads = jnp.asarray(quads_NxKx4x2, jnp.float32) - jnp.asarray(origin_Nx2)[:, None, None]
    used = jnp.asarray(used_NxK, bool)
    k = quads.shape[1]
    a, b = quads, jnp.roll(quads, -1, -2)  # edge l of quad i: a[:, i, l] -> b[:, i, l]

    if k > 1:
        others = np.array([[m for m in range(k) if m != i] for i in range(k)])  # [k, k-1]
        q, d = a[:, others], (b - a)[:, others]  # [N, k, k-1, 4 (m's edges), 2]

        def side(pt):  # cross(d, pt - q) >= 0 inside; pt [N, k, 4 (i's edges), 2]
            rel = pt[:, :, :, None, None, :] - q[:, :, None]  # [N, k, 4, k-1, 4, 2]
            return d[:, :, None, ..., 0] * rel[..., 1] - d[:, :, None, ..., 1] * rel[..., 0]

        sa, sb = side(a), side(b)  # [N, k, 4, k-1, 4]
        den = sa - sb
        t = sa / jnp.where(den == 0, 1.0, den)
        lower = jnp.max(jnp.where(den < 0, t, 0.0), -1)
        upper = jnp.min(jnp.where(den > 0, t, 1.0), -1)
        never = jnp.any((den == 0) & (sa < 0), -1)
        t_in, t_out = jnp.maximum(lower, 0.0), jnp.minimum(upper, 1.0)  # [N, k, 4, k-1]
        empty = never | (t_in >= t_out) | ~used[:, others][:, :, None, :]
        t_in, t_out = jnp.where(empty, 0.0, t_in), jnp.where(empty, 0.0, t_out)  # covers none
        order = jnp.argsort(t_in, -1)
        t_in = jnp.take_along_axis(t_in, order, -1)
        reach = jax.lax.cummax(jnp.take_along_axis(t_out, order, -1), axis=t_out.ndim - 1)
        starts = jnp.concatenate([jnp.zeros_like(t_in[..., :1]), reach], -1)
        ends = jnp.concatenate([t_in, jnp.ones_like(t_in[..., :1])], -1)  # [N, k, 4, k]
    else:
        starts, ends = jnp.zeros((*a.shape[:3], 1)), jnp.ones((*a.shape[:3], 1))
    starts = jnp.clip(starts, 0.0, 1.0)
    ends = jnp.maximum(jnp.clip(ends, 0.0, 1.0), starts)
    step = (b - a)[..., None, :]
    j = jnp.asarray(origin_Nx2, jnp.float32)[:, None, None, None]
    seg_a = j + a[..., None, :] + starts[..., None] * step  # [N, k, 4, k, 2]
    seg_b = j + a[..., None, :] + ends[..., None] * step
    weight = jnp.broadcast_to(used[:, :, None, None], starts.shape).astype(jnp.float32)
    n, s = quads.shape[0], 4 * k * k  # an empty batch too (no -1 to infer)
    return seg_a.reshape(n, s, 2), seg_b.reshape(n, s, 2), weight.reshape(n, s)


def boundary_vertices(a_NxSx2, b_NxSx2, weight_NxS):
    """[N, S, 2] the start of each boundary segment of positive length and weight (a vertex
    of the region), NaN for the others."""
    on = (weight_NxS > 0) & jnp.any(a_NxSx2 != b_NxSx2, -1)
    return jnp.where(on[..., None], a_NxSx2, jnp.nan)
