"""Position embeddings: a registry, name -> fn(cfg, points_BxLx2) -> [B or 1, L, embed_dim].

Each runs inside the Encoder's compact call, so it may create parameters (named layers).
Adding one: a function here and its @register line; its flag choice and help follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from rectbert.data import keys


@dataclasses.dataclass(frozen=True)
class Position:
    fn: Callable
    help: str
    # a function of (x, y): any points work; else of the sequence index (a table of
    # ModelConfig.num_positions rows, at least the task's sequence length)
    continuous: bool


POSITIONS: dict[str, Position] = {}


def register(name: str, help: str, *, continuous: bool = True):
    def add(fn):
        POSITIONS[name] = Position(fn, help, continuous)
        return fn

    return add


def continuous() -> list[str]:
    return [name for name, p in POSITIONS.items() if p.continuous]


def embed(cfg, points_BxLx2):
    """The position embedding `cfg.position` of the points (cfg: a model.ModelConfig)."""
    if cfg.position not in POSITIONS:
        raise ValueError(f"position must be one of {sorted(POSITIONS)}; got {cfg.position!r}")
    return POSITIONS[cfg.position].fn(cfg, points_BxLx2)


def sincos_2d(points_BxLx2, dim: int, unit: float):
    """2-D sinusoidal embedding: x on the first half, y on the second (MAE-style wavelengths)."""
    omega_F = 1.0 / 10000.0 ** (jnp.arange(dim // 4, dtype=jnp.float32) / (dim // 4))
    pos_BxLx2 = points_BxLx2 / unit
    angles_x = pos_BxLx2[..., 0:1] * omega_F
    angles_y = pos_BxLx2[..., 1:2] * omega_F
    parts = [jnp.sin(angles_x), jnp.cos(angles_x), jnp.sin(angles_y), jnp.cos(angles_y)]
    return jnp.concatenate(parts, axis=-1)


def fourier_features(points_BxLx2, dim: int, extent: float, scale: float, key):
    """Random Fourier features (Tancik et al. 2020): sin/cos of 2 pi u B, B ~ N(0, scale^2).

    B is a fixed function of `key`, not a parameter: no state, no weight decay on it.
    """
    freqs_2xF = scale * jax.random.normal(key, (2, dim // 2))
    angles = 2 * jnp.pi * (points_BxLx2 / extent) @ freqs_2xF
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def nerf_features(points_BxLx2, dim: int, extent: float):
    """NeRF positional encoding: sin/cos of 2^k pi u for k = 0 .. dim/4 - 1, u in [0, 1]."""
    freqs_F = jnp.pi * 2.0 ** jnp.arange(dim // 4, dtype=jnp.float32)
    angles = (points_BxLx2 / extent)[..., None] * freqs_F  # [B, L, 2, F]
    feats = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return feats.reshape(*points_BxLx2.shape[:-1], -1)


@register("none", "no absolute position (for --relative=te, or to ablate)")
def no_position(cfg, points_BxLx2):
    return jnp.zeros((1, points_BxLx2.shape[1], cfg.embed_dim), jnp.float32)


@register("learned", "a learned table over sequence (lattice) indices", continuous=False)
def learned(cfg, points_BxLx2):
    index_L = jnp.arange(points_BxLx2.shape[1])
    return nn.Embed(cfg.num_positions, cfg.embed_dim, name="pos_embed")(index_L)[None]


@register("sincos", "fixed 2-D sines and cosines of (x, y) in lattice units")
def sincos(cfg, points_BxLx2):
    return sincos_2d(points_BxLx2, cfg.embed_dim, cfg.unit)


@register("fourier", "Gaussian random Fourier features (std --fourier_scale), projected")
def fourier(cfg, points_BxLx2):
    key = keys.key(cfg.fourier_seed, "fourier")
    feats = fourier_features(points_BxLx2, cfg.embed_dim, cfg.extent, cfg.fourier_scale, key)
    return nn.Dense(cfg.embed_dim, name="pos_proj")(feats)


@register("nerf", "NeRF's octave sines and cosines, projected")
def nerf(cfg, points_BxLx2):
    return nn.Dense(cfg.embed_dim, name="pos_proj")(
        nerf_features(points_BxLx2, cfg.embed_dim, cfg.extent)
    )


@register("mlp", "a 2-layer MLP of (x, y)")
def mlp(cfg, points_BxLx2):
    u = points_BxLx2 / cfg.extent - 0.5
    d = cfg.embed_dim
    return nn.Dense(d, name="pos_out")(nn.gelu(nn.Dense(d, name="pos_in")(u)))
