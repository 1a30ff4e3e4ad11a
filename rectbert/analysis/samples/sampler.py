"""Completions drawn from the model: independent per token, or joint (MaskGIT-style).

The model gives each hidden token's distribution given the visible ones. Argmax or sampling
at every hidden position independently need not describe any one shape; joint sampling
reveals the hidden positions a few at a time, each new token drawn from the model given
every token known so far and then treated as visible. With a random order and one token per
step this is ancestral sampling: exact when the model's conditionals are the posterior's.
Most-confident-first (MaskGIT) reveals first the positions whose drawn token the model gives
the highest probability: greedier, not an exact sampler.

Works on any Batch (squares, grid and sparse tasks): `mask` says what is hidden.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from rectbert import config
from rectbert.data.tasks import Batch

METHODS = ("argmax", "independent", "joint")
ORDERS = ("random", "confident")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    method: str = "joint"  # METHODS
    order: str = "random"  # joint only: ORDERS
    temperature: float = 1.0  # logits / temperature (tempered()); 0: argmax draws (joint: greedy)
    per_step: int = 1  # joint only: positions revealed per model call

    def __post_init__(self):
        config.validate(
            self,
            [
                (self.method in METHODS, "method", f"one of {METHODS}"),
                (self.order in ORDERS, "order", f"one of {ORDERS}"),
                (
                    isinstance(self.temperature, int | float)
                    and not isinstance(self.temperature, bool)
                    and 0 <= self.temperature < float("inf"),
                    "temperature",
                    "a number >= 0 (0: argmax)",
                ),
                (
                    isinstance(self.per_step, int)
                    and not isinstance(self.per_step, bool)
                    and self.per_step >= 1,
                    "per_step",
                    "an integer >= 1",
                ),
            ],
        )


def tempered(logits_BxLxK, temperature: float):
    """logits / temperature (temperature > 0), never nan where the logits are finite: below
    1 each row's distances below its max are divided (logits / t overflows for a tiny t, and
    inf - inf is nan), the argmax's kept 0 (a t below float32's normal range is 0 to XLA:
    0 / 0), the rest falling towards -inf: the limit t -> 0 is the argmax exactly. At t >= 1
    the division cannot overflow and is done as it always was (subtracting the max first
    would round the draws differently)."""
    if temperature >= 1:
        return logits_BxLxK / temperature
    below = logits_BxLxK - jnp.max(logits_BxLxK, -1, keepdims=True)
    # the argmax by its index, not by `below == 0`: XLA may fuse the model's last op into the
    # max and into the differences with their own roundings (the max's own then is not 0)
    top = jnp.arange(below.shape[-1]) == jnp.argmax(logits_BxLxK, -1)[..., None]
    return jnp.where(top | (below >= 0), 0.0, below / temperature)


def _draw(key, logits_BxLxK, temperature: float):
    """[B, L] tokens drawn from softmax(logits / temperature) and their probabilities."""
    logits = logits_BxLxK.astype(jnp.float32)
    if temperature == 0:
        tokens = jnp.argmax(logits, -1)
    else:
        logits = tempered(logits, temperature)
        tokens = jax.random.categorical(key, logits, axis=-1)
    logp = jax.nn.log_softmax(logits, -1)
    return tokens.astype(jnp.int32), jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]


@functools.partial(jax.jit, static_argnames=("predict", "cfg"))
def _sample(predict, params, batch: Batch, key, cfg: SampleConfig):
    hidden = jnp.asarray(batch.mask, bool)
    known = jnp.where(hidden, 0, batch.tokens).astype(jnp.int32)
    if cfg.method != "joint":
        logits = predict(params, dataclasses.replace(batch, tokens=known, mask=hidden))
        draws, _ = _draw(key, logits, 0.0 if cfg.method == "argmax" else cfg.temperature)
        return jnp.where(hidden, draws, known)
    k_order, k_loop = jax.random.split(key)
    priority = jax.random.uniform(k_order, hidden.shape)  # the random order

    def body(carry):
        key, tokens, hidden = carry
        key, k_draw = jax.random.split(key)
        logits = predict(params, dataclasses.replace(batch, tokens=tokens, mask=hidden))
        draws, logp = _draw(k_draw, logits, cfg.temperature)
        score = priority if cfg.order == "random" else logp
        score = jnp.where(hidden, score, -jnp.inf)
        rank = jnp.argsort(jnp.argsort(-score, axis=1), axis=1)
        reveal = hidden & (rank < cfg.per_step)
        return key, jnp.where(reveal, draws, tokens), hidden & ~reveal

    _, tokens, _ = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, (k_loop, known, hidden))
    return tokens


def sample(predict, params, batch: Batch, key, cfg: SampleConfig = SampleConfig()):
    """Completions of a batch's hidden tokens drawn from the model. Jitted; joint sampling
    makes ceil(most hidden in any example / per_step) model calls.

    Args:
        predict: (params, batch) -> logits [B, L, K] (evaluation.make_predict's function).
        params: the model's parameters.
        batch: a Batch; its mask says what is hidden (the hidden tokens are never read).
        key: a jax.random key.
        cfg: SampleConfig: joint in random order by default; most-confident-first, argmax,
            independent, a temperature, positions revealed per call.

    Returns:
        [B, L] int32: batch.tokens where visible, drawn from the model where batch.mask.

    Raises:
        ValueError: one line, for a cfg, predict or batch of the wrong kind.
    """
    if not isinstance(cfg, SampleConfig):
        raise ValueError(f"cfg must be a SampleConfig; got {type(cfg).__name__}")
    if not callable(predict):
        raise ValueError(f"predict must be a function (params, batch) -> logits; got {predict!r}")
    if not isinstance(batch, Batch):
        raise ValueError(
            f"batch must be a Batch (points, tokens, mask); got {type(batch).__name__}"
        )
    return _sample(predict, params, batch, key, cfg)
