"""The encoder: parameter count by hand, position embeddings by formula, dtype paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert import model as model_lib


def init(cfg, length):
    tokens = jnp.zeros((2, length), jnp.int32)
    points = jax.random.uniform(jax.random.key(0), (2, length, 2)) * cfg.extent
    return model_lib.Encoder(cfg).init(jax.random.key(1), tokens, points)["params"]


def test_write_up_configuration_has_the_hand_counted_parameters():
    cfg = model_lib.ModelConfig(
        num_tokens=20, num_positions=169, embed_dim=640, mlp_dim=1600, num_heads=8, num_layers=6
    )
    params = jax.eval_shape(lambda: init(cfg, 169))
    # token embedding 21 x 640 = 13,440 (20 tokens + [mask]); positions 169 x 640 = 108,160
    # per block: qkv 640 x 1920 + 1920 = 1,230,720; out 640 x 640 + 640 = 410,240;
    #   mlp 640 x 1600 + 1600 = 1,025,600 and 1600 x 640 + 640 = 1,024,640; 2 LNs 2,560
    #   = 3,693,760, x 6 blocks = 22,162,560
    # final LN 1,280; head 640 x 20 + 20 = 12,820
    assert model_lib.count_params(params) == 13_440 + 108_160 + 22_162_560 + 1_280 + 12_820


def test_sincos_puts_x_and_y_on_separate_halves():
    points = np.array([[[3.0, 5.0], [0.5, 7.5]]], np.float32)
    got = np.asarray(model_lib.sincos_2d(points, 8, unit=1.0))
    omega = 1.0 / 10000.0 ** (np.arange(2) / 2)  # dim // 4 = 2 frequencies
    for p in range(2):
        x, y = points[0, p]
        want = np.concatenate(
            [np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)]
        )
        np.testing.assert_allclose(got[0, p], want, rtol=1e-6, atol=1e-6)


def test_fourier_features_have_the_requested_scale():
    points = jax.random.uniform(jax.random.key(0), (1, 4, 2)) * 256
    f = np.asarray(model_lib.fourier_features(points, 512, 256.0, scale=3.0))
    assert f.shape == (1, 4, 512)
    np.testing.assert_allclose((f[..., :256] ** 2 + f[..., 256:] ** 2), 1.0, rtol=1e-5)
    freqs = 3.0 * np.asarray(jax.random.normal(jax.random.key(0), (2, 256)))
    assert abs(freqs.std() - 3.0) < 0.3


@pytest.mark.parametrize("position", model_lib.POSITIONS)
@pytest.mark.parametrize("norm", model_lib.NORMS)
def test_encoder_shapes_and_bf16_close_to_f32(position, norm):
    cfg = model_lib.ModelConfig(
        num_tokens=5,
        num_positions=9,
        extent=8.0,
        unit=1.0,
        position=position,
        norm=norm,
        embed_dim=32,
        mlp_dim=64,
        num_heads=4,
        num_layers=2,
    )
    params = init(cfg, 9)
    tokens = jax.random.randint(jax.random.key(2), (3, 9), 0, 6)
    points = jax.random.uniform(jax.random.key(3), (3, 9, 2)) * 8
    logits = model_lib.Encoder(cfg).apply({"params": params}, tokens, points)
    assert logits.shape == (3, 9, 5) and logits.dtype == jnp.float32
    bf16 = model_lib.Encoder(cfg.__class__(**{**cfg.__dict__, "dtype": "bfloat16"}))
    logits16 = bf16.apply({"params": params}, tokens, points)
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(logits16), np.asarray(logits), atol=0.1)


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="position"):
        model_lib.ModelConfig(num_tokens=3, position="rope")
    with pytest.raises(ValueError, match="embed_dim"):
        model_lib.ModelConfig(num_tokens=3, num_positions=4, embed_dim=30, num_heads=4)
