"""Where the shape-aware point samplers put their points, against references built here:
shapely's boundary of each family's shape made from its parameters' definition (references.py;
a drawing's em polygon placed by shapely.affinity), centrelines placed in float64 numpy from the
drawings' polylines (or junction's parameters), junctions counted by hand (test_junctions.py),
brute-force windows and a chi-squared test; and the occlusion box, by brute force."""

import math

import jax
import numpy as np
import pytest
import shapely
import shapely.affinity
from scipy import stats
from shapely.geometry import MultiLineString

import rectbert
from rectbert.data import points
from rectbert.data.sparse_task import SparseTask
from rectbert.data.tasks import MaskSpec
from rectbert.geometry import sources
from tests import references
from tests.conftest import RECT, family_param
from tests.test_junctions import HERSHEY

LO, HI = 32.0, 224.0  # the point region (shapes.point_bounds)
REGION = shapely.box(LO, LO, HI, HI)
TOL = 2e-3  # canvas pixels: float32 rounding of points near 256 (~1.5e-5 a step) and more
POLYGON_FAMILIES = ["rect", "rotated", "rects", "junction", "glyph", "kanji", "icon"]
STROKE_FAMILIES = ["junction", "glyph", "kanji", "icon"]
CODEBOOK = np.stack([np.zeros(16), np.ones(16)]).astype(np.float32)  # tokens are not the point


DEFAULTS = points.Options()


def draw(name, key, scene, params_NxD, p: int, options=DEFAULTS) -> np.ndarray:
    """The sampler's points, as one compiled program (compiles faster than op by op)."""
    fn = jax.jit(lambda k, x: points.sample(name, k, scene, x, p, options))
    return np.asarray(fn(key, params_NxD))


def task(scene, **kw) -> SparseTask:
    return SparseTask(
        scene=scene, mask=MaskSpec(8), num_points=24, num_clusters=2, centroids=CODEBOOK, **kw
    )


# ----------------------------------------------------------------------------- references
def placed(params_D, v_Vx2):
    """[V, 2] em-unit points placed on the canvas in float64: (x, y) + size R(angle) v."""
    _, size, angle, x, y = np.asarray(params_D, np.float64)
    c, s = math.cos(angle), math.sin(angle)
    v = np.asarray(v_Vx2, np.float64).reshape(-1, 2)
    return np.array([x, y]) + size * np.stack(
        [c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], -1
    )


def region_of(scene, params_D):
    """The shape as shapely builds it from the family's definition of its parameters (a
    drawing: its em polygon scaled, turned and moved by shapely.affinity)."""
    if scene.name in ("rect", "rects"):
        return shapely.union_all(references.rects_of(params_D))
    if scene.name == "rotated":
        return references.rotated_of(params_D)[0]
    if scene.name == "junction":
        return shapely.union_all(references.junction_of(params_D))
    _, size, angle, x, y = (float(v) for v in params_D)
    poly = scene.library.shapes[int(round(float(params_D[0])))]
    c, s = math.cos(angle), math.sin(angle)
    return shapely.affinity.affine_transform(poly, [size * c, -size * s, size * s, size * c, x, y])


def centrelines_of(scene, params_D) -> MultiLineString:
    """The strokes' centrelines: junction's from its parameters (stroke k from j to
    j + length_k (cos a_k, sin a_k)), a drawing's polylines placed in float64."""
    p = np.asarray(params_D, np.float64)
    if scene.name == "junction":
        j = p[:2]
        return MultiLineString(
            [
                [j, j + length * np.array([math.cos(a), math.sin(a)])]
                for length, a in p[3:].reshape(-1, 2)
                if length > 0
            ]
        )
    drawing = scene.library.lines[int(round(p[0]))]
    return MultiLineString([placed(p, line) for line in drawing if len(line) >= 2])


def hand_junctions(scene, params_D):
    """[J, 2] the drawing's junctions counted by hand (test_junctions.HERSHEY, font units)
    placed on the canvas; junction's: its point and each used stroke's far end."""
    p = np.asarray(params_D, np.float64)
    if scene.name == "junction":
        ends = [
            p[:2] + length * np.array([math.cos(a), math.sin(a)])
            for length, a in p[3:].reshape(-1, 2)
            if length > 0
        ]
        return np.array([p[:2], *ends])
    g = int(round(p[0]))
    char = scene.library.names[g].split(":", 1)[1]
    em = np.asarray(HERSHEY[char], np.float64).reshape(-1, 2) / sources.HERSHEY_EM
    return placed(p, em - scene.library.centres[g])


def in_region(pts_Px2, margin=0.0):
    return np.all((pts_Px2 >= LO + margin) & (pts_Px2 <= HI - margin), -1)


def distances(geometry, pts_Px2):
    return shapely.distance(geometry, shapely.points(np.asarray(pts_Px2, np.float64)))


QUADRANTS = [shapely.box(x, y, x + 96, y + 96) for x in (LO, LO + 96) for y in (LO, LO + 96)]


def check_uniform_along(pts_Px2, lines, what: str, tol: float = 0.05):
    """The share of the points in each quarter of the region is the share of the lines' length
    inside the region that lies there (uniform by length; the part in the region only)."""
    inside = lines.intersection(REGION)
    assert inside.length > 1.0, f"{what}: no length in the region"
    for q in QUADRANTS:
        x0, y0, x1, y1 = q.bounds
        got = np.mean(np.all((pts_Px2 >= [x0, y0]) & (pts_Px2 < [x1, y1]), -1))
        want = inside.intersection(q).length / inside.length
        assert abs(got - want) < tol, (
            f"{what}: {got:.3f} of the points in {q.bounds}, want {want:.3f}"
        )


# ----------------------------------------------------------------------------- (a) edges
@pytest.mark.parametrize("family", [family_param(f) for f in POLYGON_FAMILIES])
def test_edges_lie_on_the_shapes_boundary_uniformly_by_length(family):
    scene = rectbert.scene(family)
    params = np.asarray(scene.sample(jax.random.key(2), 3))
    got = draw("edges", jax.random.key(3), scene, params, 1500)
    assert got.shape == (3, 1500, 2)
    for i, p in enumerate(params):
        edge = region_of(scene, p).boundary
        d = distances(edge, got[i])
        assert d.max() <= TOL, f"{family} row {i}: a point {d.max():.2g} px off the boundary"
        assert in_region(got[i]).all(), family
        check_uniform_along(got[i], edge, f"{family} row {i}")


def test_edges_of_a_rectangle_share_its_sides_by_their_length_in_the_region():
    # inside the region: sides 160 and 40, the vertical ones 80 of 400; half outside: of
    # [10, 50, 120, 240] only x = 120 (y 50..224: 174) and y = 50 (x 32..120: 88) are in it
    rects = np.array([[40.0, 60.0, 200.0, 100.0], [10.0, 50.0, 120.0, 240.0]], np.float32)
    got = draw("edges", jax.random.key(1), RECT, rects, 4000)
    for rect, pts, vertical in zip(rects, got, [80 / 400, 174 / 262], strict=True):
        on_x = np.isclose(pts[:, 0], rect[0], atol=TOL) | np.isclose(pts[:, 0], rect[2], atol=TOL)
        on_y = np.isclose(pts[:, 1], rect[1], atol=TOL) | np.isclose(pts[:, 1], rect[3], atol=TOL)
        assert np.all(on_x | on_y) and in_region(pts).all()
        assert abs(np.mean(on_x & ~on_y) - vertical) < 0.03, (rect, np.mean(on_x & ~on_y))
    assert np.all(
        np.isclose(got[1][:, 0], 120.0, atol=TOL) | np.isclose(got[1][:, 1], 50.0, atol=TOL)
    )


# ----------------------------------------------------------------------------- (b) strokes
@pytest.mark.parametrize("family", [family_param(f) for f in STROKE_FAMILIES])
def test_strokes_lie_on_the_centrelines_uniformly_by_length(family):
    scene = rectbert.scene(family)
    params = np.asarray(scene.sample(jax.random.key(5), 3))
    got = draw("strokes", jax.random.key(6), scene, params, 1500)
    for i, p in enumerate(params):
        lines = centrelines_of(scene, p)
        d = distances(lines, got[i])
        assert d.max() <= TOL, f"{family} row {i}: a point {d.max():.2g} px off the centrelines"
        assert in_region(got[i]).all(), family
        check_uniform_along(got[i], lines, f"{family} row {i}")


# ----------------------------------------------------------------------------- (c) junctions
def check_at_junctions(scene, params, got, within: float):
    """Each row: min(P, J) points within `within` of distinct junctions in the region (J of
    them), the rest on the centrelines. Returns (rows with J >= P, rows with fewer, the
    points' nearest-junction offsets [M, 2] of the rows with J >= P, those junctions [M, 2])."""
    full = short = 0
    offsets, nearest_refs = [], []
    for i, p in enumerate(params):
        refs = hand_junctions(scene, p)
        refs = refs[in_region(refs)]
        pts = got[i]
        assert in_region(pts).all(), i
        d = (
            np.linalg.norm(pts[:, None] - refs[None], axis=-1)
            if len(refs)
            else np.full((len(pts), 1), np.inf)
        )
        at = d.min(1) <= within
        k = min(len(pts), len(refs))
        assert at.sum() == k, f"row {i}: {at.sum()} points at its {len(refs)} junctions, want {k}"
        nearest = d.argmin(1)[at]
        assert len(set(nearest.tolist())) == k, f"row {i}: a junction repeated {nearest}"
        rest = pts[~at]
        if len(rest):
            off = distances(centrelines_of(scene, p), rest)
            assert off.max() <= TOL, f"row {i}: a fallback point {off.max():.2g} px off the strokes"
        if len(refs) >= len(pts):
            full += 1
            offsets.append(pts - refs[d.argmin(1)])
            nearest_refs.append(refs[d.argmin(1)])
        else:
            short += 1
    if not offsets:
        return full, short, np.zeros((0, 2)), np.zeros((0, 2))
    return full, short, np.concatenate(offsets), np.concatenate(nearest_refs)


def test_junctions_without_jitter_are_the_junction_family_s_points_each_once():
    scene = rectbert.scene("junction")
    params = np.asarray(scene.sample(jax.random.key(7), 64))
    opts = points.Options(jitter=0.0)
    got = draw("junctions", jax.random.key(8), scene, params, 3, opts)
    full, short, _, _ = check_at_junctions(scene, params, got, TOL)
    assert full > 10 and short > 5, (full, short)  # both cases reached
    # more points than any shape has junctions: every one once, the rest on the strokes, and
    # the junctions anywhere among them (shuffled), not first
    many = draw("junctions", jax.random.key(9), scene, params, 12, opts)
    assert check_at_junctions(scene, params, many, TOL)[0] == 0
    firsts = []
    for i, p in enumerate(params):
        refs = hand_junctions(scene, p)
        refs = refs[in_region(refs)]
        at = np.linalg.norm(many[i][:, None] - refs[None], axis=-1).min(1) <= TOL
        firsts.append(np.array_equal(np.flatnonzero(at), np.arange(len(refs))))
    assert not all(firsts), "the junctions always come first: the points are not shuffled"


def test_junctions_of_glyphs_are_the_hand_counted_ones_placed():
    scene = rectbert.scene("glyph", glyphs="".join(HERSHEY), rotation=(-30.0, 30.0))
    params = np.array(scene.sample(jax.random.key(10), 2 * scene.count))
    params[:, 0] = np.arange(len(params)) % scene.count  # every drawing, twice
    opts = points.Options(jitter=0.0)
    got = draw("junctions", jax.random.key(11), scene, params, 4, opts)
    full, short, _, _ = check_at_junctions(scene, params, got, TOL)
    assert full > 5 and short >= 2, (full, short)  # O has none: all four on its strokes


def test_junctions_jitter_is_uniform_in_a_disc_of_its_radius():
    scene = rectbert.scene("junction")
    params = np.asarray(scene.sample(jax.random.key(12), 400))
    # the rows with two junctions in the region or more (else a fallback point on a stroke
    # may come within the jitter of its start)
    params = params[[np.sum(in_region(hand_junctions(scene, p))) >= 2 for p in params]]
    r = 5.0
    opts = points.Options(jitter=r)
    got = draw("junctions", jax.random.key(13), scene, params, 2, opts)
    full, _, offsets, at = check_at_junctions(scene, params, got, r + TOL)
    assert full > 200, full
    # away from the region's edges (where they are clipped): the offset's squared length over
    # r^2 and its direction over 2 pi are uniform
    offsets = offsets[in_region(at, r + 1)]
    assert len(offsets) > 300, len(offsets)
    radius2 = np.sum(offsets**2, -1) / r**2
    angle = (np.arctan2(offsets[:, 1], offsets[:, 0]) / (2 * math.pi)) % 1.0
    assert stats.kstest(radius2, "uniform").pvalue > 1e-3
    assert stats.kstest(angle, "uniform").pvalue > 1e-3


def test_junctions_refuse_themselves_as_fallback():
    scene = rectbert.scene("junction")
    params = scene.sample(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="fallback"):
        points.sample(
            "junctions", jax.random.key(0), scene, params, 3, points.Options(fallback="junctions")
        )


# ----------------------------------------------------------------------------- (d) near
def test_near_is_uniform_among_the_windows_that_touch_the_rectangle():
    """Brute force: every point's window [p - 32, p + 32) overlaps the rectangle (positive
    area: x0 - 32 < px < x1 + 32, the same in y); and a chi-squared test over the 4-pixel cells
    of that accepted box (its sides multiples of 4), against uniform."""
    rects = np.array([[80.0, 100.0, 140.0, 160.0], [40.0, 40.0, 100.0, 200.0]], np.float32)
    got = draw("near", jax.random.key(14), RECT, rects, 20000)
    for rect, pts in zip(rects.astype(np.float64), got, strict=True):
        x0, y0 = np.maximum(rect[:2] - 32, LO)
        x1, y1 = np.minimum(rect[2:] + 32, HI)
        touch = (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)
        assert touch.all(), (rect, pts[~touch][:5])
        counts, _, _ = np.histogram2d(
            pts[:, 0], pts[:, 1], bins=[np.arange(x0, x1 + 1, 4.0), np.arange(y0, y1 + 1, 4.0)]
        )
        assert counts.sum() == len(pts)
        test = stats.chisquare(counts.ravel())
        assert test.pvalue > 1e-4, (rect, test)


NEAR_CASES = [family_param(f) for f in POLYGON_FAMILIES]  # ~0.5-1.2 s each: the default tier


@pytest.mark.parametrize("family", NEAR_CASES)
def test_near_windows_touch_the_shape_on_every_family(family):
    scene = rectbert.scene(family)
    params = np.asarray(scene.sample(jax.random.key(15), 3))
    got = draw("near", jax.random.key(16), scene, params, 100)
    for i, p in enumerate(params):
        shape = region_of(scene, p)
        windows = shapely.box(
            got[i, :, 0] - 32, got[i, :, 1] - 32, got[i, :, 0] + 32, got[i, :, 1] + 32
        )
        area = shapely.area(shapely.intersection(shape, windows))
        assert np.all(area > 0), f"{family} row {i}: a window off the shape"
        assert in_region(got[i]).all(), family


# ----------------------------------------------------------------------------- (e) occlusion
