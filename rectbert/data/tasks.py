"""The tasks: what a batch is. Pure functions of (seed, step) that run inside jit.

A Batch holds every token of every example; `mask` says which the model must predict.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Protocol

import flax.struct
import jax
import jax.numpy as jnp

from rectbert import config
from rectbert.data import keys, masking
from rectbert.geometry import shapes
from rectbert.model import positions


@flax.struct.dataclass
class Batch:
    points: jax.Array  # [B, L, 2] float32, canvas pixels (x, y)
    tokens: jax.Array  # [B, L] int32, the true tokens
    mask: jax.Array  # [B, L] bool, hidden (to be predicted)
    values: jax.Array | None = None  # [B, L, 16] exact patch fractions (scene tasks)
    scenes: jax.Array | None = None  # [B, D] the scene parameters of each example

    def model_inputs(self, mask_id: int):
        """What the model sees: [mask] (id K) wherever a token is hidden."""
        return jnp.where(self.mask, mask_id, self.tokens)


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    count: int  # tokens hidden per example (the fixed schedule; eval always uses it)
    schedule: str = "fixed"  # masking.SCHEDULES

    def __post_init__(self):
        config.validate(
            self,
            [
                (self.count >= 1, "count", "an integer >= 1"),
                (self.schedule in masking.SCHEDULES, "schedule", f"one of {masking.SCHEDULES}"),
            ],
        )


class Task(Protocol):
    """What train() uses of a task; every task below is one."""

    name: ClassVar[str]
    lattice: ClassVar[bool]  # points on a fixed lattice (a learned position table works)
    has_values: ClassVar[bool]  # batches carry exact patch values (soft loss, aux head)
    seed: int  # every random draw of the data derives from it (keys.py)
    mask: MaskSpec
    centroids: jax.Array | None  # [K, 16] codebook of a scene task (the soft loss uses it)

    @property
    def num_tokens(self) -> int: ...
    @property
    def seq_len(self) -> int: ...
    @property
    def extent(self) -> float: ...  # canvas side, pixels
    @property
    def unit(self) -> float: ...  # pixels per lattice step

    def train_batch(self, step, batch: int) -> Batch: ...
    def eval_set(self) -> Batch: ...
    def train_eval_set(self, batch: int) -> Batch | None: ...  # examples trained on, or None
    def eval_extra(self, pred_NxL, batch: Batch) -> dict: ...
    def record(self) -> dict: ...


def check_compatible(task: Task, model_cfg, train_cfg=None) -> None:
    """Refuse a model or training config this task cannot train (one ConfigError)."""
    name = type(model_cfg).__name__
    if model_cfg.num_tokens != task.num_tokens:
        raise config.ConfigError(name, "num_tokens", model_cfg.num_tokens, f"{task.num_tokens}")
    if not task.lattice and not positions.POSITIONS[model_cfg.position].continuous:
        allowed = f"a continuous embedding for {task.name} points: {positions.continuous()}"
        raise config.ConfigError(name, "position", model_cfg.position, allowed)
    indexed = not positions.POSITIONS[model_cfg.position].continuous
    if task.lattice and indexed and model_cfg.num_positions < task.seq_len:
        raise config.ConfigError(name, "num_positions", model_cfg.num_positions, task.seq_len)
    if getattr(task, "extra_targets", 0) and model_cfg.attention != "context":
        allowed = "context with extra training targets (with full attention they would be inputs)"
        raise config.ConfigError(name, "attention", model_cfg.attention, allowed)
    if train_cfg is None:
        return
    t_name = type(train_cfg).__name__
    if not task.has_values and train_cfg.loss == "soft":
        allowed = f"ce or smooth: {task.name} has no codebook to soften targets with"
        raise config.ConfigError(t_name, "loss", train_cfg.loss, allowed)
    if not task.has_values and train_cfg.aux_weight > 0:
        allowed = f"0: {task.name} has no patch values to regress"
        raise config.ConfigError(t_name, "aux_weight", train_cfg.aux_weight, allowed)
    if train_cfg.aux_weight > 0 and model_cfg.aux_dim != shapes.GRID**2:
        raise config.ConfigError(name, "aux_dim", model_cfg.aux_dim, f"{shapes.GRID**2}")


def constant(fn):
    """A cached property for a task's fixed arrays, computed as one compiled program (not op
    by op) and eagerly even when first read inside a jit trace, so the cache never holds a
    tracer."""

    @functools.wraps(fn)
    def eager(self):
        # compiled ahead of time and called: concrete arrays, even inside another trace
        # (ensure_compile_time_eval would run it op by op: 10 s for a junction baseline)
        return jax.jit(lambda: fn(self)).lower().compile()()

    return functools.cached_property(eager)


def stream_indices(key, step, batch: int, n: int, presentations: int):
    """Which of n examples fill the batch at `step`, as the write-up's regime.

    The stream is a sequence of epochs; each epoch visits the n examples in a fresh random
    order, showing each `presentations` times in a row. presentations=1 is plain shuffling.
    """
    s_B = step * batch + jnp.arange(batch)
    per_epoch = n * presentations
    epoch_B, within_B = s_B // per_epoch, (s_B % per_epoch) // presentations
    perm = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))
    return jnp.take_along_axis(perm(epoch_B), within_B[:, None], axis=1)[:, 0]


def masked(key, points_BxLx2, tokens_BxL, spec: MaskSpec, values=None, scenes_=None) -> Batch:
    b, length = tokens_BxL.shape
    mask = masking.sample_mask(key, b, length, count=spec.count, schedule=spec.schedule)
    return Batch(points_BxLx2, tokens_BxL, mask, values, scenes_)


def fixed(spec: MaskSpec) -> MaskSpec:
    return dataclasses.replace(spec, schedule="fixed")


def common_checks(task, seq_len: int) -> list:
    return [
        (keys.valid_seed(task.seed), "seed", f"an integer in [0, {keys.MAX_SEED}]"),
        (task.presentations >= 1, "presentations", "an integer >= 1"),
        (task.eval_examples >= 1, "eval_examples", "an integer >= 1"),
        (
            task.mask.count < seq_len,
            "mask",
            f"a count in [1, {seq_len - 1}]: at least one of {seq_len} tokens stays visible",
        ),
    ]
