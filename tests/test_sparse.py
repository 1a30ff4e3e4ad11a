"""The sparse task: continuous embeddings, equivariance, the context mask, baselines, losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert import codebook, inference, losses, shapes, tasks, train
from rectbert import model as model_lib

PRIOR = dict(min_side=32.0, max_side=192.0, aspect=None, contains_center=False)


@pytest.fixture(scope="module")
def centroids():
    rects = shapes.sample_rects(jax.random.key(1), 60)
    return codebook.fit_codebook(jax.random.key(2), rects, 12)[0]


def encoder(position, attention, **kw):
    cfg = model_lib.ModelConfig(
        num_tokens=12,
        position=position,
        attention=attention,
        embed_dim=32,
        mlp_dim=64,
        num_heads=4,
        num_layers=2,
        **kw,
    )
    model = model_lib.Encoder(cfg)
    tokens = jax.random.randint(jax.random.key(3), (2, 10), 0, 13)
    points = jax.random.uniform(jax.random.key(4), (2, 10, 2)) * 192 + 32
    params = model.init(jax.random.key(5), tokens, points)["params"]
    return model, params, tokens, points


@pytest.mark.parametrize("position", model_lib.CONTINUOUS_POSITIONS)
@pytest.mark.parametrize("attention", model_lib.ATTENTIONS)
def test_continuous_embeddings_are_permutation_equivariant(position, attention):
    model, params, tokens, points = encoder(position, attention)
    out = np.asarray(model.apply({"params": params}, tokens, points))
    assert out.shape == (2, 10, 12)
    perm = np.random.default_rng(0).permutation(10)
    out_p = np.asarray(model.apply({"params": params}, tokens[:, perm], points[:, perm]))
    np.testing.assert_allclose(out_p, out[:, perm], atol=2e-5)


def test_nerf_features_by_formula():
    f = np.asarray(model_lib.nerf_features(jnp.array([[[64.0, 192.0]]]), 8, 256.0))
    u = np.array([0.25, 0.75])
    freqs = np.pi * np.array([1.0, 2.0])
    want = np.concatenate(
        [np.concatenate([np.sin(u[i] * freqs), np.cos(u[i] * freqs)]) for i in range(2)]
    )
    np.testing.assert_allclose(f[0, 0], want, atol=1e-6)


@pytest.mark.parametrize("attention,leaks", [("context", False), ("full", True)])
def test_context_attention_stops_information_between_hidden_queries(attention, leaks):
    model, params, tokens, points = encoder("nerf", attention)
    tokens = tokens.at[:, 6:].set(12)  # positions 6..9 hidden ([mask] is id 12)

    def out(points):
        return model.apply({"params": params}, tokens, points)[0, 6].sum()

    grad = np.abs(np.asarray(jax.grad(out)(points))[0]).sum(-1)
    assert (grad[7:].sum() > 1e-6) == leaks, grad
    assert np.all(grad[:7] > 1e-9)  # the visible points and the query itself matter


def test_query_is_independent_of_chunking_with_context_attention(centroids):
    cfg = model_lib.ModelConfig(
        num_tokens=12,
        position="fourier",
        attention="context",
        embed_dim=32,
        mlp_dim=64,
        num_heads=4,
        num_layers=1,
    )
    model = model_lib.Encoder(cfg)
    params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 4, 2)))
    predict = train.make_predict(cfg)
    vis_p = jax.random.uniform(jax.random.key(1), (9, 2)) * 192 + 32
    vis_t = jax.random.randint(jax.random.key(2), (9,), 0, 12)
    q = inference.dense_lattice(32.0)
    a = inference.query(predict, params["params"], vis_p, vis_t, q, chunk=1)
    b = inference.query(predict, params["params"], vis_p, vis_t, q, chunk=7)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sparse_tokens_at_lattice_points_equal_grid_tokens(centroids):
    rects = shapes.sample_rects(jax.random.key(6), 5)
    lattice = jnp.broadcast_to(shapes.lattice_points(), (5, 169, 2))
    sparse = codebook.quantise(shapes.coverage(rects, lattice), centroids)
    np.testing.assert_array_equal(
        np.asarray(sparse), np.asarray(tasks.rect_tokens(rects, centroids))
    )
    # and a sparse batch's tokens are the exact coverage's nearest centroid (brute force)
    task = tasks.SparseTask(mask=tasks.MaskSpec(5), centroids=centroids, prior=PRIOR)
    b = task.train_batch(jax.random.key(7), 3, 4)
    v = np.asarray(b.values)
    want = np.argmin(((v[..., None, :] - np.asarray(centroids)) ** 2).sum(-1), -1)
    np.testing.assert_array_equal(np.asarray(b.tokens), want)
    assert np.all(np.asarray(b.mask).sum(1) == 5)


def test_fixed_set_never_trains_on_a_held_out_rectangle(centroids):
    train_rects = shapes.sample_rects(jax.random.key(8), 100, **PRIOR)
    task = tasks.SparseTask(
        mask=tasks.MaskSpec(5),
        centroids=centroids,
        prior=PRIOR,
        train_rects=train_rects,
        eval_examples=64,
    )
    key = train.data_key(0)
    seen = np.concatenate(
        [np.asarray(task.train_rects_at(jax.random.split(key)[0], s, 32)) for s in range(20)]
    )
    train_set = {tuple(r) for r in np.asarray(train_rects)}
    assert {tuple(r) for r in seen} <= train_set and len({tuple(r) for r in seen}) == 100
    held = np.asarray(task.eval_rects(train.eval_key(0)))
    assert not ({tuple(r) for r in held} & train_set)
    # the training-set evaluation really uses training rectangles
    tr = task.train_eval_set(train.eval_key(0), key, 32)
    assert tr.tokens.shape == (64, 24)


def test_baselines_against_brute_force(centroids):
    task = tasks.SparseTask(mask=tasks.MaskSpec(5), centroids=centroids, prior=PRIOR)
    b = task.eval_set(train.eval_key(0))
    near = np.asarray(tasks.nearest_visible_tokens(b))
    pts, tok, mask = (np.asarray(a) for a in (b.points, b.tokens, b.mask))
    for i in range(20):
        for p in np.flatnonzero(mask[i]):
            d = ((pts[i] - pts[i, p]) ** 2).sum(-1)
            d[mask[i]] = np.inf
            assert near[i, p] == tok[i, np.argmin(d)]
    m = task.eval_extra(b.tokens, b, None)
    assert float(m["eval/majority_accuracy"]) == pytest.approx(
        np.mean(tok[mask] == task.majority_token)
    )
    assert all(float(m[f"eval/token_accuracy/{k:02d}"]) in (0.0, 1.0) for k in range(12))


def test_soft_targets_and_smoothing(centroids):
    task = tasks.SparseTask(mask=tasks.MaskSpec(5), centroids=centroids, prior=PRIOR)
    b = task.train_batch(jax.random.key(9), 0, 8)
    cold = losses.target_distribution(b, 12, "soft", soft_temperature=1e-4, centroids_KxG=centroids)
    np.testing.assert_array_equal(np.asarray(cold.argmax(-1)), np.asarray(b.tokens))
    warm = np.asarray(
        losses.target_distribution(b, 12, "soft", soft_temperature=1.0, centroids_KxG=centroids)
    )
    np.testing.assert_allclose(warm.sum(-1), 1.0, rtol=1e-5)
    assert warm.max(-1).mean() < 0.9  # spread over near centroids
    smooth = np.asarray(losses.target_distribution(b, 12, "smooth", label_smoothing=0.12))
    np.testing.assert_allclose(smooth.max(-1), 1 - 0.12 + 0.01, rtol=1e-5)
    logits = jax.random.normal(jax.random.key(0), (8, 24, 12))
    g = jax.grad(lambda z: losses.training_loss(z, None, b, kind="soft", centroids_KxG=centroids))(
        logits
    )
    assert np.all(np.asarray(g)[~np.asarray(b.mask)] == 0)


def test_render_on_the_lattice_equals_stitch(centroids):
    rects = shapes.sample_rects(jax.random.key(10), 1)
    patches = np.asarray(tasks.rect_patches(rects))[0]
    img = inference.render(np.asarray(shapes.lattice_points()), patches)
    small = img.reshape(16, 16, 16, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(small, np.asarray(codebook.stitch(patches)), atol=1e-6)
    np.testing.assert_allclose(small, np.asarray(shapes.downsample(rects))[0], atol=1e-6)
