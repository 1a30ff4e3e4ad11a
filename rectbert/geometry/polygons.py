"""Exact areas of polygons inside axis-aligned cells, for scenes that are not axis-aligned
rectangles: fixed-size arrays, no Python loops over data, so they jit and vmap.

A polygon is [..., V, 2] vertices (x, y) in order, either orientation; repeated vertices are
allowed (zero-length edges add nothing), which is how polygons of different vertex counts
share one array shape and how an empty polygon is written (all vertices equal).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _mean_relu(ya, yb, c, half_inv=None):
    """E[max(Y - c, 0)] for Y uniform between ya and yb (exact, and stable when ya == yb);
    half_inv, 1 / (2 |yb - ya|), may be given where many c share one segment."""
    hi, lo = jnp.maximum(ya, yb), jnp.minimum(ya, yb)
    if half_inv is None:
        half_inv = 0.5 / jnp.maximum(hi - lo, 1e-30)
    p, q = hi - c, c - lo
    crossing = jnp.where(p * q > 0, p * p * half_inv, 0.0)
    return jnp.where(lo >= c, (ya + yb) / 2 - c, jnp.where(hi <= c, 0.0, crossing))


def signed_area(poly_Vx2):
    """[...] the shoelace area: positive when the vertices turn counter-clockwise (y up)."""
    centred = poly_Vx2 - jnp.mean(poly_Vx2, -2, keepdims=True)  # fewer digits lost
    x, y = centred[..., 0], centred[..., 1]
    return 0.5 * jnp.sum(x * jnp.roll(y, -1, -1) - jnp.roll(x, -1, -1) * y, axis=-1)


def box_area(poly_Vx2, x0, y0, x1, y1):
    """[...] the area of a simple polygon inside the box [x0, x1] x [y0, y1] (broadcast).

    Along each edge, the vertical extent of the box below the edge, clamp(y, y0, y1) - y0, is
    integrated over the part of the edge above [x0, x1]; summed round the polygon this is the
    area of every vertical slice of polygon and box (Green's theorem), exactly, for any
    simple polygon. The integral of a clamped linear function has a closed form."""
    a = poly_Vx2
    b = jnp.roll(poly_Vx2, -1, -2)
    x0, y0, x1, y1 = (jnp.asarray(v, a.dtype)[..., None] for v in (x0, y0, x1, y1))
    # coordinates relative to the box's corner: float32 keeps its digits for the cell
    xa, ya = a[..., 0] - x0, a[..., 1] - y0
    xb, yb = b[..., 0] - x0, b[..., 1] - y0
    w, h = x1 - x0, y1 - y0
    dx = xb - xa
    slope = (yb - ya) / jnp.where(dx == 0, 1.0, dx)
    ca, cb = jnp.clip(xa, 0, w), jnp.clip(xb, 0, w)  # the edge's part above the box
    ya_c, yb_c = ya + (ca - xa) * slope, ya + (cb - xa) * slope
    below = _mean_relu(ya_c, yb_c, 0.0) - _mean_relu(ya_c, yb_c, h)
    total = -jnp.sum((cb - ca) * below, axis=-1)
    return total * jnp.sign(signed_area(poly_Vx2))


def clip(poly_Vx2, normal_2, offset):
    """[..., V + 1, 2] the convex polygon cut to the half-plane normal . p <= offset
    (Sutherland-Hodgman with fixed sizes: kept vertices first, the last repeated after)."""
    v = poly_Vx2.shape[-2]
    nxt = jnp.roll(poly_Vx2, -1, -2)
    s_a = jnp.sum(poly_Vx2 * normal_2[..., None, :], -1) - offset[..., None]
    s_b = jnp.sum(nxt * normal_2[..., None, :], -1) - offset[..., None]
    # of a run of equal vertices only the last is kept (padding repeats vertices; a cut can
    # then never need more than one slot more than the polygon has distinct vertices)
    repeat = jnp.all(poly_Vx2 == nxt, -1) & (jnp.arange(v) < v - 1)
    inside = (s_a <= 0) & ~repeat
    crosses = (s_a < 0) & (s_b > 0) | (s_a > 0) & (s_b < 0)
    t = s_a / jnp.where(crosses, s_a - s_b, 1.0)
    cut = poly_Vx2 + t[..., None] * (nxt - poly_Vx2)
    # candidates in order: vertex i (if inside), then the crossing on edge i (if any)
    cand = jnp.stack([poly_Vx2, cut], -2).reshape(*poly_Vx2.shape[:-2], 2 * v, 2)
    keep = jnp.stack([inside, crosses], -1).reshape(*poly_Vx2.shape[:-2], 2 * v)
    # compact the kept candidates to the front: candidate i goes to slot cumsum(keep)[i] - 1,
    # and every slot past the last kept one repeats it (a one-hot product: no sort to compile)
    slot = jnp.arange(v + 1)
    n = jnp.sum(keep, -1, keepdims=True)
    dest = jnp.minimum(jnp.cumsum(keep, -1), n) - 1  # [..., 2v]
    fill = jnp.where(slot < n, slot, n - 1)  # [..., v + 1]: the slot each output copies
    pick = keep[..., None, :] & (dest[..., None, :] == fill[..., :, None])  # [..., v + 1, 2v]
    kept = jnp.sum(jnp.where(pick[..., None], cand[..., None, :, :], 0.0), -2)  # exact
    return jnp.where((n > 0)[..., None], kept, 0.0)  # nothing inside: an empty polygon


def intersect(poly_Vx2, convex_Cx2):
    """[..., V + C, 2] a convex polygon cut by every edge of a convex polygon (either
    orientation, may be empty or repeat vertices) = their intersection."""
    # float32 keeps its digits near the origin: work relative to the clipping polygon's mean
    origin = jnp.mean(convex_Cx2, -2, keepdims=True)
    convex, out = convex_Cx2 - origin, poly_Vx2 - origin
    edge = jnp.roll(convex, -1, -2) - convex
    # unit outward normals for a counter-clockwise polygon; flipped for a clockwise one
    turn = jnp.sign(signed_area(convex))[..., None, None]
    length = jnp.linalg.norm(edge, axis=-1, keepdims=True)
    normal = jnp.stack([edge[..., 1], -edge[..., 0]], -1) * turn / jnp.maximum(length, 1e-30)
    offset = jnp.sum(normal * convex, -1)
    empty = turn[..., 0, 0] == 0  # no area (an empty polygon, a segment): nothing is left
    degenerate = length[..., 0] == 0  # a repeated vertex: no constraint
    offset = jnp.where(degenerate, 1.0, offset)
    # each cut adds at most one vertex: V + C slots hold every step (the input padded by
    # repeating its last vertex); one compiled cut, looped over the C edges
    size = out.shape[-2] + convex.shape[-2]
    out = jnp.concatenate([out, jnp.repeat(out[..., -1:, :], convex.shape[-2], -2)], -2)

    def cut(poly, edge):
        return clip(poly, *edge)[..., :size, :], None

    edges = (jnp.moveaxis(normal, -2, 0), jnp.moveaxis(offset, -1, 0))
    out, _ = jax.lax.scan(cut, out, edges)
    return jnp.where(empty[..., None, None], 0.0, out + origin)


def ring_segments(poly_Vx2):
    """([..., V, 2] starts, [..., V, 2] ends, [...] orientation) of a polygon's edges: the
    orientation is +1 counter-clockwise (y up), -1 clockwise, 0 for no area."""
    return poly_Vx2, jnp.roll(poly_Vx2, -1, -2), jnp.sign(signed_area(poly_Vx2))


def window_area(a_NxSx2, b_NxSx2, weight_NxS, corner_NxPx2, cell, grid):
    """[N, P, grid*grid] sum over s of weight_s x the area enclosed left of the directed
    segments a_s -> b_s inside each cell of the grid x grid window of cell-pixel cells whose
    lower-left corner is corner_p (row-major: row = y).

    The segments are a region's whole boundary, counter-clockwise (the region on the left,
    holes clockwise): e.g. every edge of a ring (ring_segments), or the outer parts of
    overlapping rings' edges (the boundary of their union). As box_area, by Green's theorem:
    F(X, Y) = the area in [x_L, X] x [y_B, Y], the window's lower-left corner-anchored
    rectangle, is -sum over segments of their x-extent inside [x_L, X] times the mean of
    clamp(y, y_B, Y) - y_B along it. The grid x grid corner integrals F(X_i, Y_j) give every
    cell by differences: grid clips and grid x (grid + 1) clamped means per segment, where 16
    box integrals take 16 clips and 32 means. Every row pays for all S segments, padding
    included: window_area_counted pays for each row's own."""
    f = _corner_integrals(a_NxSx2, b_NxSx2, weight_NxS, corner_NxPx2, cell, grid)
    return _cells(f, grid)


def _corner_integrals(a_NxSx2, b_NxSx2, weight_NxS, corner_NxPx2, cell, grid):
    """[N, P, grid(X), grid(Y)] the corner integrals F(X_i, Y_j) of window_area, summed over
    these S segments (F is a sum over segments: chunks of them add up).

    Laid out [N, P, X, Y, S], segments innermost: the sum over them runs along contiguous
    memory, which XLA's CPU code vectorises, and each (segment, X)'s division is taken once
    for its grid + 1 thresholds (_clamped_means), not once per threshold. Against S outside
    X and Y, the tokens equal: the oracle 1.6-2.1x faster on the 26 capitals, 1.3-1.5x on
    the 30 kanji (one run each of benchmarks/oracle_speed.py on a 2-core CPU, whose times
    move by 20 % and more between runs); slower than before for a handful of segments (8)."""
    dt = jnp.float32
    lo = jnp.asarray(corner_NxPx2, dt)[:, :, None, :]  # [N, P, 1, 2]
    a = jnp.asarray(a_NxSx2, dt)[:, None] - lo  # [N, P, S, 2], relative: float32 digits
    b = jnp.asarray(b_NxSx2, dt)[:, None] - lo
    xa, ya, xb, yb = (v[:, :, None, :] for v in (a[..., 0], a[..., 1], b[..., 0], b[..., 1]))
    dx = xb - xa  # [N, P, 1, S]
    slope = (yb - ya) / jnp.where(dx == 0, 1.0, dx)
    ends = cell * jnp.arange(1, grid + 1, dtype=dt)[:, None]  # [X, 1]: X_i - x_L, Y_j - y_B
    ca, cb = jnp.clip(xa, 0, ends), jnp.clip(xb, 0, ends)  # [N, P, X, S]
    ya_c = ya + (ca - xa) * slope
    yb_c = yb + (cb - xb) * slope
    means = _clamped_means(ya_c[:, :, :, None], yb_c[:, :, :, None], ends)  # [N, P, X, Y+1, S]
    below = means[:, :, :, :1] - means[:, :, :, 1:]  # [N, P, X, Y, S]
    w = jnp.asarray(weight_NxS, dt)[:, None, None, None, :]
    return -jnp.sum(w * (cb - ca)[:, :, :, None, :] * below, axis=-1)  # [N, P, X, Y]


def _clamped_means(ya, yb, ends_Yx1):
    """[..., Y + 1, S] _mean_relu(ya, yb, c) at c = 0 and at each of ends (ya, yb [..., 1, S]),
    its one division shared by every c."""
    c = jnp.concatenate([jnp.zeros((1, 1), ends_Yx1.dtype), ends_Yx1])  # [Y + 1, 1]
    half_inv = 0.5 / jnp.maximum(jnp.abs(yb - ya), 1e-30)
    return _mean_relu(ya, yb, c, half_inv)


def _cells(f_NxPxXxY, grid):
    """[N, P, grid*grid] each cell's area from the corner integrals, by differences."""
    f = jnp.pad(f_NxPxXxY, ((0, 0), (0, 0), (1, 0), (1, 0)))  # F = 0 on the left and bottom
    cells = f[:, :, 1:, 1:] - f[:, :, :-1, 1:] - f[:, :, 1:, :-1] + f[:, :, :-1, :-1]
    return jnp.swapaxes(cells, 2, 3).reshape(*cells.shape[:2], grid * grid)  # row = y


# The counted path's work: CHUNK segments of one row (shape) make an item, and each step of
# its loop takes ITEM_WORK // (P x CHUNK x grid x (grid + 1)) items (34 at P = 24 points and
# the default 4 x 4 window). At N = 64 shapes x 24 points, all at S = 2000 segments, that
# is about 3x faster than window_area on a 2-core CPU (benchmarks/coverage_cost.py: one
# step's intermediates stay in the caches, window_area's N x P x S x grid arrays do not),
# and its float32 sums are shorter (closer to the exact area: a sum over 2000 segments is
# off by ~8e-5 of a cell, over chunks of 64, ~2e-5); a step's memory is ITEM_WORK floats a
# live intermediate, whatever S. Measured on a CPU only: a GPU may want larger steps.
CHUNK = 64
ITEM_WORK = 2**20
DENSE_WORK = 2**20  # a batch whose window_area holds this many floats a live intermediate (N
# x P x S x grid x (grid + 1)) or fewer is faster computed whole, padding and all, than
# counted, where the padding is at most the set's mean drawing again (drawn.py): the oracle's
# slice moves judge a few shapes at a time. Padded / counted time on 328 segments (the 30
# kanji's padding; counts median ~200), `python -m benchmarks.coverage_cost --largest=328
# --median=200 --shapes=N --points=P`: 0.60-0.81 from 2 x 4 to 24 x 4 and 6 x 24 (0.05-0.9
# million floats), 0.86 at 12 x 24 (1.9 million), 1.24 at 24 x 24 (3.8 million). Half the
# crossing: the oracle maps its two replicas as one batch (vmap), which doubles the work.


@functools.partial(jax.jit, static_argnames=("cell", "grid", "chunk", "items"))
def window_area_counted(
    a_NxSx2, b_NxSx2, weight_NxS, counts_N, corner_NxPx2, cell, grid, *, chunk=CHUNK, items=0
):
    """window_area where row i's segments are its first counts_N[i] (those from counts_N[i]
    on are left out, whatever their weight): the work follows the rows' own counts, not S.

    A set of drawings is padded to its largest drawing's segment count, and window_area pays
    for every padding segment of every row. Here each row's segments are cut into chunks of
    `chunk` (its last one partly padding), a chunk of one row is an item, and the items of
    all rows, in row order, are taken `items` at a time (0: ITEM_WORK's worth) by a loop
    that runs ceil(sum of the rows' chunks / items) times: a traced trip count, so this
    holds under jit with traced counts (under vmap a loop runs to the batch's largest
    count: call it on the whole batch instead). Each step adds its items' corner integrals
    F (a sum over segments) to their rows' F, the cells are differenced out at the end. A
    step first sums its items row by row (a masked sum, not a scatter-add of repeated rows:
    that would add in no set order on a GPU), then adds one sum to each row: the result
    does not depend on the run. The same terms as window_area's, summed in another order:
    equal to float32 rounding. Memory: one step's items x P x chunk x grid x (grid + 1)
    floats, not S. Not differentiable in reverse mode (the loop's trip count is traced)."""
    dt = jnp.float32
    a, b = jnp.asarray(a_NxSx2, dt), jnp.asarray(b_NxSx2, dt)
    w, corner = jnp.asarray(weight_NxS, dt), jnp.asarray(corner_NxPx2, dt)
    n, s = w.shape
    p = corner.shape[1]
    if n * s * p == 0:
        return jnp.zeros((n, p, grid * grid), dt)
    c = max(1, min(chunk, s))
    pad = ((0, 0), (0, -s % c))
    a, b, w = jnp.pad(a, (*pad, (0, 0))), jnp.pad(b, (*pad, (0, 0))), jnp.pad(w, pad)
    counts = jnp.clip(jnp.asarray(counts_N, jnp.int32).reshape(n), 0, s)
    trips = -(-counts // c)  # [N] each row's chunks
    ends = jnp.cumsum(trips)  # row i's items are ends[i] - trips[i] .. ends[i] - 1
    g = items or max(1, ITEM_WORK // (p * c * grid * (grid + 1)))
    g = min(g, n * (a.shape[1] // c))  # never more than every row's every chunk
    slot = jnp.arange(g)

    def step(carry):
        k, f = carry
        t = k * g + slot  # [g] this step's items
        row = jnp.searchsorted(ends, t, side="right")  # n past the last item
        valid = row < n
        at = jnp.minimum(row, n - 1)
        seg = (t - ends[at] + trips[at])[:, None] * c + jnp.arange(c)  # [g, c]
        seg = jnp.where(valid[:, None], seg, 0)
        real = valid[:, None] & (seg < counts[at][:, None])
        w_g = jnp.where(real, w[at[:, None], seg], 0.0)
        f_g = _corner_integrals(
            a[at[:, None], seg], b[at[:, None], seg], w_g, corner[at], cell, grid
        )
        # the items of one row are consecutive: number the rows of this step 0, 1, ...
        local = jnp.cumsum(jnp.concatenate([jnp.zeros(1, bool), row[1:] != row[:-1]]))
        mine = (local[None, :] == slot[:, None])[..., None, None, None]  # [g(row), g(item)]
        sums = jnp.sum(jnp.where(mine, f_g[None], 0.0), 1)  # [g, P, X, Y] one a row
        target = jnp.full(g, n).at[local].set(row)  # a row no item has: n, dropped
        return k + 1, f.at[target].add(sums)

    steps = -(-ends[-1] // g)
    f0 = jnp.zeros((n + 1, p, grid, grid), dt)
    f = jax.lax.while_loop(lambda carry: carry[0] < steps, step, (0, f0))[1]
    return _cells(f[:n], grid)


BELOW = 1e-2  # px: a segment wholly this far under a window adds nothing to its integrals
# (its clamped heights are 0; the margin covers the rounding of the clipped ends' heights)


def touched(a_NxSx2, b_NxSx2, weight_NxS, corner_NxPx2, side):
    """[N, P] whether any segment of row n can add to point p's window_area, the square
    [corner, corner + side]^2: one whose x-extent meets the window's and that is not wholly
    under it. Every other term of window_area is exactly 0 (an x-extent clipped to nothing,
    or heights clamped to 0), so a window no segment touches has area exactly 0: outside the
    region (a window wholly inside it has segments above). For finite inputs: a NaN
    coordinate of a live segment touches, a NaN weight or inf is not looked for."""
    dt = jnp.float32
    lo = jnp.asarray(corner_NxPx2, dt)[:, :, None, :]  # [N, P, 1, 2]
    a = jnp.asarray(a_NxSx2, dt)[:, None] - lo  # [N, P, S, 2]
    b = jnp.asarray(b_NxSx2, dt)[:, None] - lo
    left = jnp.maximum(a[..., 0], b[..., 0]) <= 0
    right = jnp.minimum(a[..., 0], b[..., 0]) >= side
    under = jnp.maximum(a[..., 1], b[..., 1]) <= -BELOW
    live = jnp.asarray(weight_NxS)[:, None] != 0
    return jnp.any(live & ~(left | right | under), -1)


TOUCHED_PAIRS = 2**16  # boundary_coverage takes on_touched from this many pairs a call:
# on 20,000 prior shapes x 24 points in one compiled call (a rejection check's) 1.6x faster
# on junctions, 2.3x on letters, 1.4x on rotated rectangles (benchmarks/touched.py). The
# oracle's calls stay under it (at most 13,824 pairs at the default config, 27,648 with
# benchmarks/oracle.py --double): their time is not coverage's but that of a million small
# operations an example, and there the loop saved nothing (benchmarks/oracle_speed.py).
# Outside a trace a scene's coverage runs in chunks of its chunk_pairs (junction 2^13:
# never this path; drawings 2^16)
PARTS = 8  # touched pairs are computed in blocks of 1 / PARTS of all pairs: at most that
# share of the work is spent on padding


def on_touched(area, a_NxSx2, b_NxSx2, weight_NxS, corner_NxPx2, cell, grid):
    """[N, P, grid*grid] area(a, b, w, corner, cell, grid) (window_area: one row per (shape,
    point) pair; window_area_counted's loop per pair was 5x slower than its own) computed
    for the pairs some segment touches (touched) only, 0 elsewhere: the same values, for
    the work of the touched pairs (on drawings and junctions about half of them). The
    touched pairs are taken in blocks of ceil(N P / PARTS), as many blocks as they fill (a
    loop of traced trip count: under vmap it runs to the batch's largest)."""
    dt = jnp.float32
    corner = jnp.asarray(corner_NxPx2, dt)
    n, p = corner.shape[:2]
    total = n * p
    if total == 0:
        return jnp.zeros((n, p, grid * grid), dt)
    hit = touched(a_NxSx2, b_NxSx2, weight_NxS, corner, cell * grid).reshape(total)
    m = -(-total // PARTS)
    order = jnp.nonzero(hit, size=m * PARTS, fill_value=total)[0]  # touched pairs first
    a, b, w = (jnp.asarray(x, dt) for x in (a_NxSx2, b_NxSx2, weight_NxS))

    def block(carry):
        j, out = carry
        pair = jax.lax.dynamic_slice(order, (j * m,), (m,))
        row, col = jnp.minimum(pair, total - 1) // p, jnp.minimum(pair, total - 1) % p
        got = area(a[row], b[row], w[row], corner[row, col][:, None], cell, grid)[:, 0]
        return j + 1, out.at[pair].set(got, mode="drop")  # pair == total: padding, dropped

    blocks = -(-jnp.sum(hit) // m)
    out = jnp.zeros((total, grid * grid), dt)
    out = jax.lax.while_loop(lambda c: c[0] < blocks, block, (0, out))[1]
    return out.reshape(n, p, grid * grid)
