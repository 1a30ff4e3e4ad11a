"""The scene families beyond one rectangle, pinned: their outlines against each family's own
definition of its parameters, the polygon clipping against shapely, invariants, densities
against the samplers' own frequencies, and each scene through an experiment. What every
family must do is in test_contracts.py."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

import rectbert
from rectbert import config
from rectbert.geometry import polygons, shapes
from tests import references


@pytest.mark.parametrize(
    "name,definition",
    [
        ("rotated", references.rotated_of),
        ("rects", references.rects_of),
        ("junction", references.junction_of),
    ],
)
def test_outlines_are_the_shape_the_parameters_define(name, definition):
    # the contract test (test_contracts.py) checks coverage against the outlines' areas; here
    # the outlines against each family's own definition of its parameters
    scene = rectbert.scene(name)
    for q in np.asarray(scene.sample(jax.random.key(2), 50)):
        drawn = references.region(scene.outlines(q))
        assert drawn.symmetric_difference(unary_union(definition(q))).area < 1e-2


@pytest.mark.parametrize(
    "name,definition", [("rotated", references.rotated_of), ("rects", references.rects_of)]
)
def test_rotated_and_rects_shapes_lie_inside_the_canvas(name, definition):
    scene = rectbert.scene(name)
    canvas = box(0, 0, scene.size, scene.size).buffer(1e-3)
    params = np.asarray(scene.sample(jax.random.key(2), 300))
    assert all(canvas.contains(unary_union(definition(p))) for p in params)


def test_junction_strokes_may_leave_the_canvas_and_are_cut_there():
    scene = rectbert.scene("junction")
    params = np.asarray(scene.sample(jax.random.key(2), 300))
    canvas = box(0, 0, scene.size, scene.size)
    inside = [canvas.buffer(1e-3).contains(unary_union(references.junction_of(p))) for p in params]
    assert 0 < np.mean(inside) < 1
    cut = params[~np.asarray(inside)][:3]
    image = np.asarray(scene.downsample(cut))
    areas = [unary_union(references.junction_of(q)).intersection(canvas).area for q in cut]
    np.testing.assert_allclose(image.sum((1, 2)) * shapes.CELL**2, areas, rtol=1e-5)


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


def test_options_that_would_not_fit_are_refused():
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
    values = references.coverage(run.scene, shapes_, pts)
    dist = ((values[..., None, :] - run.codebook[None, None]) ** 2).sum(-1)
    gap = np.take_along_axis(dist, tokens[..., None], -1)[..., 0] - dist.min(-1)
    assert np.all(gap < 1e-4)  # the chosen centroid is the nearest (ties within rounding)
    hidden = np.arange(5) < 2
    probs = np.asarray(run.predict(pts, tokens, np.broadcast_to(~hidden, (6, 5))))
    assert probs.shape == (6, 5, 8) and np.allclose(probs.sum(-1), 1, atol=1e-5)
