"""Coverage computed only where a segment touches the window (polygons.on_touched): the same
values as every window computed, and shapely's areas, on windows inside, outside, across,
beside, under and over the shapes; no window with area is ever skipped; the blocks of
touched pairs cover every count from none to all, also under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert.geometry import polygons
from rectbert.scenes.exact import boundary_coverage
from tests.test_coverage_cost import CELL, GRID, padded, reference, shapes_

SIDE = CELL * GRID
ROUNDING = 1e-5 * CELL**2  # window_area's areas are in px^2: 1e-5 of a cell


def around(shapes, seed: int = 3) -> np.ndarray:
    """[N, 12, 2] window centres of each shape: 6 anywhere near its box, then one wholly
    inside (at its most interior point: a window with area 1 somewhere), and one wholly
    left of, right of, under, over and far from its box."""
    rng = np.random.default_rng(seed)
    out = []
    for p in shapes:
        x0, y0, x1, y1 = p.bounds
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        near = rng.uniform([x0 - SIDE / 2, y0 - SIDE / 2], [x1 + SIDE / 2, y1 + SIDE / 2], (6, 2))
        inner = np.asarray(p.representative_point().coords[0])
        edge = SIDE / 2 + 1
        far = [(x0 - edge, my), (x1 + edge, my), (mx, y0 - edge), (mx, y1 + edge), (500, 500)]
        out.append(np.concatenate([near, inner[None], np.asarray(far)]))
    return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def case():
    shapes = shapes_()
    pts = around(shapes)
    a, b, w, _ = padded(shapes)
    return shapes, pts, (a, b, w), reference(shapes, pts)


def culled(a, b, w, corner):
    return polygons.on_touched(polygons.window_area, a, b, w, corner, CELL, GRID)


def test_touched_windows_alone_give_every_windows_values_and_shapelys(case):
    shapes, pts, segs, want = case
    corner = jnp.asarray(pts) - SIDE / 2
    got = np.asarray(jax.jit(culled)(*segs, corner))
    every = np.asarray(polygons.window_area(*segs, corner, CELL, GRID))
    # the same terms, summed in blocks of pairs: equal to float32 rounding (of a cell: 1e-5)
    np.testing.assert_allclose(got, every, atol=ROUNDING)
    np.testing.assert_allclose(got / CELL**2, want, atol=1e-5)
    assert np.any(want[:, 6] > 0.99)  # cells wholly inside: computed
    hit = np.asarray(polygons.touched(*segs, corner, SIDE))
    # every window with area is touched; beside, over and far from the shape none is; under
    # it, segments are above the window (its column): touched, though its area is 0
    assert np.all(hit[want.sum(-1) > 0])
    assert not np.any(hit[:, [7, 8, 10, 11]])
    assert np.all(hit[:, 9]) and np.all(want[:, 9] == 0)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_every_count_of_touched_pairs_from_none_to_all(case, share):
    """N P = 7 x 9 = 63 pairs (blocks of 8: the last one partly padding): none touched (no
    block runs), some, all (every block)."""
    shapes, pts, segs, want = case
    rng = np.random.default_rng(4)
    n = len(shapes)
    inside = np.repeat(pts[:, 6:7], 9, 1)  # [N, 9, 2] windows with area
    far = np.full_like(inside, 500.0)
    pick = rng.uniform(size=(n, 9, 1)) < share
    corner = jnp.asarray(np.where(pick, inside, far)) - SIDE / 2
    got = np.asarray(culled(*segs, corner))
    every = np.asarray(polygons.window_area(*segs, corner, CELL, GRID))
    np.testing.assert_allclose(got, every, atol=ROUNDING)
    assert np.all((got.sum(-1) > 0) == pick[..., 0]) and np.all(got[~pick[..., 0]] == 0)


def test_under_vmap_each_batch_member_is_its_own(case):
    """Two batches of different touched counts mapped together: the loop runs to the larger,
    the smaller's extra blocks add nothing."""
    shapes, pts, segs, want = case
    corner = jnp.asarray(pts) - SIDE / 2
    far = jnp.full_like(corner, 500.0 - SIDE / 2)
    both = jax.vmap(lambda c: culled(*segs, c))(jnp.stack([corner, far]))
    np.testing.assert_allclose(np.asarray(both[0]) / CELL**2, want, atol=1e-5)
    assert np.all(np.asarray(both[1]) == 0)


def test_from_touched_pairs_on_boundary_coverage_takes_the_touched_path(case, monkeypatch):
    """boundary_coverage at TOUCHED_PAIRS pairs calls on_touched (values those of window_area
    and shapely's), one pair fewer does not."""
    shapes, pts, segs, want = case
    size = pts.shape[0] * pts.shape[1]
    calls, real = [], polygons.on_touched
    monkeypatch.setattr(polygons, "on_touched", lambda *a, **k: calls.append(1) or real(*a, **k))
    for threshold, taken in [(size, [1]), (size + 1, [])]:
        monkeypatch.setattr(polygons, "TOUCHED_PAIRS", threshold)
        calls.clear()
        got = np.asarray(boundary_coverage(*segs, pts, CELL, GRID))
        assert calls == taken
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", ["rotated", "junction", "glyph"])
def test_on_scenes_every_untouched_window_is_exactly_zero(name):
    """Long segments across windows (a rotated rectangle's, a stroke's), segments at a
    window's edges: on 256 prior shapes x 24 points, window_area is exactly 0 wherever
    touched says no segment reaches, and on_touched equals it."""
    import rectbert

    scene = rectbert.scene(name)
    params = scene.sample(jax.random.key(5), 256)
    a, b, w = scene.boundary(params)[:3]
    rng = np.random.default_rng(6)
    pts = rng.uniform(0, scene.size, (256, 24, 2)).astype(np.float32)
    # windows whose left, right or bottom edge lies on a segment's end, or just past it
    ends = np.asarray(a)[np.arange(256), rng.integers(0, a.shape[1], 256)]  # [256, 2]
    shift = np.array([[SIDE / 2, 0], [-SIDE / 2, 0], [0, -SIDE / 2], [0, -SIDE / 2 - 0.005]])
    pts[:, :4] = ends[:, None] + shift[None]
    corner = jnp.asarray(pts) - SIDE / 2
    every = np.asarray(polygons.window_area(a, b, w, corner, CELL, GRID))
    hit = np.asarray(polygons.touched(a, b, w, corner, SIDE))
    assert np.all(every[~hit] == 0), np.abs(every[~hit]).max()
    assert 0.2 < hit.mean() < 0.9  # the test has both kinds
    np.testing.assert_allclose(np.asarray(culled(a, b, w, corner)), every, atol=ROUNDING)
