"""The encoder: parameter count by hand, position embeddings by formula, dtype paths."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rectbert.warn
from rectbert.model import encoder
from rectbert.warn import RectbertWarning


def init(cfg, length):
    tokens = jnp.zeros((2, length), jnp.int32)
    points = jax.random.uniform(jax.random.key(0), (2, length, 2)) * cfg.extent
    return jax.jit(encoder.Encoder(cfg).init)(jax.random.key(1), tokens, points)["params"]


def test_write_up_configuration_has_the_hand_counted_parameters():
    cfg = encoder.ModelConfig(
        num_tokens=20, num_positions=169, embed_dim=640, mlp_dim=1600, num_heads=8, num_layers=6
    )
    params = jax.eval_shape(lambda: init(cfg, 169))
    # token embedding 21 x 640 = 13,440 (20 tokens + [mask]); positions 169 x 640 = 108,160
    # per block: qkv 640 x 1920 + 1920 = 1,230,720; out 640 x 640 + 640 = 410,240;
    #   mlp 640 x 1600 + 1600 = 1,025,600 and 1600 x 640 + 640 = 1,024,640; 2 LNs 2,560
    #   = 3,693,760, x 6 blocks = 22,162,560
    # final LN 1,280; head 640 x 20 + 20 = 12,820
    assert encoder.count_params(params) == 13_440 + 108_160 + 22_162_560 + 1_280 + 12_820


@pytest.mark.parametrize(  # every embedding pre-LN: test_contracts.py; post-LN with one
    "position,norm", [("sincos", "post")]
)
def test_encoder_shapes_and_bf16_close_to_f32(position, norm):
    cfg = encoder.ModelConfig(
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
    out = jax.jit(encoder.Encoder(cfg).apply)({"params": params}, tokens, points)
    logits = out.logits
    assert logits.shape == (3, 9, 5) and logits.dtype == jnp.float32 and out.aux is None
    bf16 = encoder.Encoder(dataclasses.replace(cfg, dtype="bfloat16"))
    logits16 = jax.jit(bf16.apply)({"params": params}, tokens, points).logits
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(logits16), np.asarray(logits), atol=0.1)


def test_aux_head_output_has_its_own_field():
    cfg = encoder.ModelConfig(num_tokens=5, num_positions=9, aux_dim=16, embed_dim=32)
    params = init(cfg, 9)
    out = jax.jit(encoder.Encoder(cfg).apply)(
        {"params": params}, jnp.zeros((3, 9), int), jnp.zeros((3, 9, 2))
    )
    assert out.logits.shape == (3, 9, 5) and out.aux.shape == (3, 9, 16)


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="position"):
        encoder.ModelConfig(num_tokens=3, position="rope")
    with pytest.raises(ValueError, match="embed_dim"):
        encoder.ModelConfig(num_tokens=3, num_positions=4, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="attention_impl"):  # cuDNN takes no arbitrary mask
        encoder.ModelConfig(num_tokens=3, attention="context", attention_impl="cudnn")
    with pytest.raises(ValueError, match="attention_impl"):  # cuDNN attention is bf16/fp16
        encoder.ModelConfig(num_tokens=3, attention_impl="cudnn", dtype="float32")


def write_up_sized(**overrides):
    """The grid task's shapes (169 tokens, K = 20) with a small width."""
    base = dict(num_tokens=20, num_positions=169, embed_dim=64, mlp_dim=160, num_heads=4)
    return encoder.ModelConfig(**{**base, "num_layers": 1, "norm": "post", **overrides})


def grid_like_batch(batch=2):
    tokens = jax.random.randint(jax.random.key(4), (batch, 169), 0, 20)
    hidden = jax.random.uniform(jax.random.key(5), (batch, 169)) < 0.2
    points = jnp.broadcast_to(
        jax.random.uniform(jax.random.key(6), (169, 2)) * 256, (batch, 169, 2)
    )
    return tokens, hidden, points


@pytest.mark.parametrize("attention", encoder.ATTENTIONS)
def test_sequence_padding_is_invisible_to_real_tokens(attention):
    # 169 -> 176: the 7 padded keys must get exactly zero attention, in every layer
    tokens, hidden, points = grid_like_batch()
    inputs = jnp.where(hidden, 20, tokens)
    plain = write_up_sized(attention=attention, attention_impl="xla", pad_to=1)
    params = init(plain, 169)
    padded = encoder.Encoder(write_up_sized(attention=attention, attention_impl="xla", pad_to=8))
    with jax.default_matmul_precision("highest"):  # a GPU's default TF32 is not within 1e-5
        want = jax.jit(encoder.Encoder(plain).apply)({"params": params}, inputs, points).logits
        got = jax.jit(padded.apply)({"params": params}, inputs, points).logits
    assert got.shape == want.shape == (2, 169, 20)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_fast_path_loss_and_gradients_match_float32():
    # the fast path experiments take by default on an accelerator: bf16 compute, the sequence
    # padded, and (on a GPU) cuDNN flash attention; against plain float32 XLA attention
    tokens, hidden, points = grid_like_batch(4)
    inputs = jnp.where(hidden, 20, tokens)
    plain = write_up_sized(attention_impl="xla", pad_to=1)
    fast = write_up_sized(dtype="bfloat16", attention_impl="auto", pad_to=8)
    params = init(plain, 169)

    def loss(cfg):
        def f(p):
            logits = jax.jit(encoder.Encoder(cfg).apply)({"params": p}, inputs, points).logits
            ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1)[..., 0]
            return (ce * hidden).sum() / hidden.sum()

        return jax.jit(jax.value_and_grad(f))(params)

    (l32, g32), (l16, g16) = loss(plain), loss(fast)
    assert abs(float(l16) - float(l32)) < 0.01 * float(l32)  # bf16 has 8 mantissa bits
    v32, v16 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (g32, g16))
    cosine = v32 @ v16 / np.linalg.norm(v32) / np.linalg.norm(v16)
    assert cosine > 0.99, cosine


def test_auto_attention_follows_the_backend():
    impl, pad_to = encoder.resolve_attention(write_up_sized(dtype="bfloat16"))
    if encoder.modern_cuda_gpu():  # Ampere or later
        assert (impl, pad_to) == ("cudnn", 8)
    else:
        assert (impl, pad_to) == ("xla", 1)
    # float32 and context attention always stay on XLA, unpadded unless asked
    assert encoder.resolve_attention(write_up_sized()) == ("xla", 1)
    assert encoder.resolve_attention(write_up_sized(attention="context", pad_to=8)) == ("xla", 8)


def test_one_hot_embedding_is_an_exact_table_lookup():
    cfg = write_up_sized()
    tokens, _, points = grid_like_batch(4)
    params = init(cfg, 169)
    table = np.asarray(params["token_embed"]["embedding"])
    got = encoder.OneHotEmbed(21, 64).apply({"params": params["token_embed"]}, tokens)
    np.testing.assert_array_equal(np.asarray(got), table[np.asarray(tokens)])


@pytest.mark.parametrize("rel", ["none", "rope_mixed"])  # rope_mixed: parameters in the entry
def test_auto_falls_back_to_xla_where_cudnn_refuses(monkeypatch, capsys, rel):
    # pretend this is an Ampere GPU whose cuDNN refuses when traced (on a CPU the real one
    # does: "cuDNN is not detected"; on a GPU it would not): auto picks cuDNN, and the model
    # must then run XLA attention on the same padded input
    real = jax.nn.dot_product_attention

    def refusing(*args, implementation=None, **kwargs):
        if implementation == "cudnn":
            raise RuntimeError("cuDNN refuses (simulated)")
        return real(*args, implementation=implementation, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", refusing)
    monkeypatch.setattr(encoder, "modern_cuda_gpu", lambda: True)
    monkeypatch.setattr(rectbert.warn, "_WARNED", set())
    auto = write_up_sized(dtype="bfloat16", num_layers=2, relative=rel)
    assert encoder.resolve_attention(auto) == ("cudnn", 8)
    tokens, hidden, points = grid_like_batch()
    params = init(write_up_sized(num_layers=2, relative=rel), 169)
    with pytest.warns(RectbertWarning) as said:
        got = jax.jit(encoder.Encoder(auto).apply)({"params": params}, tokens, points).logits
    xla = write_up_sized(
        dtype="bfloat16", num_layers=2, attention_impl="xla", pad_to=8, relative=rel
    )
    want = jax.jit(encoder.Encoder(xla).apply)({"params": params}, tokens, points).logits
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert sum("using XLA attention" in str(w.message) for w in said) == 1  # not per layer
    with pytest.raises(RuntimeError):  # asked for by name, cuDNN's refusal is not hidden
        cudnn = write_up_sized(dtype="bfloat16", num_layers=2, attention_impl="cudnn", relative=rel)
        jax.jit(encoder.Encoder(cudnn).apply)({"params": params}, tokens, points)
