"""Point samplers by brute force: uniform bounds, points on the edges, no corner in any window."""

import dataclasses
from typing import ClassVar

import jax
import numpy as np
import pytest

from rectbert import config, scenes
from rectbert.data import points
from rectbert.data.sparse_task import SparseTask
from rectbert.data.tasks import MaskSpec
from tests.conftest import RECT


def test_point_samplers():
    key = jax.random.key(6)
    rects = np.array([[40.0, 50.0, 120.0, 200.0], [100.0, 60.0, 180.0, 90.0]], np.float32)
    u = np.asarray(points.sample("uniform", key, RECT, rects, 500))
    assert u.shape == (2, 500, 2) and u.min() >= 32 and u.max() <= 224
    # edges: every point on the boundary (both rectangles lie inside the point bounds)
    e = np.asarray(points.sample("edges", key, RECT, rects, 500))
    for rect, pts in zip(rects, e, strict=True):
        on_x = np.isclose(pts[:, 0], rect[0]) | np.isclose(pts[:, 0], rect[2])
        on_y = np.isclose(pts[:, 1], rect[1]) | np.isclose(pts[:, 1], rect[3])
        within = (pts >= rect[:2] - 1e-3).all(1) & (pts <= rect[2:] + 1e-3).all(1)
        assert np.all((on_x | on_y) & within)
        # perimeter-uniform: the share on the two vertical edges is h / (w + h)
        w, h = rect[2] - rect[0], rect[3] - rect[1]
        assert abs(np.mean(on_x & ~on_y) - h / (w + h)) < 0.07
    # nocorners: no 64x64 window holds a corner (brute force), and the rest is uniform
    nc = np.asarray(points.sample("nocorners", key, RECT, rects, 4000))
    for rect, pts in zip(rects, nc, strict=True):
        for cx in rect[[0, 2]]:
            for cy in rect[[1, 3]]:
                hit = (pts[:, 0] - 32 <= cx) & (cx < pts[:, 0] + 32)
                hit &= (pts[:, 1] - 32 <= cy) & (cy < pts[:, 1] + 32)
                assert not hit.any()
        ref = np.random.default_rng(0).uniform(32, 224, (200_000, 2))
        keep = np.ones(len(ref), bool)
        for cx in rect[[0, 2]]:
            for cy in rect[[1, 3]]:
                keep &= ~((np.abs(ref[:, 0] - cx) <= 32) & (np.abs(ref[:, 1] - cy) <= 32))
        np.testing.assert_allclose(pts.mean(0), ref[keep].mean(0), atol=4.0)


def test_unknown_sampler_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="gaussian"):
        points.sample("gaussian", jax.random.key(0), RECT, np.zeros((1, 4)), 3)
    assert points.get("uniform").uniform and not points.get("edges").uniform


def test_a_sampler_the_scene_cannot_serve_is_refused_naming_the_ones_it_can():
    @dataclasses.dataclass(frozen=True)
    class Dot(scenes.Scene):  # a family with neither corners nor a boundary sampler
        name: ClassVar[str] = "dot"
        param_dim: ClassVar[int] = 2
        size: int = 256

    for name in ("nocorners", "edges"):
        with pytest.raises(config.ConfigError) as e:
            SparseTask(scene=Dot(), mask=MaskSpec(4), sampler=name)
        assert e.value.field == "sampler" and "['uniform']" in e.value.allowed, e.value
    assert SparseTask(scene=Dot(), mask=MaskSpec(4)).sampler == "uniform"
    served = {n for n, s in points.SAMPLERS.items() if s.supports(RECT)}
    assert served == {"uniform", "edges", "near", "nocorners"}, served  # no strokes
