"""The scene families beyond one rectangle, against shapely's polygon areas (an independent
reference): exact coverage at random continuous points and at the 169 lattice points, the
polygon clipping itself, invariants, samples inside the canvas, and densities against the
samplers' own frequencies."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

import rectbert
from rectbert import config, scenes
from rectbert.geometry import polygons, shapes

SCENES = [
    ("rotated", {}),
    ("rotated", dict(min_side=8.0, max_side=60.0)),
    ("rects", dict(num_rects=3, min_rects=1)),
    ("rects", dict(num_rects=4, min_side=10.0, max_side=120.0)),
    ("junction", dict(min_strokes=2, max_strokes=4, stroke_width=(12.0, 40.0))),
]
CUT = {"junction"}  # families whose shapes may leave the canvas (cut off there)


def true_polygons(name: str, params_D) -> list[Polygon]:
    """The shape, built here from the issue's definition of each family's parameters (not
    from the library's own polygons): rects (x0, y0, x1, y1) per slot, empty when x0 = x1;
    rotated (cx, cy, w, h, theta), corners c + R(theta)(+-w/2, +-h/2); junction (jx, jy,
    width, then length, angle per stroke), corners j +- (w/2) n and j + length u +- (w/2) n."""
    p = np.asarray(params_D, np.float64)
    if name == "rects":
        return [box(*r) for r in p.reshape(-1, 4) if r[0] != r[2]]
    if name == "rotated":
        cx, cy, w, h, t = p
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return [Polygon(np.array([cx, cy]) + half @ rot.T)]
    assert name == "junction"
    j, half, out = p[:2], p[2] / 2, []
    for length, a in p[3:].reshape(-1, 2):
        if length > 0:
            u, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
            far = j + length * u
            out.append(Polygon([j - half * n, far - half * n, far + half * n, j + half * n]))
    return out


def reference(scene, params_D, points_Px2, cell=shapes.CELL, grid=shapes.GRID):
    """[P, grid*grid] by shapely: the true shape's polygons, unioned, clipped to cells."""
    shape = unary_union(true_polygons(scene.name, params_D))
    out = np.zeros((len(points_Px2), grid * grid))
    for i, (px, py) in enumerate(points_Px2):
        for r in range(grid):
            for c in range(grid):
                x0 = px + (c - grid / 2) * cell
                y0 = py + (r - grid / 2) * cell
                out[i, r * grid + c] = shape.intersection(box(x0, y0, x0 + cell, y0 + cell)).area
    return out / cell**2


@pytest.mark.parametrize("name,opts", SCENES, ids=[f"{n}-{len(o)}" for n, o in SCENES])
def test_coverage_equals_shapely_at_random_and_lattice_points(name, opts):
    scene = rectbert.scene(name, **opts)
    n = 5
    params = scene.sample(jax.random.key(0), n)
    lo, hi = shapes.point_bounds()
    random = np.random.default_rng(1).uniform(lo, hi, (n, 12, 2)).astype(np.float32)
    lattice = np.broadcast_to(shapes.lattice_points(), (1, 169, 2)).astype(np.float32)
    for shapes_, pts in ((params, random), (params[:1], lattice)):
        got = np.asarray(scene.coverage(shapes_, jnp.asarray(pts)))
        want = np.stack(
            [reference(scene, p, q) for p, q in zip(np.asarray(shapes_), pts, strict=True)]
        )
        np.testing.assert_allclose(got, want, atol=2e-5)
    # the downsampled image holds the whole shape (on the canvas): its sum is that area
    image = np.asarray(scene.downsample(params))
    canvas = box(0, 0, scene.size, scene.size)
    areas = [
        unary_union(true_polygons(name, q)).intersection(canvas).area for q in np.asarray(params)
    ]
    np.testing.assert_allclose(image.sum((1, 2)) * shapes.CELL**2, areas, rtol=1e-5)
    # the figures' outlines are the same shape
    for q in np.asarray(params):
        drawn = unary_union([Polygon(o) for o in scene.outlines(q)])
        assert drawn.symmetric_difference(unary_union(true_polygons(name, q))).area < 1e-2


@pytest.mark.parametrize("name,opts", SCENES, ids=[f"{n}-{len(o)}" for n, o in SCENES])
def test_samples_lie_inside_the_canvas_and_the_support(name, opts):
    scene = rectbert.scene(name, **opts)
    params = np.asarray(scene.sample(jax.random.key(2), 3000))
    canvas = box(-1e-3, -1e-3, scene.size + 1e-3, scene.size + 1e-3)
    inside = [all(canvas.contains(q) for q in true_polygons(name, p)) for p in params[:300]]
    if name in CUT:  # some leave it, and are cut off (the coverage test checks the cut)
        assert 0 < np.mean(inside) < 1
    else:
        assert all(inside)
    support = scene.support()
    assert np.all((params >= support[:, 0] - 1e-3) & (params <= support[:, 1] + 1e-3))
    assert np.all(np.isfinite(np.asarray(scene.log_density(params))))
    outside = params.copy()
    outside[:, 0] = -50.0  # a shape off the canvas has no density
    assert np.all(np.asarray(scene.log_density(outside)) == -np.inf)


def test_rotated_density_matches_its_sampler():
    # P(region) two ways: the sampler's frequency, and the density integrated by uniform
    # Monte Carlo over the support box
    scene = rectbert.scene("rotated")
    p = np.asarray(scene.sample(jax.random.key(3), 200_000))
    region = (p[:, 0] < 100) & (p[:, 4] > 0.5)
    box_ = scene.support()
    u = box_[:, 0] + (box_[:, 1] - box_[:, 0]) * np.asarray(
        jax.random.uniform(jax.random.key(4), (1_000_000, 5))
    )
    dens = np.exp(np.asarray(scene.log_density(jnp.asarray(u))))
    vol = np.prod(box_[:, 1] - box_[:, 0])
    assert dens.mean() * vol == pytest.approx(1.0, abs=0.03)
    inside = (dens * ((u[:, 0] < 100) & (u[:, 4] > 0.5))).mean() * vol
    assert inside == pytest.approx(region.mean(), abs=0.02)


def test_rects_density_and_count():
    scene = rectbert.scene("rects", num_rects=2, min_rects=1, min_side=40.0, max_side=120.0)
    p = np.asarray(scene.sample(jax.random.key(5), 20_000))
    count = np.any(p.reshape(-1, 2, 4) != 0, -1).sum(1)
    assert set(np.unique(count)) == {1, 2} and abs((count == 1).mean() - 0.5) < 0.02
    one = rectbert.scene("rect", min_side=40.0, max_side=120.0)
    r = p.reshape(-1, 2, 4)
    single = count == 1
    # density of one rectangle = the rect prior's x P(count 1); of two = product x P(count 2)
    want = np.log(0.5) + np.asarray(one.log_density(r[single, 0]))
    np.testing.assert_allclose(np.asarray(scene.log_density(p[single])), want, rtol=1e-5)
    want2 = (
        np.log(0.5)
        + np.asarray(one.log_density(r[~single, 0]))
        + np.asarray(one.log_density(r[~single, 1]))
    )
    np.testing.assert_allclose(np.asarray(scene.log_density(p[~single])), want2, rtol=1e-5)
    swapped = np.concatenate([np.zeros((1, 4)), r[single][:1, 0]], -1)  # empty slot first
    assert float(scene.log_density(swapped)[0]) == -np.inf


def test_invariants():
    pts = jnp.asarray(np.random.default_rng(3).uniform(32, 224, (1, 40, 2)), jnp.float32)
    rect = np.array([[50.0, 60.0, 170.0, 130.0]], np.float32)
    want = np.asarray(shapes.coverage(rect, pts))
    # a rotated rectangle at theta = 0 is the axis-aligned one
    rot = rectbert.scene("rotated")
    params = np.array([[110.0, 95.0, 120.0, 70.0, 0.0]], np.float32)
    np.testing.assert_allclose(np.asarray(rot.coverage(params, pts)), want, atol=2e-6)
    # a union of one rectangle twice is that rectangle
    rects = rectbert.scene("rects", num_rects=2)
    twice = np.concatenate([rect, rect], -1)
    np.testing.assert_allclose(np.asarray(rects.coverage(twice, pts)), want, atol=2e-6)
    # a union with one slot empty is the other
    once = np.concatenate([rect, np.zeros((1, 4), np.float32)], -1)
    np.testing.assert_allclose(np.asarray(rects.coverage(once, pts)), want, atol=2e-6)


def test_convex_clipping_and_cell_areas_against_shapely():
    rng = np.random.default_rng(0)

    def quad():
        c, (w, h), t = rng.uniform(20, 236, 2), rng.uniform(2, 150, 2), rng.uniform(0, np.pi)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        q = c + corners @ rot.T
        return q if rng.random() < 0.5 else q[::-1]  # either orientation

    n = 200
    p, q = np.stack([quad() for _ in range(n)]), np.stack([quad() for _ in range(n)])
    x0, y0 = rng.uniform(0, 240, (2, n))
    got = np.asarray(jax.jit(polygons.box_area)(p, x0, y0, x0 + 16, y0 + 16))
    cells = [box(u, v, u + 16, v + 16) for u, v in zip(x0, y0, strict=True)]
    want = [Polygon(a).intersection(c).area for a, c in zip(p, cells, strict=True)]
    np.testing.assert_allclose(got, want, atol=3e-4)
    both = np.abs(
        np.asarray(jax.jit(lambda a, b: polygons.signed_area(polygons.intersect(a, b)))(p, q))
    )
    want = [Polygon(a).intersection(Polygon(b)).area for a, b in zip(p, q, strict=True)]
    np.testing.assert_allclose(both, want, atol=2e-2, rtol=1e-5)
    assert np.sum(np.asarray(want) > 0) > 50  # many overlap
    # disjoint: empty; one inside the other: the inner one
    inner = (p - p.mean(1, keepdims=True)) * 0.5 + p.mean(1, keepdims=True)
    area = jax.jit(lambda a, b: jnp.abs(polygons.signed_area(polygons.intersect(a, b))))
    np.testing.assert_array_equal(np.asarray(area(p, p + 1000)), 0.0)
    np.testing.assert_allclose(
        np.asarray(area(p, inner)), [Polygon(a).area for a in inner], atol=2e-3, rtol=1e-5
    )


def test_registry_and_records():
    for name, opts in SCENES:
        scene = rectbert.scene(name, **opts)
        assert scenes.from_record(scene.record()) == scene
    with pytest.raises(config.ConfigError, match="sqrt 2"):
        rectbert.scene("rotated", max_side=200.0)  # would not fit the canvas at 45 degrees
    with pytest.raises(config.ConfigError, match="num_rects"):
        rectbert.scene("rects", num_rects=5)


@pytest.mark.parametrize(
    "experiment,name",
    # each scene in one experiment: grid, sparse, the study's scene axis (the slow tier: 45 s
    # for junction's five compiled coverages, 16 s for grid, 14 s for the study here)
    [
        pytest.param("sparse", "junction", marks=pytest.mark.slow),
        pytest.param("grid", "rotated", marks=pytest.mark.slow),
        pytest.param("sparse_study", "rects", marks=pytest.mark.slow),
    ],
)
def test_every_scene_trains_evaluates_draws_and_loads(tmp_path, experiment, name):
    """An experiment end to end on the scene (tiny): its figures, and load_run measuring
    held-out accuracy on shapes sampled here, with tokens checked against shapely."""
    from experiments import cli
    from rectbert.recipes import grid, sparse, sparse_study
    from tests.conftest import TINY, TINY_CODEBOOK

    recipe = {"grid": grid, "sparse": sparse, "sparse_study": sparse_study}[experiment]
    workdir = tmp_path / name
    args = [f"--workdir={workdir}", "--num_steps=3", *TINY, *TINY_CODEBOOK]
    if experiment == "sparse_study":  # one row of one scene; its own codebook
        rows = ["--regimes=fresh", "--positions=sincos", "--attentions=context"]
        cli.run(recipe, *args, f"--scenes={name}", *rows)
        table = (workdir / "study.md").read_text()
        assert f"| {name} | fresh | sincos | context |" in table
        assert "(n=16) |" in table and (workdir / name / "oracle.json").exists()  # its ceiling
        workdir = workdir / name / "fresh-sincos-context"  # a row loads on its own
    else:
        extra = ["--dense_spacing=48"] if experiment == "sparse" else []
        cli.run(recipe, *args, f"--scene={name}", "--num_train_rects=0", *extra)
        figures = set(os.listdir(workdir / "figures"))
        if experiment == "sparse":
            want = {"RectangleTestResults.png", "dense_rendering.png", "occlusion.png"}
        else:
            want = {"RectangleGridInpainting.png", "DownsampledRectangle.png"}
        assert want <= figures, figures
    run = rectbert.load_run(str(workdir))
    assert run.scene == rectbert.scene(name) and run.step == 3
    shapes_ = run.scene.sample(jax.random.key(7), 6)
    pts = np.asarray(jax.random.uniform(jax.random.key(8), (6, 5, 2), minval=32, maxval=224))
    tokens = np.asarray(run.tokens(shapes_, pts))
    # the tokens are the nearest centroids of the exact coverage (shapely's, here)
    values = np.stack(
        [reference(run.scene, p, q) for p, q in zip(np.asarray(shapes_), pts, strict=True)]
    )
    dist = ((values[..., None, :] - run.codebook[None, None]) ** 2).sum(-1)
    gap = np.take_along_axis(dist, tokens[..., None], -1)[..., 0] - dist.min(-1)
    assert np.all(gap < 1e-4)  # the chosen centroid is the nearest (ties within rounding)
    hidden = np.arange(5) < 2
    probs = np.asarray(run.predict(pts, tokens, np.broadcast_to(~hidden, (6, 5))))
    assert probs.shape == (6, 5, 8) and np.allclose(probs.sum(-1), 1, atol=1e-5)


def test_bad_parameters_and_points_are_refused_in_one_line():
    pts = jnp.full((1, 3, 2), 128.0)
    for name, _ in SCENES[::2]:
        scene = rectbert.scene(name)
        good = scene.sample(jax.random.key(0), 1)
        d = good.shape[1]
        for params, points, match in [
            (good[:, :-1], pts, f"shape \\[N, {d}\\]"),  # a row too short
            (jnp.concatenate([good, good[:, :1]], 1), pts, f"shape \\[N, {d}\\]"),
            (good, pts[..., :1], "points_NxPx2"),
            (good, jnp.concatenate([pts, pts]), "N = 1"),  # one shape, two rows of points
            (good.at[0, 0].set(jnp.nan), pts, "finite"),
            (good, pts.at[0, 0, 0].set(jnp.inf), "finite"),
        ]:
            with pytest.raises(ValueError, match=match):
                scene.coverage(params, points)
        with pytest.raises(ValueError, match="finite"):
            scene.rasterise(good.at[0, 0].set(jnp.nan), 16)
        for n in (-1, 2.5):
            with pytest.raises(ValueError, match="count"):
                scene.sample(jax.random.key(0), n)
