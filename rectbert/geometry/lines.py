"""Points on lines: uniform along segments (a boundary, a drawing's centrelines) and whether a
window meets a region given by its boundary (touches), in jax; a drawing's junctions found
exactly from its centrelines, in numpy.

A junction is where a line drawing does something: a stroke ends, turns sharper than a corner
angle, or meets or crosses another (L, T, Y, X). junctions() finds every one of a drawing's
polylines once, when its set is built; the point samplers (rectbert/data/points.py) place them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CORNER_ANGLE = 120.0  # degrees: a vertex whose two segments meet at less than this is a corner
TOUCH_PAIRS = 2**22  # touches(): (point, segment) pairs at once (~160 MB of float32 work)
SAME = 1e-9  # two vertices nearer than this (relative to the drawing's size) are one


# ----------------------------------------------------------------------------- along segments
def clip_segments(a_Sx2, b_Sx2, lo: float, hi: float):
    """The part of each segment a -> b inside the box [lo, hi]^2 (Liang-Barsky): (starts,
    ends, inside) with inside False where none of it is (its start and end then equal)."""
    d = b_Sx2 - a_Sx2
    t0 = jnp.zeros(a_Sx2.shape[:-1])
    t1 = jnp.ones(a_Sx2.shape[:-1])
    for axis in range(2):
        p, q = d[..., axis], a_Sx2[..., axis]
        safe = jnp.where(p == 0, 1.0, p)
        ta, tb = (lo - q) / safe, (hi - q) / safe
        enter, leave = jnp.minimum(ta, tb), jnp.maximum(ta, tb)
        flat_out = (p == 0) & ((q < lo) | (q > hi))
        t0 = jnp.where(p == 0, t0, jnp.maximum(t0, enter))
        t1 = jnp.where(p == 0, t1, jnp.minimum(t1, leave))
        t1 = jnp.where(flat_out, -1.0, t1)
    inside = t1 > t0
    t1 = jnp.where(inside, t1, t0)
    return a_Sx2 + t0[..., None] * d, a_Sx2 + t1[..., None] * d, inside


def along(key, a_NxSx2, b_NxSx2, weight_NxS, p: int, lo: float, hi: float):
    """[N, p, 2] points uniform along each row's segments of weight > 0 (by length), the parts
    inside the box [lo, hi]^2 only; a row with no length there gets uniform points in the box.

    The segment is chosen by inverting the cumulative length (float32), then the point is
    uniform along it: exactly on the segment to float32 rounding."""
    a, b, inside = clip_segments(
        jnp.asarray(a_NxSx2, jnp.float32), jnp.asarray(b_NxSx2, jnp.float32), lo, hi
    )
    length = jnp.where(inside & (jnp.asarray(weight_NxS) > 0), jnp.linalg.norm(b - a, axis=-1), 0)
    total = jnp.cumsum(length, -1)  # [N, S]
    k_pick, k_t, k_box = jax.random.split(key, 3)
    n = a.shape[0]
    u = jax.random.uniform(k_pick, (n, p)) * total[:, -1:]
    seg = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(total, u)
    seg = jnp.clip(seg, 0, a.shape[1] - 1)
    for_row = jnp.take_along_axis  # [N, p] indices into [N, S, 2]
    sa = for_row(a, seg[..., None], 1)
    sb = for_row(b, seg[..., None], 1)
    t = jax.random.uniform(k_t, (n, p, 1))
    on = sa + t * (sb - sa)
    box = jax.random.uniform(k_box, (n, p, 2), minval=lo, maxval=hi)
    return jnp.where(total[:, -1:, None] > 0, jnp.clip(on, lo, hi), box)


def touches(a_NxSx2, b_NxSx2, weight_NxS, points_NxPx2, half: float):
    """[N, P] whether the square of half-side `half` centred on each point meets the region
    whose boundary is each row's segments of weight > 0 (directed rings, any orientation):
    some boundary segment crosses the square, or its centre is inside (the square then lies
    inside, as no boundary crosses it). Exact but for contacts of zero area (a shape's exact
    coverage has float32 noise of 1e-7 far from it: coverage > 0 is not this test). Rows in
    batches of at most TOUCH_PAIRS (point, segment) pairs (jax.lax.map)."""

    def row(args):
        a, b, w, pts = args
        rel_a = a[None] - pts[:, None]  # [P, S, 2]: the square is [-half, half]^2
        rel_b = b[None] - pts[:, None]
        crosses = clip_segments(rel_a, rel_b, -half, half)[2] & (w[None] > 0)
        # the winding number of the boundary around the centre (a ray along +x)
        ya, yb = rel_a[..., 1], rel_b[..., 1]
        cross = rel_a[..., 0] * rel_b[..., 1] - rel_a[..., 1] * rel_b[..., 0]
        up = (ya <= 0) & (yb > 0) & (cross > 0)
        down = (yb <= 0) & (ya > 0) & (cross < 0)
        winding = jnp.sum(jnp.where(w[None] > 0, up.astype(jnp.int32) - down, 0), -1)
        return jnp.any(crosses, -1) | (winding != 0)

    args = (a_NxSx2, b_NxSx2, weight_NxS, points_NxPx2)
    rows = max(1, TOUCH_PAIRS // max(1, points_NxPx2.shape[1] * a_NxSx2.shape[1]))
    xs = tuple(jnp.asarray(x, jnp.float32) for x in args)
    return jax.lax.map(row, xs, batch_size=min(rows, points_NxPx2.shape[0]))


def segments(polylines) -> tuple[np.ndarray, np.ndarray]:
    """([S, 2] starts, [S, 2] ends) of every segment of the polylines (each [V, 2])."""
    pieces = [np.asarray(p, np.float64) for p in polylines if len(p) >= 2]
    if not pieces:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate([p[:-1] for p in pieces]), np.concatenate([p[1:] for p in pieces])


# ----------------------------------------------------------------------------- junctions
def junctions(polylines, corner_angle: float = CORNER_ANGLE, merge: float = 0.0) -> np.ndarray:
    """[J, 2] the junctions of a line drawing, from its centrelines (polylines [V, 2] each).

    Candidates, each exact from the polylines: the two ends of every open polyline (a closed
    one, its first vertex its last, has none); every vertex where it turns so that its
    chords `merge` along it either side (at least to the next vertex: with merge 0, its two
    segments) meet at an angle under `corner_angle` degrees (180: every turn; a closed
    polyline's seam too), the sharpest of those within `merge` of each other (KanjiVG draws
    a corner as a tight curve: many small turns); and every point where two segments meet
    or cross that are not neighbours on one polyline (a stroke ending on another, two
    crossing). Candidates nearer than `merge` to one another (single linkage) are one
    junction, at the mean of the distinct ones (a point found twice counts once).
    Overlapping collinear segments meet nowhere in particular: they add their ends only if
    those are ends or corners.
    """
    lines = [_deduped(p) for p in polylines]
    lines = [p for p in lines if len(p) >= 2]
    if not lines:
        return np.zeros((0, 2))
    every = np.concatenate(lines)
    scale = float(np.ptp(every, axis=0).max()) or 1.0  # the drawing's size, not where it is
    same = SAME * scale
    found = []
    for p in lines:
        closed = len(p) > 2 and np.linalg.norm(p[0] - p[-1]) <= same
        if not closed:
            found += [p[0], p[-1]]
        found += list(_corners(p, closed, corner_angle, merge))
    found += _meetings(lines, same)
    return _merged(np.asarray(found, np.float64).reshape(-1, 2), max(merge, same), same)


def _deduped(p) -> np.ndarray:
    """The polyline without repeated consecutive vertices."""
    p = np.asarray(p, np.float64).reshape(-1, 2)
    if len(p) < 2:
        return p
    keep = np.concatenate([[True], np.any(p[1:] != p[:-1], -1)])
    return p[keep]


def corners(ring_Vx2, corner_angle: float = CORNER_ANGLE) -> np.ndarray:
    """The vertices of a closed ring (its first vertex not repeated) where its two edges meet
    at under `corner_angle` degrees: a polygon's corners, not the chords of its arcs."""
    p = _deduped(ring_Vx2)
    if len(p) < 3:
        return np.zeros((0, 2))
    return _corners(np.concatenate([p, p[:1]]), True, corner_angle)


def _corners(p: np.ndarray, closed: bool, corner_angle: float, reach: float = 0.0):
    """The vertices of polyline p where it turns so that its chords, `reach` along it either
    side (at least to the next vertex), meet at under corner_angle degrees: a tight curve,
    flattened into many small turns, is one corner, at its sharpest vertex (those within
    `reach` of a sharper one are left out)."""
    step = np.linalg.norm(np.diff(p, axis=0), axis=-1)
    s = np.concatenate([[0.0], np.cumsum(step)])
    total = s[-1]
    at_i = np.arange(len(p) - 1) if closed else np.arange(1, len(p) - 1)
    if not len(at_i):
        return np.zeros((0, 2))
    prev_len = np.where(at_i > 0, step[at_i - 1], step[-1])
    next_len = step[at_i]
    back_s = s[at_i] - np.maximum(reach, prev_len)
    ahead_s = s[at_i] + np.maximum(reach, next_len)
    if closed:
        back_s, ahead_s = np.mod(back_s, total), np.mod(ahead_s, total)
    else:
        back_s, ahead_s = np.clip(back_s, 0, total), np.clip(ahead_s, 0, total)

    def point(t):
        return np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], -1)

    at = p[at_i]
    u, v = point(back_s) - at, point(ahead_s) - at
    norms = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    cos = np.sum(u * v, -1) / np.maximum(norms, 1e-300)
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))  # 180: straight on
    sharp = np.flatnonzero(angle < corner_angle)
    keep = []
    for k in sharp:  # the sharpest within reach (the first of equals)
        gap = np.abs(s[at_i[sharp]] - s[at_i[k]])
        if closed:
            gap = np.minimum(gap, total - gap)
        near = sharp[(gap <= reach) & (sharp != k)]
        if np.all((angle[near] > angle[k]) | ((angle[near] == angle[k]) & (near > k))):
            keep.append(k)
    return at[keep]


def _meetings(lines, same: float) -> list:
    """Every point where two segments of the polylines touch or cross, neighbours on one
    polyline (which share a vertex by construction) left out."""
    a, b = segments(lines)
    owner = np.concatenate([np.full(len(p) - 1, i) for i, p in enumerate(lines)])
    index = np.concatenate([np.arange(len(p) - 1) for p in lines])
    last = np.array([len(p) - 2 for p in lines])[owner]
    closed = np.array([len(p) > 2 and np.linalg.norm(p[0] - p[-1]) <= same for p in lines])[owner]
    lo, hi = np.minimum(a, b) - same, np.maximum(a, b) + same
    out = []
    for i in range(len(a)):  # each segment against the later ones whose boxes overlap
        j = np.arange(i + 1, len(a))
        j = j[np.all((lo[j] <= hi[i]) & (hi[j] >= lo[i]), -1)]
        mine = owner[j] == owner[i]
        step = np.abs(index[j] - index[i])
        wrap = closed[i] & (step == last[i])  # a closed polyline's first and last segments
        j = j[~(mine & ((step == 1) | wrap))]
        if not len(j):
            continue
        out += _crossing(a[i], b[i], a[j], b[j], same)
    return out


def _crossing(a, b, c_Jx2, d_Jx2, same: float) -> list:
    """The points where segment a-b meets each segment c-d (touching counts; parallel ones
    meet where an end of one lies on the other)."""
    r, s = b - a, d_Jx2 - c_Jx2
    den = r[0] * s[:, 1] - r[1] * s[:, 0]
    ca = c_Jx2 - a
    out = []
    tol = same / max(float(np.linalg.norm(r)), same)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ca[:, 0] * s[:, 1] - ca[:, 1] * s[:, 0]) / den
        u = (ca[:, 0] * r[1] - ca[:, 1] * r[0]) / den
    proper = (np.abs(den) > 0) & (t >= -tol) & (t <= 1 + tol) & (u >= -tol) & (u <= 1 + tol)
    for k in np.flatnonzero(proper):
        out.append(a + np.clip(t[k], 0, 1) * r)
    for k in np.flatnonzero(~proper & (np.abs(den) == 0)):  # parallel: ends on the other
        for q, (p0, p1) in ((a, (c_Jx2[k], d_Jx2[k])), (b, (c_Jx2[k], d_Jx2[k])),
                            (c_Jx2[k], (a, b)), (d_Jx2[k], (a, b))):  # fmt: skip
            if _distance(q, p0, p1) <= same:
                out.append(np.asarray(q, np.float64))
    return out


def _distance(q, a, b) -> float:
    """The distance from point q to segment a-b."""
    d = b - a
    t = np.clip(np.dot(q - a, d) / max(float(np.dot(d, d)), 1e-300), 0.0, 1.0)
    return float(np.linalg.norm(q - (a + t * d)))


def _merged(points_Jx2: np.ndarray, within: float, same: float = 0.0) -> np.ndarray:
    """The points with those nearer than `within` to one another (single linkage) replaced by
    the mean of their distinct ones (nearer than `same`: one), in order of first appearance."""
    d = np.linalg.norm(points_Jx2[:, None] - points_Jx2[None], axis=-1)
    first = ~np.any(np.tril(d <= same, -1), 1)  # no earlier point the same
    points_Jx2, d = points_Jx2[first], d[np.ix_(first, first)]
    n = len(points_Jx2)
    group = np.arange(n)

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(d <= within, 1)), strict=True):
        group[root(j)] = root(i)
    roots = np.array([root(i) for i in range(n)], int)
    order = list(dict.fromkeys(roots.tolist()))
    return np.array([points_Jx2[roots == r].mean(0) for r in order]).reshape(-1, 2)
