"""Completions drawn from the model: independent per token, or joint, by a registry of joint
samplers.

The model gives each hidden token's distribution given the visible ones. Argmax or sampling
at every hidden position independently need not describe any one shape; joint sampling
reveals the hidden positions a few at a time, each new token drawn from the model given
every token known so far and then treated as visible. Which positions are revealed when, and
whether drawn tokens are drawn again, is the joint sampler (SAMPLERS, by SampleConfig.order):

- random: a random order, `per_step` tokens a step; at one a step this is ancestral sampling,
  exact when the model's conditionals are a joint's (the default until repair measured
  better: shapes 1.3-2.1x as often on rect and rotated quick models, docs/samples.md);
- confident: most-confident-first (MaskGIT): the drawn tokens the model gives the highest
  probability first. Greedier, not an exact sampler;
- spread: the hidden points farthest from every known point first (a farthest-point order,
  decided by where the points are, never by what was drawn: exact as random is; with
  per_step > 1, each of a step's picks the farthest from what is known and from the picks
  before it);
- remask: random, then `rounds` rounds that hide a random `remask` share of the drawn tokens
  again and redraw them given the rest (in random order): a blocked Gibbs chain on the
  model's conditionals, which keeps an exact joint exact (ReMDM's remasking, for masked
  diffusion);
- repair (the default): random, then up to `rounds` rounds that redraw, given the rest,
  every drawn token the model gives less than `threshold` given all the others (its strays:
  one token off breaks a shape). Not exact: it leaves alone what the model already believes.

Adding one: a function (predict, params, batch, key, cfg) -> [B, L] tokens, traced inside
jit, and its @register; the registry's contract test (tests/test_contracts.py) covers it.
Works on any Batch (squares, grid and sparse tasks): `mask` says what is hidden.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rectbert import config
from rectbert.data.tasks import Batch

METHODS = ("argmax", "independent", "joint")
MAX_ROUNDS = 10_000  # remask and repair rounds (each at least one model call per example)


@dataclasses.dataclass(frozen=True)
class JointSampler:
    fn: Callable  # (predict, params, batch, key, cfg) -> [B, L] int32, traced inside jit
    help: str
    exact: bool  # draws the joint when the model's conditionals are a joint's exact ones (at
    # per_step 1 and temperature 1: several tokens a call are drawn independently)
    calls: Callable  # (hidden count H, cfg) -> the model calls it makes for H hidden
    adaptive: bool  # calls is the most it makes: it stops early on what it draws


SAMPLERS: dict[str, JointSampler] = {}


def register(
    name: str, help: str, *, exact: bool, calls: Callable | None = None, adaptive: bool = False
):
    def add(fn):
        SAMPLERS[name] = JointSampler(fn, help, exact, calls or _one_pass, adaptive)
        return fn

    return add


def _one_pass(h: int, cfg) -> int:
    return -(-h // cfg.per_step)


def _is_int(x, lo: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= lo


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    method: str = "joint"  # METHODS
    order: str = "repair"  # joint only: the joint sampler, a name in SAMPLERS (docs: samples)
    temperature: float = 1.0  # logits / temperature (tempered()); 0: argmax draws (joint, random
    # or confident order: greedy decoding; repair: greedy, then argmax redraws of its strays)
    per_step: int = 1  # joint only: positions revealed per model call
    rounds: int = 8  # remask, repair: rounds of hiding and redrawing after the first draw
    remask: float = 0.25  # remask: the share of the drawn tokens hidden again a round
    threshold: float = 0.2  # repair: a drawn token below this given all others is redrawn

    def __post_init__(self):
        t = self.temperature
        config.validate(
            self,
            [
                (self.method in METHODS, "method", f"one of {METHODS}"),
                (self.order in SAMPLERS, "order", f"one of {tuple(SAMPLERS)}"),
                (
                    isinstance(t, int | float)
                    and not isinstance(t, bool)
                    and 0 <= t < float("inf"),
                    "temperature",
                    "a number >= 0 (0: argmax)",
                ),
                (_is_int(self.per_step, 1), "per_step", "an integer >= 1"),
                (
                    _is_int(self.rounds, 0) and self.rounds <= MAX_ROUNDS,
                    "rounds",
                    f"an integer in [0, {MAX_ROUNDS}]",
                ),
                (
                    isinstance(self.remask, int | float)
                    and not isinstance(self.remask, bool)
                    and 0 < self.remask <= 1,
                    "remask",
                    "a share in (0, 1]",
                ),
                (
                    isinstance(self.threshold, int | float)
                    and not isinstance(self.threshold, bool)
                    and 0 <= self.threshold <= 1,
                    "threshold",
                    "a probability in [0, 1]",
                ),
            ],
        )


def calls(cfg: SampleConfig, hidden: int) -> int:
    """The model calls one completion of `hidden` hidden tokens makes (joint: its sampler's;
    an adaptive one's most)."""
    return SAMPLERS[cfg.order].calls(hidden, cfg) if cfg.method == "joint" else 1


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


def reveal(predict, params, batch: Batch, key, tokens, hidden, cfg: SampleConfig, priority):
    """Every `hidden` position drawn, `cfg.per_step` a model call: each call draws every
    hidden token given those known (`tokens` where not hidden) and keeps the per_step with
    the highest priority(logp of the draws [B, L], hidden [B, L]) -> [B, L]."""

    def body(carry):
        key, tokens, hidden = carry
        key, k_draw = jax.random.split(key)
        logits = predict(params, dataclasses.replace(batch, tokens=tokens, mask=hidden))
        draws, logp = _draw(k_draw, logits, cfg.temperature)
        score = jnp.where(hidden, priority(logp, hidden), -jnp.inf)
        rank = jnp.argsort(jnp.argsort(-score, axis=1), axis=1)
        shown = hidden & (rank < cfg.per_step)
        return key, jnp.where(shown, draws, tokens), hidden & ~shown

    return jax.lax.while_loop(lambda c: jnp.any(c[2]), body, (key, tokens, hidden))[1]


def _start(batch: Batch):
    """(hidden [B, L] bool, the known tokens: 0 where hidden)."""
    hidden = jnp.asarray(batch.mask, bool)
    return hidden, jnp.where(hidden, 0, batch.tokens).astype(jnp.int32)


@register("random", "a random order (one a step: ancestral sampling)", exact=True)
def random_order(predict, params, batch: Batch, key, cfg: SampleConfig):
    hidden, known = _start(batch)
    k_order, k_loop = jax.random.split(key)
    priority = jax.random.uniform(k_order, hidden.shape)
    return reveal(predict, params, batch, k_loop, known, hidden, cfg, lambda *_: priority)


@register("confident", "most-confident-first (MaskGIT): greedier, not exact", exact=False)
def confident(predict, params, batch: Batch, key, cfg: SampleConfig):
    hidden, known = _start(batch)
    _, k_loop = jax.random.split(key)
    return reveal(predict, params, batch, k_loop, known, hidden, cfg, lambda logp, _: logp)


@register("spread", "the hidden points farthest from every known point first", exact=True)
def spread(predict, params, batch: Batch, key, cfg: SampleConfig):
    hidden, known = _start(batch)
    k_tie, k_loop = jax.random.split(key)
    pts = jnp.asarray(batch.points, jnp.float32)
    dist = jnp.linalg.norm(pts[:, :, None] - pts[:, None, :], axis=-1)  # [B, L, L]
    tie = 1e-3 * jax.random.uniform(k_tie, hidden.shape)  # ties (none known yet) at random

    def priority(_, hidden_now):
        """The step's per_step picks, one at a time: each the farthest from what is known
        and from the picks before it (so two neighbours are not revealed together)."""

        def pick(i, state):
            taken, score = state
            far = jnp.min(jnp.where((hidden_now & ~taken)[:, None, :], jnp.inf, dist), -1)
            far = jnp.where(jnp.isfinite(far), far, 0.0) + tie
            far = jnp.where(hidden_now & ~taken, far, -jnp.inf)
            best = jax.nn.one_hot(jnp.argmax(far, 1), far.shape[1], dtype=bool)
            best = best & jnp.isfinite(jnp.max(far, 1, keepdims=True))  # none left: no pick
            return taken | best, jnp.where(best, cfg.per_step - i, score)

        start = (jnp.zeros_like(hidden_now), jnp.zeros(hidden_now.shape))
        return jax.lax.fori_loop(0, cfg.per_step, pick, start)[1]

    return reveal(predict, params, batch, k_loop, known, hidden, cfg, priority)


def _then_redraw(predict, params, batch: Batch, key, cfg: SampleConfig):
    """What remask and repair share: (hidden [B, L], the first draw (random order), the
    rounds' key, and redraw(tokens, redo, key): the `redo` positions drawn again, in random
    order, given every other token)."""
    hidden, _ = _start(batch)
    k_first, k_rounds = jax.random.split(key)

    def redraw(tokens, redo, k):
        sub = dataclasses.replace(batch, tokens=jnp.where(redo, 0, tokens), mask=redo)
        return random_order(predict, params, sub, k, cfg)

    return hidden, random_order(predict, params, batch, k_first, cfg), k_rounds, redraw


def _again(h: int, cfg) -> int:
    """How many of a row's h drawn tokens a remask round hides: ceil(remask x h), at least one
    (worked out in float64 on the host: float32's rounding moves the ceiling)."""
    return max(math.ceil(cfg.remask * h - 1e-9), min(h, 1))


def _remask_calls(h: int, cfg) -> int:
    return _one_pass(h, cfg) + cfg.rounds * _one_pass(_again(h, cfg), cfg)


@register(
    "remask",
    "random, then `rounds` rounds redrawing a random `remask` share of the drawn tokens",
    exact=True,
    calls=_remask_calls,
)
def remask(predict, params, batch: Batch, key, cfg: SampleConfig):
    hidden, tokens, k_rounds, redraw = _then_redraw(predict, params, batch, key, cfg)
    table = jnp.asarray([_again(h, cfg) for h in range(hidden.shape[1] + 1)], jnp.int32)
    again = table[hidden.sum(1)]  # [B] tokens hidden again a round, per row

    def one_round(r, tokens):
        k_pick, k_redraw = jax.random.split(jax.random.fold_in(k_rounds, r))
        u = jnp.where(hidden, jax.random.uniform(k_pick, hidden.shape), jnp.inf)
        rank = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
        return redraw(tokens, hidden & (rank < again[:, None]), k_redraw)

    return jax.lax.fori_loop(0, cfg.rounds, one_round, tokens)


LOO_ELEMENTS = 2**26  # a leave-one-out call's rows x L x L at most (its attention's size)


def leave_one_out(predict, params, batch: Batch, tokens):
    """[B, L] log p(token i | every other token) under the model: rows (b, i), the example b
    with position i alone hidden, in calls of B x c rows (c positions a call, as many as keep
    B c L^2 under LOO_ELEMENTS: one call where B L^3 fits)."""
    b, length = tokens.shape
    c = max(1, min(length, LOO_ELEMENTS // max(b * length * length, 1)))
    blocks = -(-length // c)
    at = jnp.minimum(jnp.arange(blocks * c), length - 1).reshape(blocks, c)  # padded: repeats

    def block(positions_C):
        rows = jax.tree.map(lambda a: jnp.repeat(a, c, axis=0), batch)
        alone = jnp.tile(jax.nn.one_hot(positions_C, length, dtype=bool), (b, 1))
        mine = dataclasses.replace(rows, tokens=jnp.repeat(tokens, c, 0), mask=alone)
        logp = jax.nn.log_softmax(predict(params, mine).astype(jnp.float32), -1)
        logp = logp.reshape(b, c, length, -1)[:, jnp.arange(c), positions_C]  # [B, c, K]
        return jnp.take_along_axis(logp, tokens[:, positions_C, None], -1)[..., 0]  # [B, c]

    out = jax.lax.map(block, at)  # [blocks, B, c]
    return jnp.moveaxis(out, 0, 1).reshape(b, blocks * c)[:, :length]


def _repair_calls(h: int, cfg) -> int:
    """Each round one leave-one-out pass (counted as one call: it is ceil(L / c) calls of
    leave_one_out's blocks) and at most every drawn token again."""
    return _one_pass(h, cfg) + cfg.rounds * (1 + _one_pass(h, cfg))


@register(
    "repair",
    "random, then rounds redrawing every drawn token under `threshold` given all the others",
    exact=False,
    calls=_repair_calls,
    adaptive=True,
)
def repair(predict, params, batch: Batch, key, cfg: SampleConfig):
    hidden, tokens, k_rounds, redraw = _then_redraw(predict, params, batch, key, cfg)
    if hidden.shape[0] == 0:
        return tokens
    floor = jnp.log(jnp.float32(cfg.threshold))

    def one_round(state):  # the strays found, then redrawn; none found: the last round
        r, tokens, _ = state
        redo = hidden & (leave_one_out(predict, params, batch, tokens) < floor)
        return r + 1, redraw(tokens, redo, jax.random.fold_in(k_rounds, r)), jnp.any(redo)

    def more(state):
        return (state[0] < cfg.rounds) & state[2]

    return jax.lax.while_loop(more, one_round, (0, tokens, jnp.bool_(True)))[1]


@functools.partial(jax.jit, static_argnames=("predict", "cfg"))
def _sample(predict, params, batch: Batch, key, cfg: SampleConfig):
    if cfg.method != "joint":
        hidden, known = _start(batch)
        logits = predict(params, dataclasses.replace(batch, tokens=known, mask=hidden))
        draws, _ = _draw(key, logits, 0.0 if cfg.method == "argmax" else cfg.temperature)
        return jnp.where(hidden, draws, known)
    return SAMPLERS[cfg.order].fn(predict, params, batch, key, cfg)


def sample(predict, params, batch: Batch, key, cfg: SampleConfig = SampleConfig()):
    """Completions of a batch's hidden tokens drawn from the model. Jitted; joint sampling
    makes calls(cfg, most hidden in any example) model calls.

    Args:
        predict: (params, batch) -> logits [B, L, K] (evaluation.make_predict's function).
        params: the model's parameters.
        batch: a Batch; its mask says what is hidden (the hidden tokens are never read).
        key: a jax.random key.
        cfg: SampleConfig: joint by the repair sampler by default; the joint sampler
            (`order`, one of SAMPLERS), argmax, independent, a temperature, positions
            revealed per call, the rounds and thresholds of remask and repair.

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
