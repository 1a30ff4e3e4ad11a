"""The sparse task: continuous embeddings, equivariance, the context mask, baselines, losses."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert.analysis import render
from rectbert.data import keys
from rectbert.data.scene_tasks import patches
from rectbert.data.sparse_task import nearest_visible_tokens
from rectbert.geometry import codebook, shapes
from rectbert.model import encoder as model_lib
from rectbert.model import losses
from rectbert.training import evaluation
from tests.conftest import RECT


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
    params = jax.jit(model.init)(jax.random.key(5), tokens, points)["params"]
    return model, params, tokens, points


@pytest.mark.parametrize("position", ["sincos"])  # every one, full attention: test_contracts
@pytest.mark.parametrize("attention", ["context"])
def test_continuous_embeddings_are_permutation_equivariant(position, attention):
    model, params, tokens, points = encoder(position, attention)
    out = np.asarray(jax.jit(model.apply)({"params": params}, tokens, points).logits)
    assert out.shape == (2, 10, 12)
    perm = np.random.default_rng(0).permutation(10)
    out_p = np.asarray(
        jax.jit(model.apply)({"params": params}, tokens[:, perm], points[:, perm]).logits
    )
    np.testing.assert_allclose(out_p, out[:, perm], atol=2e-5)


@pytest.mark.parametrize("attention,leaks", [("context", False), ("full", True)])
def test_context_attention_stops_information_between_hidden_queries(attention, leaks):
    model, params, tokens, points = encoder("nerf", attention)
    tokens = tokens.at[:, 6:].set(12)  # positions 6..9 hidden ([mask] is id 12)

    def out(points):
        return model.apply({"params": params}, tokens, points).logits[0, 6].sum()

    grad = np.abs(np.asarray(jax.jit(jax.grad(out))(points))[0]).sum(-1)
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
    params = jax.jit(model.init)(
        jax.random.key(0), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 4, 2))
    )
    predict = evaluation.make_predict(cfg)
    vis_p = jax.random.uniform(jax.random.key(1), (9, 2)) * 192 + 32
    vis_t = jax.random.randint(jax.random.key(2), (9,), 0, 12)
    q = render.dense_lattice(32.0)
    a = render.query(predict, params["params"], vis_p, vis_t, q, chunk=1)
    b = render.query(predict, params["params"], vis_p, vis_t, q, chunk=7)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sparse_tokens_at_lattice_points_equal_grid_tokens(sparse_task, centroids):
    rects = RECT.sample(jax.random.key(6), 5)
    lattice = jnp.broadcast_to(shapes.lattice_points(), (5, 169, 2))
    sparse = codebook.quantise(RECT.coverage(rects, lattice), centroids)
    grid = codebook.quantise(patches(RECT, rects), centroids)
    np.testing.assert_array_equal(np.asarray(sparse), np.asarray(grid))
    # and a sparse batch's tokens are the exact coverage's nearest centroid (brute force)
    b = jax.jit(sparse_task.train_batch, static_argnums=1)(3, 4)
    v = np.asarray(b.values)
    want = np.argmin(((v[..., None, :] - np.asarray(centroids)) ** 2).sum(-1), -1)
    np.testing.assert_array_equal(np.asarray(b.tokens), want)
    assert np.all(np.asarray(b.mask).sum(1) == 5)


def test_fixed_set_never_trains_on_a_held_out_shape(sparse_task):
    task = dataclasses.replace(sparse_task, num_train=100, eval_examples=64)
    k_data = jax.random.split(keys.key(0, "data"))[0]
    seen = np.concatenate([np.asarray(task.shapes_at(k_data, s, 32)) for s in range(20)])
    train_set = {tuple(r) for r in np.asarray(task.train_params)}
    assert {tuple(r) for r in seen} <= train_set and len({tuple(r) for r in seen}) == 100
    held = np.asarray(task.eval_set().scenes)
    assert not ({tuple(r) for r in held} & train_set)
    # the training-set evaluation really uses training shapes
    tr = task.train_eval_set(32)
    assert tr.tokens.shape == (64, 24) and {tuple(r) for r in np.asarray(tr.scenes)} <= train_set


def test_two_seeds_fix_different_point_clouds(sparse_task):
    # --fixed_points draws each training shape's points once: from the seed, like every draw
    a = dataclasses.replace(sparse_task, num_train=8, fixed_points=True, seed=0)
    b = dataclasses.replace(a, seed=1)
    pa, pb = (np.asarray(t.train_batch(0, 8).points) for t in (a, b))
    assert not np.allclose(np.sort(pa.ravel()), np.sort(pb.ravel()))
    again = dataclasses.replace(a, seed=0)
    np.testing.assert_array_equal(np.asarray(again.train_batch(0, 8).points), pa)


def test_baselines_against_brute_force(sparse_task):
    b = sparse_task.eval_set()
    near = np.asarray(nearest_visible_tokens(b))
    pts, tok, mask = (np.asarray(a) for a in (b.points, b.tokens, b.mask))
    for i in range(20):
        for p in np.flatnonzero(mask[i]):
            d = ((pts[i] - pts[i, p]) ** 2).sum(-1)
            d[mask[i]] = np.inf
            assert near[i, p] == tok[i, np.argmin(d)]
    m = sparse_task.eval_extra(b.tokens, b)
    assert float(m["eval/majority_accuracy"]) == pytest.approx(
        np.mean(tok[mask] == sparse_task.majority_token)
    )
    assert all(float(m[f"eval/token_accuracy/{k:02d}"]) in (0.0, 1.0) for k in range(12))


def test_soft_targets_and_smoothing(sparse_task, centroids):
    b = sparse_task.train_batch(0, 8)
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
    g = jax.grad(
        lambda z: losses.training_loss(
            model_lib.EncoderOutput(z), b, kind="soft", centroids_KxG=centroids
        )
    )(logits)
    assert np.all(np.asarray(g)[~np.asarray(b.mask)] == 0)


def test_render_on_the_lattice_equals_stitch():
    rects = RECT.sample(jax.random.key(10), 1)
    values = np.asarray(patches(RECT, rects))[0]
    img = render.render(np.asarray(shapes.lattice_points()), values)
    small = img.reshape(16, 16, 16, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(small, np.asarray(codebook.stitch(values)), atol=1e-6)
    np.testing.assert_allclose(small, np.asarray(shapes.downsample(rects))[0], atol=1e-6)


def test_extra_targets_are_more_draws_of_the_evaluated_conditional(sparse_task):
    task = dataclasses.replace(sparse_task, extra_targets=7)
    plain, more = (jax.jit(t.train_batch, static_argnums=1)(3, 4) for t in (sparse_task, task))
    # the first 24 points are the plain batch's, masks included: no other draw moved
    for a, b in [(plain.points, more.points), (plain.tokens, more.tokens), (plain.mask, more.mask)]:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:, :24])
    assert more.tokens.shape == (4, 31) and np.asarray(more.mask)[:, 24:].all()
    # the extra points belong to the same shapes: their values are those shapes' coverage, and
    # each token the nearest centroid (brute force)
    extra = np.asarray(more.points)[:, 24:]
    assert ((extra >= 0) & (extra <= 256)).all()
    got = np.asarray(RECT.coverage(more.scenes, more.points[:, 24:]))
    np.testing.assert_array_equal(np.asarray(more.values)[:, 24:], got)
    c = np.asarray(sparse_task.codebook)
    want = np.argmin(((got[..., None, :] - c) ** 2).sum(-1), -1)
    np.testing.assert_array_equal(np.asarray(more.tokens)[:, 24:], want)
    # with context attention the model's outputs at the 24 points are the same with or without
    # the extra targets (they are never inputs); with full attention they would not be
    for attention, same in [("context", True), ("full", False)]:
        cfg = model_lib.ModelConfig(
            num_tokens=12, position="sincos", attention=attention, embed_dim=32, mlp_dim=64,
            num_heads=4, num_layers=2,
        )  # fmt: skip
        model = model_lib.Encoder(cfg)
        params = jax.jit(model.init)(jax.random.key(0), plain.tokens, plain.points)
        apply = jax.jit(model.apply)

        def logits(b, apply=apply, params=params):
            return np.asarray(apply(params, b.model_inputs(12), b.points).logits)[:, :24]

        assert np.allclose(logits(plain), logits(more), atol=1e-5) == same, attention
