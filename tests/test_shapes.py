"""shapes.py against independent references: rasters, scikit-image, brute-force integration."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.measure import block_reduce

import rectbert
from rectbert.data import points
from rectbert.geometry import shapes
from tests.conftest import RECT


def raster_np(rect, size):
    """Pixel-exact raster of an integer rectangle, by slicing."""
    x0, y0, x1, y1 = (int(v) for v in rect)
    img = np.zeros((size, size))
    img[y0:y1, x0:x1] = 1.0
    return img


def supersample_np(rect, x_lo, y_lo, width, samples):
    """Midpoint-rule coverage of the square [x_lo, x_lo + width) x [y_lo, ...): samples^2 points."""
    t = (np.arange(samples) + 0.5) * width / samples
    xs, ys = x_lo + t, y_lo + t
    inside_x = (xs >= rect[0]) & (xs < rect[2])
    inside_y = (ys >= rect[1]) & (ys < rect[3])
    return inside_y[:, None] & inside_x[None, :]


def test_downsample_equals_skimage_block_mean_for_integer_rects():
    rng = np.random.default_rng(0)
    rects = []
    for _ in range(16):
        x0, x1 = sorted(rng.choice(257, 2, replace=False))
        y0, y1 = sorted(rng.choice(257, 2, replace=False))
        rects.append((x0, y0, x1, y1))
    rects = np.array(rects, np.float32)
    got = np.asarray(rectbert.downsample(rects))
    for rect, img in zip(rects, got, strict=True):
        want = block_reduce(raster_np(rect, 256), (16, 16), np.mean)
        np.testing.assert_allclose(img, want, atol=1e-6)


def test_downsample_matches_supersampling_for_fractional_rects():
    # a 48x48 canvas (3x3 cells) keeps the 2048-per-cell brute force cheap; the midpoint rule
    # is off by at most half a sample (1/2048 of a cell) per edge crossing a cell
    rng = np.random.default_rng(1)
    samples = 2048
    for _ in range(4):
        x0, x1 = np.sort(rng.uniform(0, 48, 2))
        y0, y1 = np.sort(rng.uniform(0, 48, 2))
        rect = np.array([x0, y0, x1, y1], np.float32)
        got = np.asarray(rectbert.downsample(rect[None], size=48, cell=16))[0]
        inside = supersample_np(rect, 0.0, 0.0, 48.0, 3 * samples)
        want = inside.reshape(3, samples, 3, samples).mean(axis=(1, 3))
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_rasterise_is_pixel_exact_for_integer_rects():
    rect = np.array([[3, 250, 200, 256]], np.float32)
    np.testing.assert_array_equal(np.asarray(shapes.rasterise(rect))[0], raster_np(rect[0], 256))


def test_coverage_at_lattice_points_equals_downsampled_patches():
    rects = RECT.sample(jax.random.key(2), 8)
    points = jnp.broadcast_to(shapes.lattice_points(), (8, 169, 2))
    cov = np.asarray(rectbert.coverage(rects, points))
    img = np.asarray(rectbert.downsample(rects))
    for n in range(8):
        for i in range(13):
            for j in range(13):
                want = img[n, i : i + 4, j : j + 4].ravel()
                np.testing.assert_allclose(cov[n, i * 13 + j], want, atol=1e-6)
    # hand-computed lattice: the first point is (32, 32), then x advances by 16
    np.testing.assert_array_equal(np.asarray(shapes.lattice_points())[:2], [[32, 32], [48, 32]])


def test_coverage_at_continuous_points_matches_numerical_integration():
    rng = np.random.default_rng(3)
    rects = np.asarray(RECT.sample(jax.random.key(3), 3))
    points = rng.uniform(32, 224, size=(3, 2, 2)).astype(np.float32)
    # put one point where its window straddles a corner, so all cases occur
    points[0, 0] = rects[0, :2] + np.float32(5.3)
    got = np.asarray(rectbert.coverage(rects, points))
    samples = 1024  # per 16-px cell
    for n in range(3):
        for p in range(2):
            px, py = points[n, p]
            inside = supersample_np(rects[n], px - 32, py - 32, 64.0, 4 * samples)
            want = inside.reshape(4, samples, 4, samples).mean(axis=(1, 3)).ravel()
            np.testing.assert_allclose(got[n, p], want, atol=2e-3)


def test_coverage_compiles_once_per_shape_and_vmaps():
    key = jax.random.key(4)
    traced = jax.jit(chex.assert_max_traces(rectbert.coverage, n=1))
    for i in range(3):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        rects = RECT.sample(k1, 5)
        traced(rects, points.uniform(k2, RECT, rects, 7))
    # vmap over an extra leading axis equals the flattened call
    rects_Nx4 = RECT.sample(key, 12)
    rects_BxNx4 = rects_Nx4.reshape(3, 4, 4)
    points_BxNxPx2 = points.uniform(key, RECT, rects_Nx4, 6).reshape(3, 4, 6, 2)
    batched = jax.vmap(rectbert.coverage)(rects_BxNx4, points_BxNxPx2)
    flat = rectbert.coverage(rects_BxNx4.reshape(12, 4), points_BxNxPx2.reshape(12, 6, 2))
    np.testing.assert_array_equal(np.asarray(batched).reshape(12, 6, 16), np.asarray(flat))


def test_bad_inputs_raise_value_errors_naming_the_argument():
    good = np.array([[10.0, 10.0, 50.0, 60.0]])
    with pytest.raises(ValueError, match="rects_Nx4.*x0 < x1"):
        rectbert.downsample(np.array([[50.0, 10.0, 50.0, 60.0]]))
    with pytest.raises(ValueError, match="rects_Nx4.*x0 < x1"):
        rectbert.coverage(np.array([[10.0, 70.0, 50.0, 60.0]]), np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="rects_Nx4.*shape"):
        rectbert.downsample(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="points_NxPx2"):
        rectbert.coverage(good, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="points_NxPx2"):
        rectbert.coverage(good, np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="cell"):
        rectbert.downsample(good, size=256, cell=15)
    # shape checks still fire under jit; value checks wait for concrete values
    with pytest.raises(ValueError, match="points_NxPx2"):
        jax.jit(rectbert.coverage)(good, np.zeros((1, 3)))
    out = jax.jit(rectbert.coverage)(good, np.full((1, 1, 2), 30.0))
    assert out.shape == (1, 1, 16)


def test_enumerate_squares_counts_and_shapes():
    images, squares = shapes.enumerate_squares(8, 2, 5)
    images, squares = np.asarray(images), np.asarray(squares)
    assert len(images) == 126 == shapes.num_squares(8, 2, 5)  # 7^2 + 6^2 + 5^2 + 4^2
    assert len({img.tobytes() for img in images}) == 126
    for img, (x0, y0, x1, y1) in zip(images, squares, strict=True):
        assert x1 - x0 == y1 - y0 and 2 <= x1 - x0 <= 5
        np.testing.assert_array_equal(img, raster_np((x0, y0, x1, y1), 8))
    assert shapes.num_squares(8, 1, 5) == 190
