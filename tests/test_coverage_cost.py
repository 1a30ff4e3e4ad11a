"""Coverage with each row's segment count (boundary_coverage(counts_N=...)): exact against an
independent reference, shapely's area of the polygon inside each cell, for rows padded to a
common segment count; the same under jit with traced counts and eagerly; and its work
following the rows' own counts, not the padded one (counted by the loop's steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from rectbert.geometry import polygons
from rectbert.scenes.exact import boundary_coverage

CELL, GRID = 16, 4
POINTS = 6


def star(rng, vertices: int, centre, radius: float) -> np.ndarray:
    """[V, 2] a star-shaped polygon about centre, counter-clockwise."""
    t = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    r = radius * rng.uniform(0.35, 1.0, vertices)
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], -1)


def shapes_(seed: int = 0):
    """Shapely polygons of varying vertex counts: stars, one with a hole, one a thin sliver
    (a triangle)."""
    rng = np.random.default_rng(seed)
    out = [Polygon(star(rng, v, rng.uniform(70, 130, 2), 50)) for v in (3, 17, 60, 250, 9)]
    outer = star(rng, 120, (100, 100), 60)
    hole = star(rng, 40, (100, 100), 15)
    out.insert(2, Polygon(outer, [hole]))
    return [shapely.geometry.polygon.orient(p, 1.0) for p in out]  # outer ccw, holes cw


def padded(shapes, s=None, junk: bool = False):
    """(a, b, weight, counts): each polygon's rings as directed segments, its first
    counts[i], then padding to a common S: zero-weight segments at the first vertex (junk:
    random segments of weight 1 instead, which counts must leave out)."""
    rings = [[np.asarray(r.coords)[:-1] for r in (p.exterior, *p.interiors)] for p in shapes]
    counts = np.array([sum(len(r) for r in rs) for rs in rings])
    s = s or int(counts.max())
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 256, (2, len(shapes), s, 2))
    w = np.ones((len(shapes), s)) if junk else np.zeros((len(shapes), s))
    for i, rs in enumerate(rings):
        k = counts[i]
        a[i, :k] = np.concatenate(rs)
        b[i, :k] = np.concatenate([np.roll(r, -1, 0) for r in rs])
        w[i, :k] = 1.0
        if not junk:
            a[i, k:] = b[i, k:] = a[i, 0]
    f32 = np.float32
    return a.astype(f32), b.astype(f32), w.astype(f32), counts.astype(np.int32)


def points(shapes, seed: int = 2) -> np.ndarray:
    """[N, POINTS, 2] window centres about each shape's box (windows in, out and across)."""
    rng = np.random.default_rng(seed)
    reach = GRID * CELL / 2
    out = []
    for p in shapes:
        x0, y0, x1, y1 = p.bounds
        lo, hi = np.array([x0, y0]) - reach, np.array([x1, y1]) + reach
        out.append(rng.uniform(lo, hi, (POINTS, 2)))
    return np.asarray(out, np.float32)


def reference(shapes, points_NxPx2) -> np.ndarray:
    """[N, P, GRID*GRID] shapely's area of each polygon in each cell, a fraction of the cell
    (row-major, row = y)."""
    out = np.zeros((len(shapes), points_NxPx2.shape[1], GRID * GRID))
    for i, p in enumerate(shapes):
        for j, (x, y) in enumerate(points_NxPx2[i].astype(np.float64) - GRID * CELL / 2):
            for r in range(GRID):
                for c in range(GRID):
                    cell = box(x + c * CELL, y + r * CELL, x + (c + 1) * CELL, y + (r + 1) * CELL)
                    out[i, j, r * GRID + c] = p.intersection(cell).area / CELL**2
    return out


@pytest.fixture(scope="module")
def case():
    shapes = shapes_()
    pts = points(shapes)
    return shapes, pts, reference(shapes, pts)


def counted(a, b, w, pts, counts, **kw):
    return np.asarray(boundary_coverage(a, b, w, pts, CELL, GRID, counts_N=counts, **kw))


def test_counts_agree_with_shapely_and_the_padded_path_jitted_with_traced_counts(case):
    shapes, pts, want = case
    a, b, w, counts = padded(shapes, s=320)  # S past the largest count (250)
    traces = []

    @jax.jit
    def run(a, b, w, pts, counts):
        traces.append(1)
        return boundary_coverage(a, b, w, pts, CELL, GRID, counts_N=counts)

    got = np.asarray(run(a, b, w, pts, counts))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.any(want == 0) and np.any(want == 1) and np.any((want > 0) & (want < 1))
    everything = jax.jit(lambda *x: boundary_coverage(*x, CELL, GRID))  # no counts
    np.testing.assert_allclose(got, everything(a, b, w, pts), atol=1e-5)
    # other counts, the same program: row 2 (the one with a hole) without its hole, row 0
    # without anything
    fewer = counts.copy()
    fewer[2] = len(shapes[2].exterior.coords) - 1
    fewer[0] = 0
    got = np.asarray(run(a, b, w, pts, fewer))
    assert len(traces) == 1
    no_hole = reference([Polygon(shapes[2].exterior)], pts[2:3])[0]
    np.testing.assert_allclose(got[2], no_hole, atol=1e-5)
    assert np.all(got[0] == 0)
    np.testing.assert_allclose(np.delete(got, [0, 2], 0), np.delete(want, [0, 2], 0), atol=1e-5)


@pytest.mark.parametrize("chunk, items", [(16, 1), (7, 3)])
def test_counts_eagerly_with_segments_past_the_count_left_out(case, chunk, items):
    """Eager calls (no jit around them), rows cut into several chunks (7: not a divisor of
    S), a step of one item (a row across several steps) or of three (several rows in a
    step); the segments past each row's count are random segments of weight 1, which must
    add nothing."""
    shapes, pts, want = case
    a, b, w, counts = padded(shapes, s=320, junk=True)
    corner = jnp.asarray(pts) - GRID * CELL / 2
    got = polygons.window_area_counted(
        a, b, w, counts, corner, CELL, GRID, chunk=chunk, items=items
    )
    np.testing.assert_allclose(np.asarray(got) / CELL**2, want, atol=1e-5)


def test_counts_all_at_the_largest_and_a_row_of_none(case):
    """Every row's count is S (no padding; S = 250 not a multiple of the chunk), and a row
    of count 0 covers nothing whatever its segments."""
    shapes, pts, want = case
    a, b, w, counts = padded([shapes[4]] * 3)  # the 250-gon
    assert np.all(counts == a.shape[1])
    got = counted(a, b, w, pts[[4, 4, 4]], counts)
    np.testing.assert_allclose(got, want[[4, 4, 4]], atol=1e-5)
    got = counted(a, b, w, pts[[4, 4, 4]], np.array([250, 0, 250]))
    assert np.all(got[1] == 0)
    np.testing.assert_allclose(got[[0, 2]], want[[4, 4]], atol=1e-5)


def test_rows_in_any_order_of_counts_each_get_their_own(case):
    """Rows whose counts go down, up and neither: each row's coverage its own, in its place
    (eagerly, the default chunk and step)."""
    shapes, pts, want = case
    a, b, w, counts = padded(shapes, s=320, junk=True)
    order = np.array([4, 0, 2, 5, 1, 3])  # counts 250, 3, 160, 9, 17, 60
    got = counted(a[order], b[order], w[order], pts[order], counts[order])
    np.testing.assert_allclose(got, want[order], atol=1e-5)


def test_the_work_follows_the_counts_not_the_padding(monkeypatch, request):
    """Counted by the loop: every step calls the corner integrals once, on `items` chunks of
    `chunk` segments. Rows of 5 and 20 segments padded to S = 1000 take ceil(5 / 8) and
    ceil(20 / 8) chunks, not 125 each; and boundary_coverage with counts goes this way."""
    calls = []
    inner = polygons._corner_integrals

    def counting(a, *rest):
        jax.debug.callback(lambda: calls.append(a.shape))
        return inner(a, *rest)

    monkeypatch.setattr(polygons, "_corner_integrals", counting)
    # traces made before (or kept after) the patch would count nothing (or count elsewhere)
    polygons.window_area_counted.clear_cache()
    request.addfinalizer(polygons.window_area_counted.clear_cache)
    n, s = 6, 1000
    counts = np.array([5, 20, 0, 5, 20, 5], np.int32)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 64, (2, n, s, 2)).astype(np.float32)
    w = (np.arange(s) < counts[:, None]).astype(np.float32)
    pts = rng.uniform(0, 64, (n, 2, 2)).astype(np.float32)
    corner = jnp.asarray(pts) - GRID * CELL / 2
    run = jax.jit(
        lambda a, b, w, k, c: polygons.window_area_counted(
            a, b, w, k, c, CELL, GRID, chunk=8, items=1
        )
    )
    jax.block_until_ready(run(a, b, w, counts, corner))
    assert calls == [(1, 8, 2)] * (3 * 1 + 2 * 3)  # chunks of 8, each its own step
    calls.clear()
    jax.block_until_ready(run(a, b, w, np.minimum(counts, 5), corner))  # traced counts
    assert len(calls) == 5
    calls.clear()
    jax.block_until_ready(boundary_coverage(a, b, w, pts, CELL, GRID, counts_N=counts))
    assert len(calls) == 1 and calls[0][1] == polygons.CHUNK  # one step of chunks, not S
