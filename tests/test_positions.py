"""Position embeddings by formula: each registered one, as the Encoder applies it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert.data import keys
from rectbert.model import positions
from rectbert.model.encoder import Encoder, ModelConfig


def embedding(cfg, points):
    """The position embedding the Encoder adds to the tokens, and the Encoder's parameters."""
    model = Encoder(cfg)
    tokens = jnp.zeros(points.shape[:2], jnp.int32)
    params = jax.jit(model.init)(jax.random.key(1), tokens, points)["params"]
    _, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(
        {"params": params}, tokens, points
    )
    return np.asarray(state["intermediates"]["position"][0]), params


def test_sincos_puts_x_and_y_on_separate_halves():
    points = np.array([[[3.0, 5.0], [0.5, 7.5]]], np.float32)
    got = np.asarray(positions.sincos_2d(points, 8, unit=1.0))
    omega = 1.0 / 10000.0 ** (np.arange(2) / 2)  # dim // 4 = 2 frequencies
    for p in range(2):
        x, y = points[0, p]
        want = np.concatenate(
            [np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)]
        )
        np.testing.assert_allclose(got[0, p], want, rtol=1e-6, atol=1e-6)
    # the Encoder adds exactly that, in lattice units
    cfg = ModelConfig(num_tokens=3, position="sincos", unit=16.0, embed_dim=8, num_heads=2)
    got, _ = embedding(cfg, jnp.asarray(points * 16.0))
    np.testing.assert_allclose(
        got[0, 1], np.asarray(positions.sincos_2d(points, 8, 1.0))[0, 1], atol=1e-5
    )


def test_nerf_features_by_formula():
    f = np.asarray(positions.nerf_features(jnp.array([[[64.0, 192.0]]]), 8, 256.0))
    u = np.array([0.25, 0.75])
    freqs = np.pi * np.array([1.0, 2.0])
    want = np.concatenate(
        [np.concatenate([np.sin(u[i] * freqs), np.cos(u[i] * freqs)]) for i in range(2)]
    )
    np.testing.assert_allclose(f[0, 0], want, atol=1e-6)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_fourier_embedding_uses_the_configured_scale_and_the_seeds_key(scale):
    # the frequencies are scale x N(0, 1) draws of the run seed's "fourier" key, fixed; the
    # embedding is their sines and cosines through a learned projection
    cfg = ModelConfig(
        num_tokens=3, position="fourier", fourier_scale=scale, fourier_seed=5, embed_dim=64
    )
    points = jax.random.uniform(jax.random.key(0), (2, 7, 2)) * 256
    got, params = embedding(cfg, points)
    freqs = scale * np.asarray(jax.random.normal(keys.key(5, "fourier"), (2, 32)), np.float64)
    angles = 2 * np.pi * (np.asarray(points, np.float64) / 256.0) @ freqs
    feats = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    kernel, bias = (np.asarray(params["pos_proj"][k], np.float64) for k in ("kernel", "bias"))
    np.testing.assert_allclose(got, feats @ kernel + bias, atol=2e-4)
    # another seed, other frequencies (same projection parameters)
    other = ModelConfig(**{**cfg.__dict__, "fourier_seed": 6})
    model = Encoder(other)
    tokens = jnp.zeros((2, 7), jnp.int32)
    _, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(
        {"params": params}, tokens, points
    )
    assert not np.allclose(np.asarray(state["intermediates"]["position"][0]), got, atol=1e-2)


def test_an_unknown_embedding_is_refused_not_replaced():
    # what every registered embedding must do is in test_contracts.py
    assert "learned" not in positions.continuous()  # a table over sequence indices
    assert {"none", "sincos"} <= set(positions.continuous())  # functions of (x, y)
    with pytest.raises(ValueError, match="position"):
        ModelConfig(num_tokens=3, position="rope")

    class Bypass:  # a config that skipped validation still gets no silent fallback
        position = "rope"

    with pytest.raises(ValueError, match="rope"):
        positions.embed(Bypass(), jnp.zeros((1, 2, 2)))
