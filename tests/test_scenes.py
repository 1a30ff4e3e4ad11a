"""Scene families against independent references: the rect sampler's bounds, its density
against its own frequencies, the generic downsample against scikit-image, hard bounds by
brute force, and the registry."""

import jax
import numpy as np
import pytest
from skimage.measure import block_reduce

import rectbert
from rectbert import config, scenes
from rectbert.geometry import shapes
from tests.conftest import RECT


def test_rect_sampler_respects_bounds_aspect_and_centre():
    key = jax.random.key(5)
    r = np.asarray(
        rectbert.scene("rect", min_side=20, max_side=100, aspect=(0.5, 2.0)).sample(key, 4000)
    )
    w, h = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
    assert r.min() >= 0 and r.max() <= 256
    assert w.min() >= 20 - 1e-4 and w.max() <= 100 + 1e-4
    assert h.min() >= 20 - 1e-4 and h.max() <= 100 + 1e-4
    assert (h / w).min() >= 0.5 - 1e-5 and (h / w).max() <= 2.0 + 1e-5
    # the width is uniform on [20, 100]: mean 60, and it fills the range
    assert abs(w.mean() - 60) < 2 and w.min() < 22 and w.max() > 98
    centred = rectbert.scene("rect", min_side=8, max_side=64, contains_center=True)
    c = np.asarray(centred.sample(key, 2000))
    assert np.all((c[:, 0] <= 128) & (c[:, 2] >= 128) & (c[:, 1] <= 128) & (c[:, 3] >= 128))


def test_options_are_validated_naming_the_option():
    for opts, field in [
        (dict(min_side=50, max_side=40), "max_side"),
        (dict(min_side=0), "min_side"),
        (dict(min_side=100, max_side=110, aspect=(3.0, 4.0)), "aspect"),
        (dict(aspect=(2.0, 1.0)), "aspect"),
        (dict(aspect=(1.0,)), "aspect"),
        (dict(sides=3), "sides"),
        (dict(contains_center="yes"), "contains_center"),
        (dict(contains_center=1), "contains_center"),
        (dict(min_side="40"), "min_side"),
        (dict(max_side=float("nan")), "max_side"),
        (dict(aspect="1,2"), "aspect"),
        (dict(aspect=(1, "2")), "aspect"),
    ]:
        with pytest.raises(config.ConfigError) as e:
            rectbert.scene("rect", **opts)
        assert e.value.field == field, (opts, e.value)
    with pytest.raises(config.ConfigError, match="rect"):
        rectbert.scene("hexagon")
    # what is allowed is taken as the option's type: ints for sides, lists for the range
    typed = rectbert.scene("rect", min_side=40, aspect=[1, 2], contains_center=np.True_)
    assert typed == rectbert.scene("rect", min_side=40.0, aspect=(1.0, 2.0), contains_center=True)
    assert type(typed.min_side) is float and typed.contains_center is True


@pytest.mark.parametrize(
    "opts", [{}, dict(min_side=20.0, max_side=120.0, aspect=(0.5, 2.0), contains_center=True)]
)
def test_density_matches_the_sampler(opts):
    # P(rect in a region) two ways: the sampler's frequency, and the density integrated by
    # uniform Monte Carlo over a box holding the support
    scene = rectbert.scene("rect", **opts)
    rects = np.asarray(scene.sample(jax.random.key(0), 200_000))
    region = (rects[:, 0] < 60) & (rects[:, 2] - rects[:, 0] > 80)
    u = jax.random.uniform(jax.random.key(1), (400_000, 4)) * 256
    dens = np.exp(np.asarray(scene.log_density(u)))
    u = np.asarray(u)
    vol = 256.0**4
    total = dens.mean() * vol
    inside = (dens * ((u[:, 0] < 60) & (u[:, 2] - u[:, 0] > 80))).mean() * vol
    assert total == pytest.approx(1.0, abs=0.05)
    assert inside == pytest.approx(region.mean(), abs=0.03)
    assert np.all(np.isfinite(np.asarray(scene.log_density(rects[:1000]))))
    # the support box holds every sample
    box = scene.support()
    assert np.all((rects >= box[:, 0] - 1e-4) & (rects <= box[:, 1] + 1e-4))


def test_generic_downsample_and_rasterise_equal_block_means():
    # the base class's downsample (coverage at cell centres) is what new families inherit
    rng = np.random.default_rng(0)
    rects = []
    for _ in range(6):
        x0, x1 = sorted(rng.choice(257, 2, replace=False))
        y0, y1 = sorted(rng.choice(257, 2, replace=False))
        rects.append((x0, y0, x1, y1))
    rects = np.array(rects, np.float32)
    raster = np.zeros((6, 256, 256))
    for img, (x0, y0, x1, y1) in zip(raster, rects.astype(int), strict=True):
        img[y0:y1, x0:x1] = 1.0
    generic = np.asarray(scenes.Scene.downsample(RECT, rects))
    np.testing.assert_allclose(generic, block_reduce(raster, (1, 16, 16), np.mean), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(RECT.rasterise(rects)), raster)
    np.testing.assert_allclose(
        np.asarray(RECT.rasterise(rects, 32)), block_reduce(raster, (1, 8, 8), np.mean), atol=1e-6
    )
    with pytest.raises(ValueError, match="size"):
        RECT.rasterise(rects, 100)


def test_hard_bounds_hold_every_rectangle_that_meets_the_hit_windows():
    # brute force: sample many rectangles, keep those whose coverage is > 0 at every hit
    # point; each must lie inside the hard box
    rects = np.asarray(RECT.sample(jax.random.key(3), 20_000))
    pts = np.array([[100.0, 120.0], [140.0, 90.0], [60.0, 200.0]], np.float32)
    hit = np.array([True, True, False])
    cov = np.asarray(shapes.coverage(rects, np.broadcast_to(pts, (len(rects), 3, 2))))
    meets = (cov.sum(-1) > 0)[:, hit].all(1)
    assert meets.sum() > 100
    box = np.asarray(RECT.hard_bounds(pts, hit))
    inside = (rects >= box[:, 0] - 1e-4) & (rects <= box[:, 1] + 1e-4)
    assert inside[meets].all()
    assert not inside.all(1).all()  # and it is tighter than the support


def test_records_round_trip_and_outlines_trace_the_shape():
    scene = rectbert.scene("rect", aspect=(0.5, 2.0), contains_center=True)
    assert scenes.from_record(scene.record()) == scene
    (poly,) = scene.outlines(np.array([10.0, 20.0, 50.0, 80.0]))
    x, y = poly[:, 0], poly[:, 1]
    assert 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) == 40 * 60
