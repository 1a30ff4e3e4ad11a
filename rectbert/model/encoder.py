"""The transformer encoder every task uses: token + position embedding, N blocks, a token head.

Positions are points (x, y) in canvas pixels; a lattice task is a point task on a lattice.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from rectbert import config
from rectbert.config import setting
from rectbert.model import positions, relative
from rectbert.warn import warn_once

ATTENTIONS = ("full", "context")
NORMS = ("pre", "post")
DTYPES = ("float32", "bfloat16")
ATTENTION_IMPLS = ("auto", "xla", "cudnn")  # auto: cuDNN flash attention where it applies


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The encoder's shape and numerics. Fields without help are the task's (set from it)."""

    num_tokens: int  # K: the vocabulary without [mask]; [mask] is id K
    num_positions: int = 0  # lattice size L, for the learned position table
    extent: float = 256.0  # canvas side in pixels (coordinates are normalised by it)
    unit: float = 16.0  # pixels per lattice step (sincos wavelengths are in these units)
    position: str = setting("learned", "Position embedding.", choices=positions.POSITIONS)
    relative: str = setting(
        "none",
        "Relative geometry in attention (docs/performance.md#relative).",
        choices=relative.RELATIVES,
    )
    fourier_scale: float = setting(10.0, "Std of Fourier-feature frequencies (per canvas).")
    fourier_seed: int = 0  # the frequencies are drawn from this run seed's "fourier" key
    attention: str = setting(
        "full",
        "full self-attention, or context: hidden tokens attend only to visible ones.",
        choices=ATTENTIONS,
    )
    aux_dim: int = 0  # > 0: a second head regresses this many values per token
    embed_dim: int = setting(128, "Transformer width.")
    mlp_dim: int = setting(256, "MLP hidden width.")
    num_heads: int = setting(4, "Attention heads.")
    num_layers: int = setting(2, "Transformer blocks.")
    dropout: float = setting(0.0, "Dropout rate.")
    norm: str = setting("pre", "Pre-LN, or post-LN as the write-up's code.", choices=NORMS)
    dtype: str = setting(  # compute dtype; parameters are always float32
        "float32",
        "Compute dtype; auto: bfloat16 on TPU and Ampere-or-later NVIDIA GPUs, else float32.",
        choices=("auto", *DTYPES),
    )
    attention_impl: str = setting(
        "auto",
        "auto: cuDNN flash attention on a GPU for bf16 full attention, else XLA.",
        choices=ATTENTION_IMPLS,
    )
    pad_to: int = 0  # pad the sequence to a multiple of this inside the blocks; 0: auto

    def __post_init__(self):
        impl_ok = self.attention_impl != "cudnn"
        config.validate(
            self,
            [
                (self.num_tokens >= 1, "num_tokens", ">= 1"),
                (self.fourier_scale > 0, "fourier_scale", "a number > 0"),
                (self.dtype in DTYPES, "dtype", f"one of {DTYPES} (auto is resolved before)"),
                (
                    impl_ok or self.attention == "full",
                    "attention_impl",
                    "xla or auto with attention='context' (cuDNN takes no arbitrary mask)",
                ),
                (
                    impl_ok or self.dtype != "float32",
                    "attention_impl",
                    "xla or auto with float32 compute (cuDNN attention is bf16/fp16 only)",
                ),
                (self.pad_to >= 0, "pad_to", ">= 0 (0: auto)"),
                (self.num_heads >= 1, "num_heads", "an integer >= 1"),
                (self.embed_dim >= 1, "embed_dim", "an integer >= 1"),
                (
                    lambda: self.embed_dim % self.num_heads == 0 and self.embed_dim % 4 == 0,
                    "embed_dim",
                    f"a multiple of 4 and of num_heads={self.num_heads}",
                ),
                (self.mlp_dim >= 1, "mlp_dim", "an integer >= 1"),
                (self.num_layers >= 1, "num_layers", "an integer >= 1"),
                (0.0 <= self.dropout < 1.0, "dropout", "a rate in [0, 1)"),
                (self.aux_dim >= 0, "aux_dim", ">= 0"),
                (
                    lambda: (
                        positions.POSITIONS[self.position].continuous or self.num_positions >= 1
                    ),
                    "num_positions",
                    ">= 1 (an embedding indexed by sequence position)",
                ),
                *relative.checks(self),
            ],
        )


@flax.struct.dataclass
class EncoderOutput:
    """What the Encoder returns, always: token logits and, with aux_dim > 0, the aux values."""

    logits: jax.Array  # [B, L, K] float32
    aux: jax.Array | None = None  # [B, L, aux_dim] float32


def resolve_dtype(name: str) -> str:
    """auto: bfloat16 on TPU and Ampere-or-later NVIDIA GPUs (fast bf16), else float32."""
    if name != "auto":
        return name
    return "bfloat16" if jax.default_backend() == "tpu" or modern_cuda_gpu() else "float32"


def modern_cuda_gpu() -> bool:
    """An NVIDIA GPU of compute capability 8.0+ (Ampere, Hopper, ...): native bf16 tensor
    cores and cuDNN flash attention. Older or non-CUDA GPUs answer False."""
    if jax.default_backend() != "gpu":
        return False
    try:
        major = int(str(jax.devices()[0].compute_capability).split(".")[0])
    except (AttributeError, ValueError):  # e.g. ROCm: no CUDA compute capability
        return False
    return major >= 8


def resolve_attention(cfg: ModelConfig) -> tuple[str, int]:
    """(implementation, pad multiple) for this config on the default backend.

    auto picks cuDNN flash attention on an Ampere-or-later NVIDIA GPU for bf16 full attention
    (f32, arbitrary masks and a relative geometry that adds a bias stay on XLA), and then
    pads the sequence to a multiple of 8 (169 -> 176) so its tiles and the tensor-core
    matmuls see friendly shapes; the padding is masked with key_value_seq_lengths, which
    cuDNN accepts where it rejects a broadcast bias.
    """
    impl = cfg.attention_impl
    if impl == "auto":
        fits = cfg.dtype != "float32" and cfg.attention == "full"
        flash = relative.RELATIVES[cfg.relative].flash
        impl = "cudnn" if fits and flash and modern_cuda_gpu() else "xla"
        if fits and not flash and modern_cuda_gpu():
            warn_once(
                f"attention_impl=auto chose XLA attention, not cuDNN's flash attention: "
                f"relative={cfg.relative!r} adds a term to the logits"
            )
    pad_to = cfg.pad_to or (8 if impl == "cudnn" else 1)
    return impl, pad_to


def context_mask(tokens_BxL, mask_id: int):
    """[B, 1, L, L] attention mask: every token sees the visible ones and itself, so hidden
    (target) tokens never exchange information (Transformer Neural Processes)."""
    visible_BxL = tokens_BxL != mask_id
    eye_LxL = jnp.eye(tokens_BxL.shape[1], dtype=bool)
    return (visible_BxL[:, None, :] | eye_LxL[None])[:, None]


class OneHotEmbed(nn.Embed):
    """nn.Embed (same parameter, same init) looked up by a one-hot matmul.

    The gradient of a gather is a scatter-add of B*L rows into a 21-row table: serialised
    atomics on a GPU and slow on a TPU; as a matmul it runs on the tensor cores / MXU.
    HIGHEST precision keeps the lookup exact (a TF32 or bf16 pass would round the table).
    """

    def __call__(self, inputs):
        onehot = jax.nn.one_hot(inputs, self.num_embeddings, dtype=self.embedding.dtype)
        return jnp.dot(onehot, self.embedding, precision=jax.lax.Precision.HIGHEST)


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD, points_BxLx2, attn_mask, kv_len_B, train: bool):
        cfg = self.cfg
        impl, _ = resolve_attention(cfg)
        dtype = jnp.dtype(cfg.dtype)
        d, h = cfg.embed_dim, cfg.num_heads
        geometry = relative.get(cfg.relative).fn
        if impl == "cudnn" and cfg.attention_impl == "auto":
            impl = relative.CUDNN_OR_XLA  # a refusal when traced falls back to XLA, once

        def attend(q, k, v):
            return geometry(cfg, q, k, v, points_BxLx2, attn_mask, kv_len_B, impl)

        def attention(y):
            b, l_, _ = y.shape
            qkv = nn.Dense(3 * d, dtype=dtype, name="qkv")(y).reshape(b, l_, 3, h, d // h)
            out = attend(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
            return nn.Dense(d, dtype=dtype, name="out")(out.reshape(b, l_, d))

        def mlp(y):
            y = nn.gelu(nn.Dense(cfg.mlp_dim, dtype=dtype, name="mlp_in")(y))
            return nn.Dense(d, dtype=dtype, name="mlp_out")(y)

        drop = nn.Dropout(cfg.dropout, deterministic=not train)
        norm1 = nn.LayerNorm(dtype=dtype, name="norm1")
        norm2 = nn.LayerNorm(dtype=dtype, name="norm2")
        if cfg.norm == "pre":
            x_BxLxD = x_BxLxD + drop(attention(norm1(x_BxLxD)))
            return x_BxLxD + drop(mlp(norm2(x_BxLxD)))
        x_BxLxD = norm1(x_BxLxD + drop(attention(x_BxLxD)))
        return norm2(x_BxLxD + drop(mlp(x_BxLxD)))


class Encoder(nn.Module):
    """tokens_BxL (id K = [mask]) and points_BxLx2 -> EncoderOutput(logits_BxLxK over the K real
    tokens, aux values or None)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(
        self, tokens_BxL, points_BxLx2, attn_mask=None, train: bool = False
    ) -> EncoderOutput:
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        x = OneHotEmbed(cfg.num_tokens + 1, cfg.embed_dim, name="token_embed")(tokens_BxL)
        position = positions.embed(cfg, points_BxLx2)
        self.sow("intermediates", "position", position)  # kept only when asked (tests)
        x = x + position
        if attn_mask is None and cfg.attention == "context":
            attn_mask = context_mask(tokens_BxL, cfg.num_tokens)
        x = nn.Dropout(cfg.dropout, deterministic=not train)(x).astype(dtype)
        b, seq_len = tokens_BxL.shape
        _, pad_to = resolve_attention(cfg)
        pad = -seq_len % pad_to
        kv_len_B = None
        points = points_BxLx2  # [B or 1, L, 2]: a lattice's MLPs of displacements run once
        if pad:  # padded keys are masked out; padded queries are computed, then dropped
            x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
            points = jnp.pad(points, ((0, 0), (0, pad), (0, 0)))
            kv_len_B = jnp.full((b,), seq_len, jnp.int32)
            if attn_mask is not None:
                attn_mask = jnp.pad(
                    attn_mask, ((0, 0), (0, 0), (0, pad), (0, pad)), constant_values=True
                )
        for i in range(cfg.num_layers):
            x = Block(cfg, name=f"block{i}")(x, points, attn_mask, kv_len_B, train)
        x = x[:, :seq_len]
        if cfg.norm == "pre":
            x = nn.LayerNorm(dtype=dtype, name="final_norm")(x)
        logits = nn.Dense(cfg.num_tokens, dtype=jnp.float32, name="head")(x).astype(jnp.float32)
        if not cfg.aux_dim:
            return EncoderOutput(logits)
        aux = nn.Dense(cfg.aux_dim, dtype=jnp.float32, name="aux_head")(x)
        return EncoderOutput(logits, aux.astype(jnp.float32))


def count_params(params) -> int:
    return sum(p.size for p in jax.tree.leaves(params))
