"""The squares task: n x n binary images of one square, every pixel a token (write-up part 1)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.config import setting
from rectbert.data import keys
from rectbert.data.tasks import (
    BUDGET,
    MAX_ELEMENTS,
    MAX_LEN,
    Batch,
    MaskSpec,
    Task,
    common_checks,
    constant,
    eval_examples_setting,
    fixed,
    masked,
    presentations_setting,
    seed_setting,
    stream_indices,
)
from rectbert.geometry import shapes


@dataclasses.dataclass(frozen=True, eq=False)
class SquaresTask(Task):
    """n x n binary images of one square; each pixel a token (0 black, 1 white)."""

    mask: MaskSpec
    n: int = setting(8, "Image side n (tokens per image: n * n).", flag="image_size")
    min_side: int = setting(2, "Smallest square side.", flag="min_square")
    max_side: int = setting(5, "Largest square side.", flag="max_square")
    presentations: int = presentations_setting(40)  # the write-up's regime
    eval_examples: int = eval_examples_setting()
    seed: int = seed_setting()
    name: ClassVar[str] = "squares"
    lattice: ClassVar[bool] = True
    has_values: ClassVar[bool] = False
    centroids: ClassVar[None] = None

    def __post_init__(self):
        side = math.isqrt(MAX_LEN)  # n * n tokens per image
        config.validate(
            self,
            [
                (
                    1 <= self.n <= side,
                    "n",
                    f"an integer in [1, {side}] (n * n tokens: at most {MAX_LEN} per example, "
                    f"whose [L, L] attention scores {BUDGET})",
                ),
                (1 <= self.min_side <= self.n, "min_side", f"an integer in [1, n={self.n}]"),
                (
                    self.min_side <= self.max_side <= self.n,
                    "max_side",
                    f"an integer in [min_side={self.min_side}, n={self.n}]",
                ),
            ],
        )
        # then (its size known) the image set, [num_examples, n * n] tokens, and the rest
        images = self.num_examples * self.n * self.n
        allowed = (
            f"a side whose {self.num_examples} squares' [squares, n * n] images fit 2**31 "
            "elements (a smaller n or max_side)"
        )
        config.validate(
            self,
            [(images <= MAX_ELEMENTS, "n", allowed), *common_checks(self, self.n**2, width=2)],
        )

    num_tokens = property(lambda self: 2)
    seq_len = property(lambda self: self.n * self.n)
    extent = property(lambda self: float(self.n))
    unit = property(lambda self: 1.0)

    @constant
    def _images(self):
        images, _ = shapes.enumerate_squares(self.n, self.min_side, self.max_side)
        ys, xs = np.meshgrid(np.arange(self.n), np.arange(self.n), indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32) + 0.5
        return images.reshape(images.shape[0], -1), jnp.asarray(centres)

    @property
    def num_examples(self) -> int:
        return shapes.num_squares(self.n, self.min_side, self.max_side)

    def _batch(self, key, idx_B, spec):
        tokens_MxL, points_Lx2 = self._images
        points = jnp.broadcast_to(points_Lx2, (idx_B.shape[0], *points_Lx2.shape))
        return masked(key, points, tokens_MxL[idx_B], spec)

    def train_batch(self, step, batch: int) -> Batch:
        k_order, k_mask = jax.random.split(keys.key(self.seed, "data"))
        idx = stream_indices(k_order, step, batch, self.num_examples, self.presentations)
        return self._batch(jax.random.fold_in(k_mask, step), idx, self.mask)

    def eval_set(self) -> Batch:
        """Every image in turn with fixed random masks (there are no unseen squares)."""
        idx = jnp.arange(self.eval_examples) % self.num_examples
        return self._batch(keys.key(self.seed, "held_out"), idx, fixed(self.mask))

    def train_eval_set(self, batch: int) -> None:
        return None  # every square is trained on: the held-out set is the training set

    def eval_extra(self, pred_NxL, batch: Batch) -> dict:
        return {}

    def record(self) -> dict:
        return {"name": self.name, **config.fields_record(self)}
