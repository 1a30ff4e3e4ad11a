"""Relative geometry in attention: a registry, name -> how a block's attention sees where
each key lies from its query.

Every entry has one signature, fn(cfg, q, k, v, points, mask, kv_len, impl) -> out, with
q, k, v [B, L, H, Dh] (Dh = embed_dim / num_heads), points [B or 1, L, 2] in canvas pixels
(1: a lattice, the same for every example),
mask None or [B, 1, L, L] (True: attend), kv_len None or [B] (keys past it are padding)
and out [B, L, H, Dh]. It runs inside the block's compact call, so it may create parameters.
Adding one: a function here and its @register line; --relative's choices and help follow.

- none: today's attention, plain dot products; the only geometry is the absolute position
  embedding added to the tokens (ModelConfig.position).
- rope: 2-D rotary embedding, axial: half of each head's pairs rotate by x, half by y, at
  wavelengths from 2 to 64 lattice units, so q.k depends on the displacement only.
- rope_mixed: rotary with learned mixed frequencies (RoPE-Mixed, Heo et al., ECCV 2024):
  each pair rotates by f . (x, y) for a learned 2-vector f per layer, head and pair.
- bias: a learned displacement bias (Swin V2's continuous position bias): an MLP of the
  log-spaced displacement gives one logit bias per head and key.
- te: translation-equivariant attention (TE-TNP, Ashman et al., ICML 2024): the logits are an
  MLP of (displacement, per-head q.k) and each head's output also carries the attention-
  weighted displacement; no absolute position anywhere (ModelConfig.position must be none).

Displacements are key minus query, in lattice units (cfg.unit pixels). The rotary entries
change only q and k, so cuDNN flash attention stays usable (`flash`); the others add a
[B or 1, H, L, L] term to the logits, which rectbert runs on XLA (attention_impl=auto says so
on a GPU; cuDNN's own bias path is not used).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from rectbert.warn import warn_once


@dataclasses.dataclass(frozen=True)
class Relative:
    fn: Callable
    help: str
    flash: bool  # q and k changed only: cuDNN flash attention still applies
    absolute: bool  # the absolute position embedding may be added to the tokens
    rotary: bool  # turns pairs of each head's dimensions: needs an even head dimension >= 4


RELATIVES: dict[str, Relative] = {}
# the implementation the encoder passes under attention_impl=auto where it chose cuDNN:
# dot_product tries cuDNN and, if cuDNN refuses when traced, warns once and runs XLA
CUDNN_OR_XLA = "cudnn_or_xla"


def register(name: str, help: str, *, flash: bool, absolute: bool = True, rotary: bool = False):
    def add(fn):
        RELATIVES[name] = Relative(fn, help, flash, absolute, rotary)
        return fn

    return add


def checks(cfg) -> list:
    """ModelConfig's checks of its relative geometry, as config.validate takes them."""
    rel = lambda: RELATIVES[cfg.relative]  # noqa: E731  (called after the choices check)
    head = lambda: cfg.embed_dim // cfg.num_heads  # noqa: E731  (after num_heads >= 1)
    return [
        (
            lambda: cfg.attention_impl != "cudnn" or rel().flash,
            "attention_impl",
            f"xla or auto with relative={cfg.relative!r} (it adds a term to the logits: "
            "rectbert runs it on XLA, not through cuDNN's flash attention)",
        ),
        (
            lambda: rel().absolute or cfg.position == "none",
            "position",
            f"none with relative={cfg.relative!r} (translation-equivariant: no absolute position)",
        ),
        (
            lambda: not rel().rotary or (head() % 2 == 0 and head() >= 4),
            "embed_dim",
            f"num_heads={cfg.num_heads} times an even head dimension >= 4 (rotary attention "
            "turns pairs, along x and along y)",
        ),
    ]


def get(name: str) -> Relative:
    if name not in RELATIVES:
        raise ValueError(f"relative must be one of {sorted(RELATIVES)}; got {name!r}")
    return RELATIVES[name]


def dot_product(q, k, v, mask, kv_len, impl, bias=None):
    """jax.nn.dot_product_attention (its scale, 1/sqrt(Dh)) with the encoder's mask and
    padding; a bias [B or 1, H, L, L] is added to the scaled logits. impl: xla, cudnn, or
    CUDNN_OR_XLA (auto: cuDNN checks its limits -- head dim, version, GPU -- when traced, and
    a refusal falls back to XLA; asked for by name, it is raised)."""
    kwargs = dict(bias=bias, mask=mask, key_value_seq_lengths=kv_len)
    if impl != CUDNN_OR_XLA:
        return jax.nn.dot_product_attention(q, k, v, implementation=impl, **kwargs)
    try:
        return jax.nn.dot_product_attention(q, k, v, implementation="cudnn", **kwargs)
    except (NotImplementedError, RuntimeError, ValueError) as e:
        warn_once(f"cuDNN attention unavailable ({e}); using XLA attention")
        return jax.nn.dot_product_attention(q, k, v, implementation="xla", **kwargs)


def displacement(points_BxLx2, unit: float):
    """[B, L, L, 2]: key j minus query i, in lattice units."""
    u = points_BxLx2.astype(jnp.float32) / unit
    return u[:, None, :, :] - u[:, :, None, :]


def log_spaced(delta, extent_units: float):
    """Swin V2's log-spaced coordinates: sign(d) log2(1 + |d|) / log2(1 + extent), in [-1, 1]
    over the canvas: fine near the query, coarse far from it."""
    return jnp.sign(delta) * jnp.log2(1.0 + jnp.abs(delta)) / math.log2(1.0 + extent_units)


def rotate(x_BxLxHxD, angles_BxLxHxP):
    """Rotate each head's pairs (x[p], x[p + P]) by angles[p], P = D / 2 (the half-split
    layout: slices, not a reshape into pairs, which costs layout copies on a CPU)."""
    p = angles_BxLxHxP.shape[-1]
    cos, sin = jnp.cos(angles_BxLxHxP), jnp.sin(angles_BxLxHxP)
    a = x_BxLxHxD[..., :p].astype(jnp.float32)
    b = x_BxLxHxD[..., p:].astype(jnp.float32)
    out = jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return out.astype(x_BxLxHxD.dtype)


def axial_frequencies(pairs: int):
    """[pairs, 2] angular frequencies (radians per lattice unit): the first half along x, the
    second along y, wavelengths geometric from 2 to 64 units (the canvas is 16)."""
    n = pairs // 2
    wavelengths = 2.0 * 32.0 ** (jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1))
    omega = 2 * jnp.pi / wavelengths
    zeros = jnp.zeros_like(omega)
    fx = jnp.stack([omega, zeros], -1)
    fy = jnp.stack([zeros, omega], -1)
    freqs = jnp.concatenate([fx, fy])
    return jnp.concatenate([freqs, jnp.zeros((pairs - len(freqs), 2))])  # odd pairs: unrotated


class Param(nn.Module):
    """One raw parameter, so an entry (a function) can own one: Param(initializer, shape)()."""

    initializer: Callable
    shape: tuple

    @nn.compact
    def __call__(self):
        return self.param("value", self.initializer, self.shape)


def _rotary_angles(points, unit: float, freqs_HxPx2):
    """[B or 1, L, H, pairs] each pair's angle f . (x, y) / unit."""
    u = points.astype(jnp.float32) / unit
    # f . u as two broadcast products (a contraction over 2 lowers to a slow dot on a CPU)
    return (
        u[:, :, None, None, 0] * freqs_HxPx2[..., 0] + u[:, :, None, None, 1] * freqs_HxPx2[..., 1]
    )


def mixed_init(key, shape):
    """RoPE-Mixed's initialisation: the axial magnitudes, each head's pairs along a random
    direction (first half) and its perpendicular (second half)."""
    h, pairs, _ = shape
    magnitudes = jnp.linalg.norm(axial_frequencies(pairs), axis=-1)  # [pairs]
    theta_H = jax.random.uniform(key, (h,), maxval=2 * jnp.pi)
    half = jnp.arange(pairs) >= pairs // 2
    angle_HxP = theta_H[:, None] + jnp.where(half, jnp.pi / 2, 0.0)[None]
    direction = jnp.stack([jnp.cos(angle_HxP), jnp.sin(angle_HxP)], -1)
    return magnitudes[None, :, None] * direction


def _mlp(x, hidden: int, out: int, name: str):
    """A 2-layer MLP over the last axis (GELU), its layers named name_in / name_out."""
    return nn.Dense(out, name=f"{name}_out")(nn.gelu(nn.Dense(hidden, name=f"{name}_in")(x)))


def _extent_units(cfg) -> float:
    return cfg.extent / cfg.unit


@register("none", "plain dot products: the absolute position embedding only", flash=True)
def none(cfg, q, k, v, points, mask, kv_len, impl):
    del cfg, points
    return dot_product(q, k, v, mask, kv_len, impl)


@register(
    "rope", "2-D rotary embedding of (x, y) on q and k, axial frequencies", flash=True, rotary=True
)
def rope(cfg, q, k, v, points, mask, kv_len, impl):
    h, pairs = q.shape[2], q.shape[3] // 2
    freqs = jnp.broadcast_to(axial_frequencies(pairs), (h, pairs, 2))
    angles = _rotary_angles(points, cfg.unit, freqs)
    return dot_product(rotate(q, angles), rotate(k, angles), v, mask, kv_len, impl)


@register(
    "rope_mixed",
    "2-D rotary embedding, learned mixed frequencies (RoPE-Mixed)",
    flash=True,
    rotary=True,
)
def rope_mixed(cfg, q, k, v, points, mask, kv_len, impl):
    h, pairs = q.shape[2], q.shape[3] // 2
    freqs = Param(mixed_init, (h, pairs, 2), name="rope_freqs")()
    angles = _rotary_angles(points, cfg.unit, freqs)
    return dot_product(rotate(q, angles), rotate(k, angles), v, mask, kv_len, impl)


BIAS_HIDDEN = 32  # the displacement MLPs' hidden width


@register("bias", "a learned bias per head: an MLP of the log-spaced displacement", flash=False)
def bias(cfg, q, k, v, points, mask, kv_len, impl):
    delta = log_spaced(displacement(points, cfg.unit), _extent_units(cfg))
    b = _mlp(delta, BIAS_HIDDEN, q.shape[2], "rel_bias")  # [B or 1, L, L, H]
    return dot_product(q, k, v, mask, kv_len, impl, bias=b.transpose(0, 3, 1, 2).astype(q.dtype))


@register(
    "te",
    "translation-equivariant (TE-TNP): logits an MLP of (displacement, q.k), no absolute "
    "position (--position=none)",
    flash=False,
    absolute=False,
)
def te(cfg, q, k, v, points, mask, kv_len, impl):
    del impl  # the logits are an MLP of the dot products: computed here, on XLA
    b, seq, h, dh = q.shape
    delta = log_spaced(displacement(points, cfg.unit), _extent_units(cfg))
    delta = jnp.broadcast_to(delta, (b, seq, seq, 2))  # lattice points come as [1, L, 2]
    dots = jnp.einsum("bihd,bjhd->bijh", q, k, preferred_element_type=jnp.float32)
    dots = dots / math.sqrt(dh)
    logits = dots + _mlp(jnp.concatenate([delta, dots], -1), BIAS_HIDDEN, h, "te_logits")
    keep = jnp.ones((b, 1, seq, seq), bool) if mask is None else mask
    if kv_len is not None:
        keep = keep & (jnp.arange(seq)[None, None, None, :] < kv_len[:, None, None, None])
    logits = jnp.where(keep.transpose(0, 2, 3, 1), logits, -1e30)
    weights = jax.nn.softmax(logits, axis=2)  # over keys j: [B, L, L, H]
    out = jnp.einsum("bijh,bjhd->bihd", weights.astype(v.dtype), v)
    where = jnp.einsum("bijh,bijc->bihc", weights, delta)  # attention-weighted displacement
    w = Param(nn.initializers.normal(2**-0.5), (h, 2, dh), name="te_values")()  # fan-in 2
    return out + jnp.einsum("bihc,hcd->bihd", where, w).astype(out.dtype)
