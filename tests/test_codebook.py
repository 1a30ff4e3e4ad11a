"""codebook.py against scikit-learn's KMeans and brute-force numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

import rectbert
from rectbert.geometry import codebook, shapes
from tests.conftest import RECT


def inertia_np(x, centroids):
    """Sum of squared distances to the nearest centroid, by brute force in float64."""
    d = ((np.asarray(x, np.float64)[:, None] - np.asarray(centroids, np.float64)) ** 2).sum(-1)
    return d.min(1).sum()


@pytest.fixture(scope="module")
def rect_patches():
    rects = RECT.sample(jax.random.key(1), 120)
    return np.asarray(codebook.extract_patches(shapes.downsample(rects)).reshape(-1, 16))


def test_kmeans_matches_sklearn_on_rectangle_patches(rect_patches):
    c, inertia = rectbert.kmeans(jax.random.key(0), rect_patches, 20, n_init=10)
    sk = KMeans(20, n_init=10, random_state=0).fit(rect_patches)
    assert float(inertia) <= 1.01 * sk.inertia_
    # the reported inertia is that of the returned centroids on the original (unmerged) data
    np.testing.assert_allclose(float(inertia), inertia_np(rect_patches, c), rtol=1e-4)


def test_kmeans_matches_sklearn_on_blobs():
    x, _ = make_blobs(20_000, n_features=8, centers=12, random_state=0)
    x = x.astype(np.float32)
    c, inertia = rectbert.kmeans(jax.random.key(0), x, 12, n_init=4)
    sk = KMeans(12, n_init=4, random_state=0).fit(x)
    np.testing.assert_allclose(float(inertia), sk.inertia_, rtol=1e-3)
    # same partition: every sklearn centre has one of ours within a small distance
    d = np.linalg.norm(sk.cluster_centers_[:, None] - np.asarray(c)[None], axis=-1)
    assert d.min(1).max() < 1e-2


def test_kmeans_inertia_never_increases_and_is_deterministic(rect_patches):
    key = jax.random.key(7)
    c1, i1, hist = rectbert.kmeans(key, rect_patches, 20, n_init=3, return_history=True)
    lasts = []
    for run in np.asarray(hist):
        run = run[~np.isnan(run)]
        assert len(run) >= 2
        assert np.all(np.diff(run) <= 1e-6 * run[:-1])
        lasts.append(run[-1])
    # the returned inertia follows one more update of the best run
    assert float(i1) <= min(lasts) * (1 + 1e-6)
    c2, i2 = rectbert.kmeans(key, rect_patches, 20, n_init=3)
    np.testing.assert_array_equal(np.asarray(c1), np.asarray(c2))
    assert float(i1) == float(i2)


def test_weights_and_duplicate_merging_agree_with_repeated_rows():
    rng = np.random.default_rng(0)
    base = make_blobs(300, n_features=4, centers=5, random_state=1)[0].astype(np.float32)
    counts = rng.integers(1, 4, size=300)
    repeated = np.repeat(base, counts, axis=0)
    # weighted rows and repeated rows are the same data set: equal (well-separated) optimum
    _, i_weighted = rectbert.kmeans(jax.random.key(0), base, 5, weights_N=counts, n_init=8)
    _, i_repeated = rectbert.kmeans(
        jax.random.key(0), repeated, 5, n_init=8, merge_duplicates=False
    )
    sk = KMeans(5, n_init=8, random_state=0).fit(repeated)
    np.testing.assert_allclose(float(i_weighted), sk.inertia_, rtol=1e-3)
    np.testing.assert_allclose(float(i_repeated), sk.inertia_, rtol=1e-3)
    rows, weights, count = codebook._merge_duplicates(
        jnp.asarray(repeated), jnp.ones(len(repeated))
    )
    assert int(count) == 300 and float(weights.sum()) == len(repeated)
    np.testing.assert_array_equal(np.sort(np.asarray(weights)[:300]), np.sort(counts))


def test_empty_cluster_takes_the_farthest_point():
    x = jnp.array([[0.0], [1.0], [10.0], [2.0]])
    labels = jnp.array([0, 0, 0, 0])  # cluster 1 is empty
    min_d = jnp.array([1.0, 0.0, 81.0, 1.0])
    new = codebook._lloyd_update(x, jnp.ones(4), labels, min_d, 2)
    np.testing.assert_allclose(np.asarray(new), [[13.0 / 4], [10.0]])


def test_kmeans_bad_inputs():
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="k must be"):
        rectbert.kmeans(jax.random.key(0), x, 6)
    with pytest.raises(ValueError, match="x_NxD"):
        rectbert.kmeans(jax.random.key(0), np.zeros((5, 3, 2)), 2)
    with pytest.raises(ValueError, match="weights_N"):
        rectbert.kmeans(jax.random.key(0), x, 2, weights_N=np.ones(4))


def test_quantise_and_decode_against_brute_force():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(7, 9, 16)).astype(np.float32)
    c = rng.uniform(size=(20, 16)).astype(np.float32)
    tokens = np.asarray(codebook.quantise(x, c))
    for idx in np.ndindex(7, 9):
        assert tokens[idx] == np.argmin(((x[idx] - c) ** 2).sum(-1))
    np.testing.assert_array_equal(np.asarray(codebook.decode(tokens, c)), c[tokens])


def test_extract_and_stitch():
    img = np.random.default_rng(2).uniform(size=(3, 16, 16)).astype(np.float32)
    patches = np.asarray(codebook.extract_patches(img))
    assert patches.shape == (3, 169, 16)
    for i, j in [(0, 0), (0, 12), (5, 7), (12, 12)]:
        np.testing.assert_array_equal(
            patches[:, i * 13 + j], img[:, i : i + 4, j : j + 4].reshape(3, 16)
        )
    np.testing.assert_allclose(np.asarray(codebook.stitch(patches)), img, atol=1e-6)
    # a hand case: stitching patches that are all 1 in row 0 and 0 elsewhere
    ones = np.zeros((169, 16), np.float32)
    ones[:, :4] = 1.0
    out = np.asarray(codebook.stitch(ones))
    # pixel (0, 0) is row 0 of its one patch; pixel (1, 0) is row 1 of patch (0,0), row 0 of (1,0)
    assert out[0, 0] == 1.0 and out[1, 0] == 0.5 and out[3, 5] == 0.25 and out[15, 15] == 0.0


def test_stitched_reconstruction_within_quantisation_error(rect_patches):
    c, _ = rectbert.kmeans(jax.random.key(0), rect_patches, 20)
    rects = RECT.sample(jax.random.key(9), 5)
    img = np.asarray(shapes.downsample(rects))
    patches = np.asarray(codebook.extract_patches(img))
    recon = np.asarray(codebook.stitch(codebook.decode(codebook.quantise(patches, c), c)))
    # each pixel is the mean of its patches' estimates, so (Jensen) its squared error is at
    # most the mean of their squared errors; compute that bound by brute force
    err2 = (np.asarray(c)[np.asarray(codebook.quantise(patches, c))] - patches) ** 2
    bound = np.zeros((5, 16, 16))
    cover = np.zeros((16, 16))
    for i in range(13):
        for j in range(13):
            bound[:, i : i + 4, j : j + 4] += err2[:, i * 13 + j].reshape(5, 4, 4)
            cover[i : i + 4, j : j + 4] += 1
    assert np.all((recon - img) ** 2 <= bound / cover + 1e-6)
    assert np.mean((recon - img) ** 2) < 0.01


def test_fit_codebook_is_kmeans_of_downsampled_patches():
    rects = RECT.sample(jax.random.key(3), 30)
    c, inertia = codebook.fit_codebook(jax.random.key(4), shapes.downsample(rects), 8)
    patches = np.stack(
        [
            img[i : i + 4, j : j + 4].ravel()
            for img in np.asarray(shapes.downsample(rects))
            for i in range(13)
            for j in range(13)
        ]
    )
    np.testing.assert_allclose(float(inertia), inertia_np(patches, c), rtol=1e-4)
