"""What a batch is (Batch), which of its tokens are hidden (MaskSpec), and what a task is (the
Task protocol), with the helpers tasks share: their batches are pure functions of (seed, step)
that run inside jit. A Batch holds every token of every example; `mask` says which the model
must predict.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Protocol

import flax.struct
import jax
import jax.numpy as jnp

from rectbert import config
from rectbert.config import setting
from rectbert.data import keys, masking


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
    """Which tokens a task hides: `count` per example (from the run's --mask_ratio or
    --mask_count; evaluation always hides exactly this many), drawn by `schedule`."""

    count: int
    schedule: str = setting(
        "fixed",
        "fixed count; cosine: MaskGIT's schedule; anycount: 1 ... L-1 hidden (one model for "
        "every visible count); anyorder: 1 ... L-1 hidden, each count alike (with "
        "--loss_average=example: any-order autoregression's objective).",
        flag="mask_schedule",
        choices=masking.SCHEDULES,
    )

    def __post_init__(self):
        config.validate(self, [(self.count >= 1, "count", "an integer >= 1")])


# What memory bounds, checked with the settings before anything is computed or written: one
# array of a run (a batch's activations, the held-out set, the codebook's patches, one head's
# attention scores) holds at most MAX_ELEMENTS elements (8 GiB of float32; int32 indexes it),
# so one example has at most MAX_LEN tokens (its [L, L] scores fit), and steps and counts
# that go through int32 arrays stay below 2**31.
MAX_ELEMENTS = 2**31
MAX_LEN = 2**15
INT32_MAX = 2**31 - 1
BUDGET = "fit 2**31 elements"


def size_checks(model_cfg, train_cfg, length: int, said: str = "") -> None:
    """A ConfigError where a training batch of `length`-token examples would hold an array
    over MAX_ELEMENTS: [batch, L, max(embed_dim, mlp_dim)] activations or [batch, heads, L, L]
    attention scores. Names the batch size (or, where one example alone is too much, the
    model's widest setting)."""
    width = max(model_cfg.embed_dim, model_cfg.mlp_dim)
    per_example = max(length * width, model_cfg.num_heads * length * length)
    if per_example > MAX_ELEMENTS:
        if length * width >= model_cfg.num_heads * length * length:
            field = "embed_dim" if model_cfg.embed_dim == width else "mlp_dim"
            hi, what = MAX_ELEMENTS // length, f"[{length}{said}, {field}] activations"
        else:
            field, hi = "num_heads", MAX_ELEMENTS // (length * length)
            what = f"[heads, {length}{said}, {length}] attention scores"
        raise config.error(model_cfg, field, f"an integer <= {hi} (an example's {what} {BUDGET})")
    hi = MAX_ELEMENTS // per_example
    if train_cfg.batch_size > hi:
        allowed = (
            f"an integer in [1, {hi}] (a batch's [batch, {length}{said}, {width}] activations "
            f"and [batch, {model_cfg.num_heads}, {length}, {length}] attention scores {BUDGET})"
        )
        raise config.error(train_cfg, "batch_size", allowed)


class Task(Protocol):
    """What train() uses of a task; every task is one (and subclasses it for the defaults of
    check() and prepare())."""

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
    @property
    def num_examples(self) -> int: ...  # the training set (epochs count it); 0: fresh ones

    def train_batch(self, step, batch: int) -> Batch: ...
    def eval_set(self) -> Batch: ...
    def train_eval_set(self, batch: int) -> Batch | None: ...  # examples trained on, or None
    def eval_extra(self, pred_NxL, batch: Batch) -> dict: ...
    def record(self) -> dict: ...

    def check(self, model_cfg, train_cfg) -> None:
        """Refuse (ConfigError) a model or training config only this task cannot train; what
        every task needs of them is checked by training's RunConfig. Here: that a training
        batch fits memory (size_checks)."""
        size_checks(model_cfg, train_cfg, self.seq_len)

    def unseen_eval_set(self) -> Batch | None:
        """Held-out examples of shapes never trained on (a scene's unseen(): glyphs or fonts
        held out), evaluated as eval/unseen_*; None (the default): no such split."""
        return None

    def prepare(self, workdir: str, *, main: bool = True) -> Task:
        """The task bound to the files of the run in `workdir` (a scene task: its codebook,
        read from codebook.npy or fitted and written by process 0); called by train() once
        it holds the workdir."""
        return self


def seed_setting():
    """The `seed` field every task has: every random draw of a run derives from it."""
    return setting(
        0,
        "Random seed: every draw of the run (init, data, masks, points, a fixed set's point "
        f"clouds, the majority baseline, the Fourier frequencies); an integer in [0, "
        f"{keys.MAX_SEED}].",
    )


def presentations_setting(default: int):
    return setting(default, "Times each training example is shown in a row per epoch.")


def eval_examples_setting():
    return setting(512, "Held-out examples per evaluation.")


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


def common_checks(task, seq_len: int, width: int = 16) -> list:
    """The checks every task makes: its seed, presentations (an epoch of num_examples x
    presentations is counted in int32) and held-out examples (their [examples, seq_len,
    width] arrays fit MAX_ELEMENTS), and its mask."""
    epoch = INT32_MAX // max(task.num_examples, 1)
    most = MAX_ELEMENTS // (seq_len * width)
    return [
        (keys.valid_seed(task.seed), "seed", f"an integer in [0, {keys.MAX_SEED}]"),
        (
            1 <= task.presentations <= epoch,
            "presentations",
            f"an integer in [1, {epoch}] (an epoch of {task.num_examples} examples x "
            "presentations is counted in int32)",
        ),
        (
            1 <= task.eval_examples <= most,
            "eval_examples",
            f"an integer in [1, {most}] (the held-out set's [examples, {seq_len}, {width}] "
            f"float32 arrays {BUDGET})",
        ),
        (
            task.mask.count < seq_len,
            "mask",
            f"a count in [1, {seq_len - 1}]: at least one of {seq_len} tokens stays visible",
        ),
    ]
