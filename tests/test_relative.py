"""Relative geometry in attention (--relative): each variant by a hand-computed case or a
brute-force numpy reference, the invariance it promises, and the masks it must keep."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rectbert.warn
from rectbert import config
from rectbert.model import encoder, relative
from rectbert.model.encoder import Encoder, ModelConfig

RELATIVE = [name for name in relative.RELATIVES if name != "none"]


def model(rel: str, attention: str = "context", position: str = "none", **kw) -> ModelConfig:
    return ModelConfig(
        num_tokens=6,
        position=position,
        relative=rel,
        attention=attention,
        embed_dim=16,
        mlp_dim=32,
        num_heads=2,
        num_layers=2,
        **kw,
    )


def logits(cfg, tokens, points, params=None):
    m = Encoder(cfg)
    if params is None:
        params = jax.jit(m.init)(jax.random.key(3), tokens, points)
    return np.asarray(jax.jit(m.apply)(params, tokens, points).logits), params


def inputs(b=3, length=12, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 6, (b, length))
    tokens[:, ::3] = 6  # [mask]: every third point hidden
    points = rng.uniform(0, 256, (b, length, 2)).astype(np.float32)
    return jnp.asarray(tokens), jnp.asarray(points)


def attention_numpy(q, k, v, logit_bias_HxLxL=None):
    """Softmax attention by loops: one batch element, q/k/v [L, H, D]."""
    length, h, d = q.shape
    out = np.zeros_like(v, dtype=np.float64)
    for head in range(h):
        for i in range(length):
            s = np.array([q[i, head] @ k[j, head] / math.sqrt(d) for j in range(length)])
            if logit_bias_HxLxL is not None:
                s = s + logit_bias_HxLxL[head, i]
            w = np.exp(s - s.max())
            out[i, head] = (w / w.sum()) @ v[:, head]
    return out


def test_rope_by_hand_a_pair_turns_by_the_displacement():
    # head dim 4: one x pair (dims 0, 2) and one y pair (1, 3), both at wavelength 2 units
    # (pi per unit). q = k = (1, 0, 0, 0): rotating both by their angles leaves cos(pi dx)
    cfg = model("rope", unit=16.0)
    q = jnp.zeros((1, 3, 1, 4)).at[..., 0].set(1.0)
    v = jnp.eye(4)[:3][None, :, None, :]  # v_j = e_j: the output reads the weights w_0j
    points = jnp.array([[[0.0, 0.0], [8.0, 100.0], [16.0, 3.0]]])  # dx = 0, 0.5, 1 unit
    out = np.asarray(relative.rope(cfg, q, q, v, points, None, None, "xla"))
    s = np.cos(np.pi * np.array([0.0, 0.5, 1.0])) / 2.0  # / sqrt(4); y pairs see zeros
    w = np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(out[0, 0, 0, :3], w, atol=1e-6)


@pytest.mark.parametrize("name", ["rope", "rope_mixed"])
def test_rotary_attention_equals_explicit_rotations_in_numpy(name):
    cfg = model(name)
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(size=(1, 5, 2, 8)).astype(np.float32) for _ in range(3))
    points = rng.uniform(0, 256, (1, 5, 2)).astype(np.float32)
    fn = relative.RELATIVES[name].fn
    if name == "rope":
        freqs = np.broadcast_to(np.asarray(relative.axial_frequencies(4)), (2, 4, 2))
        out = np.asarray(fn(cfg, q, k, v, points, None, None, "xla"))
    else:

        class Wrap(relative.nn.Module):
            @relative.nn.compact
            def __call__(self, *a):
                return fn(cfg, *a)

        params = Wrap().init(jax.random.key(0), q, k, v, points, None, None, "xla")
        freqs = np.asarray(params["params"]["rope_freqs"]["value"])
        out = np.asarray(Wrap().apply(params, q, k, v, points, None, None, "xla"))
        # RoPE-Mixed's start: per head, the axial magnitudes along two perpendicular directions
        mags = np.linalg.norm(freqs, axis=-1)
        np.testing.assert_allclose(mags[0], mags[1], rtol=1e-6)
        np.testing.assert_allclose(np.einsum("hc,hc->h", freqs[:, 0], freqs[:, 2]), 0, atol=1e-5)

    def turned(x):  # x [L, H, D] rotated pair by pair, by explicit 2 x 2 matrices
        y = np.zeros_like(x, dtype=np.float64)
        for i in range(x.shape[0]):
            for h in range(x.shape[1]):
                for p in range(x.shape[2] // 2):
                    a = freqs[h, p] @ (points[0, i] / cfg.unit)
                    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                    pair = [p, p + x.shape[2] // 2]  # the half-split layout
                    y[i, h, pair] = r @ x[i, h, pair]
        return y

    want = attention_numpy(turned(q[0]), turned(k[0]), v[0])
    np.testing.assert_allclose(out[0], want, atol=2e-5)


def test_bias_is_an_mlp_of_the_log_spaced_displacement():
    cfg = model("bias")
    rng = np.random.default_rng(2)
    q, k, v = (rng.normal(size=(1, 4, 2, 8)).astype(np.float32) for _ in range(3))
    points = rng.uniform(0, 256, (1, 4, 2)).astype(np.float32)
    fn = relative.RELATIVES["bias"].fn

    class Wrap(relative.nn.Module):
        @relative.nn.compact
        def __call__(self, *a):
            return fn(cfg, *a)

    params = Wrap().init(jax.random.key(0), q, k, v, points, None, None, "xla")
    out = np.asarray(Wrap().apply(params, q, k, v, points, None, None, "xla"))
    p = jax.tree.map(np.asarray, params["params"])
    bias = np.zeros((2, 4, 4))
    for i in range(4):
        for j in range(4):
            d = (points[0, j] - points[0, i]) / 16.0
            x = np.sign(d) * np.log2(1 + np.abs(d)) / np.log2(17.0)
            hidden = x @ p["rel_bias_in"]["kernel"] + p["rel_bias_in"]["bias"]
            hidden = np.asarray(jax.nn.gelu(hidden))
            bias[:, i, j] = hidden @ p["rel_bias_out"]["kernel"] + p["rel_bias_out"]["bias"]
    np.testing.assert_allclose(out[0], attention_numpy(q[0], k[0], v[0], bias), atol=2e-5)


def test_the_baseline_with_absolute_positions_is_not_translation_invariant():
    # the contract's invariance test (test_contracts.py, every entry without absolute
    # positions) can fail: today's model sees where the points are
    tokens, points = inputs()
    cfg = model("none", position="sincos")
    got, params = logits(cfg, tokens, points)
    moved, _ = logits(cfg, tokens, points + jnp.array([37.5, -11.25]), params)
    assert np.abs(moved - got).max() > 1e-2


@pytest.mark.parametrize("name", [*RELATIVE, "none"])
def test_context_attention_keeps_hidden_points_apart(name):
    # a hidden point's prediction depends on the visible points and itself only: moving
    # another hidden point changes nothing (te builds its own mask: this guards it)
    tokens, points = inputs()
    pos = "none" if name == "te" else "sincos"
    cfg = model(name, position=pos)
    got, params = logits(cfg, tokens, points)
    moved, _ = logits(cfg, tokens, points.at[:, 3].add(40.0), params)  # index 3 is hidden
    hidden = np.asarray(tokens[0] == 6)
    others = hidden & (np.arange(tokens.shape[1]) != 3)
    np.testing.assert_allclose(moved[:, others], got[:, others], atol=1e-5)
    assert np.abs(moved[:, 3] - got[:, 3]).max() > 1e-4  # the moved one itself does change
    # and with full attention, they do see each other
    cfg = model(name, attention="full", position=pos)
    got, params = logits(cfg, tokens, points)
    moved, _ = logits(cfg, tokens, points.at[:, 3].add(40.0), params)
    assert np.abs(moved[:, others] - got[:, others]).max() > 1e-5


@pytest.mark.parametrize("name", RELATIVE)
def test_padding_the_sequence_changes_no_logit(name):
    # pad_to pads keys that must be masked (as cuDNN's path pads 169 -> 176)
    tokens, points = inputs(length=13)
    pos = "none" if name == "te" else "sincos"
    got, params = logits(model(name, position=pos, pad_to=1), tokens, points)
    padded, _ = logits(model(name, position=pos, pad_to=8), tokens, points, params)
    np.testing.assert_allclose(padded, got, atol=1e-5)


def test_te_values_carry_where_the_attended_points_lie():
    # a query with one key (itself) and another visible key: the output moves with the
    # displacement even when the tokens are equal (the values' displacement term)
    cfg = model("te")
    q = k = v = jnp.ones((1, 2, 2, 8))
    a = jnp.array([[[10.0, 10.0], [60.0, 10.0]]])
    b = jnp.array([[[10.0, 10.0], [10.0, 90.0]]])

    class Wrap(relative.nn.Module):
        @relative.nn.compact
        def __call__(self, *x):
            return relative.te(cfg, *x)

    params = Wrap().init(jax.random.key(0), q, k, v, a, None, None, "xla")
    out_a = Wrap().apply(params, q, k, v, a, None, None, "xla")
    out_b = Wrap().apply(params, q, k, v, b, None, None, "xla")
    assert np.abs(np.asarray(out_a - out_b)).max() > 1e-3


@pytest.mark.parametrize(
    ("kw", "flag", "said"),
    [
        (dict(relative="te", position="sincos"), "position", "none with relative='te'"),
        (
            dict(relative="bias", attention_impl="cudnn", dtype="bfloat16", attention="full"),
            "attention_impl",
            "relative='bias'",
        ),
        (dict(relative="rope", embed_dim=12, num_heads=4), "embed_dim", "even head dimension"),
        (dict(relative="rope_mixed", embed_dim=8, num_heads=4), "embed_dim", ">= 4"),
        (dict(relative="alibi"), "relative", "one of ['none', 'rope'"),
    ],
)
def test_bad_combinations_are_refused_naming_the_flag(kw, flag, said):
    with pytest.raises(config.ConfigError) as e:
        ModelConfig(num_tokens=6, **{"position": "sincos", **kw})
    assert e.value.flag == flag and said in str(e.value)


def test_auto_keeps_flash_attention_only_where_the_variant_allows(monkeypatch):
    monkeypatch.setattr(encoder, "modern_cuda_gpu", lambda: True)
    for name, rel in relative.RELATIVES.items():
        pos = "none" if not rel.absolute else "sincos"
        cfg = ModelConfig(
            num_tokens=6, relative=name, position=pos, dtype="bfloat16", attention="full"
        )
        assert encoder.resolve_attention(cfg)[0] == ("cudnn" if rel.flash else "xla"), name
    assert relative.RELATIVES["rope"].flash and not relative.RELATIVES["bias"].flash
    said = [m for m in rectbert.warn._WARNED if "relative='bias'" in m]
    assert said and "chose XLA attention, not cuDNN's flash attention" in said[0]


def test_a_run_recorded_before_relative_existed_loads_and_resumes_as_none(anycount_run, tmp_path):
    import json
    import os

    import rectbert
    from tests.conftest import copy

    run = copy(anycount_run, tmp_path)
    path = os.path.join(run, "config.json")
    record = json.loads(open(path).read())
    points = np.array([[[5.0, 7.0], [100.0, 90.0], [30.0, 200.0]]], np.float32)
    tokens, visible = np.array([[1, 0, 2]]), np.array([[True, False, True]])
    want = np.asarray(rectbert.load_run(run).predict(points, tokens, visible))
    older = {**record, "model": {k: v for k, v in record["model"].items() if k != "relative"}}
    with open(path, "w") as f:
        json.dump(older, f)
    with pytest.warns(rectbert.warn.RectbertWarning, match="predates the settings model.relative"):
        loaded = rectbert.load_run(run)
    assert loaded.model_config.relative == "none"
    np.testing.assert_array_equal(np.asarray(loaded.predict(points, tokens, visible)), want)
    # a resume of such a run: tests/test_train.py (any setting added since, by its default)


def test_the_extending_pages_example_registers_and_runs():
    # docs/extending.md's "gauss" entry, as written there, inside relative.py's namespace
    import os
    import re

    page = os.path.join(os.path.dirname(__file__), "..", "docs", "extending.md")
    code = re.search(r'```python\n(@register\("gauss".*?)```', open(page).read(), re.S)
    exec(code.group(1), vars(relative))
    try:
        tokens, points = inputs()
        got, _ = logits(model("gauss", position="sincos"), tokens, points)
        assert got.shape == (3, 12, 6) and np.isfinite(got).all()
    finally:
        relative.RELATIVES.pop("gauss", None)


@pytest.mark.slow
def test_the_device_checks_relative_step_runs_here(tmp_path):
    # benchmarks/device_check.sh's relative step at its CPU size: the GPU call must not be the
    # first to find a broken command line in it
    import os
    import subprocess

    root = os.path.join(os.path.dirname(__file__), "..")
    env = {**os.environ, "OUT": str(tmp_path), "ONLY": "relative", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        ["bash", "benchmarks/device_check.sh"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rectbert fast_rope " in summary and "rectbert fast " in summary, summary
    assert "time to ceiling (rope) wall" in summary and ", exit 0 " in summary, summary


class Entry(relative.nn.Module):
    """One registry entry as a module, so a test can hold its parameters."""

    cfg: ModelConfig
    name_: str

    @relative.nn.compact
    def __call__(self, *a):
        return relative.RELATIVES[self.name_].fn(self.cfg, *a)


def test_te_equals_its_definition_by_loops_in_numpy():
    # logits_ij = q.k / sqrt(D) + MLP([log-spaced (x_j - x_i), every head's q.k])_h; the
    # softmax over keys j; out_i = sum_j w_ij v_j + (sum_j w_ij log-spaced delta_ij) W_h
    cfg = model("te")
    rng = np.random.default_rng(4)
    q, k, v = (rng.normal(size=(1, 4, 2, 8)).astype(np.float32) for _ in range(3))
    points = rng.uniform(0, 256, (1, 4, 2)).astype(np.float32)
    entry = Entry(cfg, "te")
    params = entry.init(jax.random.key(0), q, k, v, points, None, None, "xla")
    out = np.asarray(entry.apply(params, q, k, v, points, None, None, "xla"))
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])
    want = np.zeros((4, 2, 8))
    for i in range(4):
        delta = np.array([(points[0, j] - points[0, i]) / 16.0 for j in range(4)])
        delta = np.sign(delta) * np.log2(1 + np.abs(delta)) / np.log2(17.0)  # [j, 2]
        dots = np.array(
            [[q[0, i, h] @ k[0, j, h] / np.sqrt(8) for h in range(2)] for j in range(4)]
        )
        hidden = np.concatenate([delta, dots], -1) @ p["te_logits_in"]["kernel"]
        hidden = np.asarray(jax.nn.gelu(hidden + p["te_logits_in"]["bias"]))
        logits = dots + hidden @ p["te_logits_out"]["kernel"] + p["te_logits_out"]["bias"]
        for h in range(2):
            w = np.exp(logits[:, h] - logits[:, h].max())
            w /= w.sum()
            want[i, h] = w @ v[0, :, h] + (w @ delta) @ p["te_values"]["value"][h]
    np.testing.assert_allclose(out[0], want, atol=2e-5)


@pytest.mark.parametrize("name", RELATIVE)
def test_lattice_points_given_once_equal_them_given_per_example(name):
    # a lattice task passes points [1, L, 2]: the displacement MLPs then run once, not B times
    tokens, points = inputs()
    pos = "none" if name == "te" else "sincos"
    got, params = logits(model(name, position=pos), tokens, points[:1])
    each, _ = logits(model(name, position=pos), tokens, jnp.repeat(points[:1], 3, 0), params)
    np.testing.assert_allclose(got, each, atol=1e-6)


@pytest.mark.skipif(not encoder.modern_cuda_gpu(), reason="needs an Ampere-or-later GPU")
@pytest.mark.parametrize("name", [n for n, r in relative.RELATIVES.items() if r.rotary])
def test_rotary_on_cudnn_equals_rotary_on_xla(name):
    # device_check.sh runs this on the card: rotary keeps cuDNN's flash attention, same values
    tokens, points = inputs(length=32)
    kw = dict(dtype="bfloat16", attention="full", embed_dim=64, num_heads=4)
    got, params = logits(
        model(name, position="sincos", attention_impl="cudnn", **kw), tokens, points
    )
    want, _ = logits(
        model(name, position="sincos", attention_impl="xla", **kw), tokens, points, params
    )
    np.testing.assert_allclose(got, want, atol=5e-2)


def test_the_study_refuses_te_with_absolute_positions_naming_its_axis():
    from experiments import cli
    from rectbert.recipes import sparse_study
    from tests.conftest import build

    with pytest.raises(cli.Error, match=r"^--positions=.* none with relative='te'"):
        build(sparse_study, "--relative=te", "--workdir=/nonexistent/x")
    plan = build(sparse_study, "--relative=te", "--positions=none", "--workdir=/nonexistent/x")
    assert {(r.run.model.position, r.run.model.relative) for r in plan.rows} == {("none", "te")}


@pytest.mark.slow
@pytest.mark.parametrize("name", RELATIVE)
def test_a_trained_run_of_each_variant_predicts_samples_and_meets_the_oracle(name, tmp_path):
    # the sparse command's any-count run with the variant, then the public API on it
    import rectbert
    from experiments import cli
    from rectbert.recipes import sparse
    from rectbert.training import train
    from tests.conftest import ANYCOUNT, parse

    pos = ["--position=none"] if name == "te" else []
    fv = parse(sparse, f"--workdir={tmp_path}", f"--relative={name}", *pos, *ANYCOUNT)
    train.train(cli.build(sparse, fv).run, str(tmp_path))
    run = rectbert.load_run(str(tmp_path))
    assert run.model_config.relative == name
    rng = np.random.default_rng(0)
    points = rng.uniform(32, 224, (2, 6, 2)).astype(np.float32)
    tokens = rng.integers(0, run.model_config.num_tokens, (2, 6))
    visible = np.array([True, True, False, True, False, False])
    probs = np.asarray(run.predict(points, tokens, visible))
    assert probs.shape == (2, 6, run.model_config.num_tokens)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    drawn = np.asarray(run.sample(points, tokens, visible, jax.random.key(1)))
    np.testing.assert_array_equal(drawn[:, visible], tokens[:, visible])
    rows, _ = run.oracle_curve(visible=(2,), examples=4)
    assert rows[0]["visible"] == 2 and 0.0 <= rows[0]["model_accuracy"] <= 1.0
