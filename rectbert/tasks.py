"""Per-task batch makers: pure functions of (key, step) that run inside jit.

A Batch holds every token of every example; `mask` says which the model must predict.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rectbert import codebook, masking, shapes


@flax.struct.dataclass
class Batch:
    points: jax.Array  # [B, L, 2] float32, canvas pixels (x, y)
    tokens: jax.Array  # [B, L] int32, the true tokens
    mask: jax.Array  # [B, L] bool, hidden (to be predicted)
    values: jax.Array | None = None  # [B, L, 16] exact patch fractions (rectangle tasks)


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    count: int  # tokens hidden per example (the fixed schedule; eval always uses it)
    schedule: str = "fixed"


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


def _masked(key, points, tokens, spec: MaskSpec, values=None) -> Batch:
    b, length = tokens.shape
    mask = masking.sample_mask(key, b, length, count=spec.count, schedule=spec.schedule)
    return Batch(points=points, tokens=tokens, mask=mask, values=values)


@dataclasses.dataclass(frozen=True, eq=False)
class SquaresTask:
    """n x n binary images of one square; each pixel a token (0 black, 1 white)."""

    mask: MaskSpec
    n: int = 8
    min_side: int = 2
    max_side: int = 5
    presentations: int = 40
    eval_examples: int = 1024
    name: str = "squares"

    def __post_init__(self):
        images, squares = shapes.enumerate_squares(self.n, self.min_side, self.max_side)
        object.__setattr__(self, "tokens_MxL", images.reshape(images.shape[0], -1))
        object.__setattr__(self, "squares_Mx4", squares)
        ys, xs = np.meshgrid(np.arange(self.n), np.arange(self.n), indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32) + 0.5
        object.__setattr__(self, "points_Lx2", jnp.asarray(centres))

    num_tokens = property(lambda self: 2)
    seq_len = property(lambda self: self.n * self.n)
    extent = property(lambda self: float(self.n))
    unit = property(lambda self: 1.0)
    num_examples = property(lambda self: self.tokens_MxL.shape[0])

    def train_batch(self, key, step, batch: int) -> Batch:
        k_order, k_mask = jax.random.split(key)
        idx = stream_indices(k_order, step, batch, self.num_examples, self.presentations)
        points = jnp.broadcast_to(self.points_Lx2, (batch, *self.points_Lx2.shape))
        return _masked(jax.random.fold_in(k_mask, step), points, self.tokens_MxL[idx], self.mask)

    def eval_set(self, key) -> Batch:
        """Every image in turn with fixed random masks (there are no unseen squares)."""
        idx = jnp.arange(self.eval_examples) % self.num_examples
        points = jnp.broadcast_to(self.points_Lx2, (self.eval_examples, *self.points_Lx2.shape))
        spec = dataclasses.replace(self.mask, schedule="fixed")
        return _masked(key, points, self.tokens_MxL[idx], spec)

    def eval_extra(self, pred_NxL, batch: Batch, key) -> dict:
        return {}


def rect_tokens(rects_Nx4, centroids_KxG):
    """[N, 169] grid tokens of rectangles: quantised 4x4 patches of the 16x16 image."""
    return codebook.quantise(rect_patches(rects_Nx4), centroids_KxG)


def rect_patches(rects_Nx4):
    """[N, 169, 16] the exact 4x4 patches of the 16x16 downsampled image."""
    return codebook.extract_patches(shapes.downsample(rects_Nx4))


@dataclasses.dataclass(frozen=True, eq=False)
class GridTask:
    """Rectangles on the 16x16 downsampled grid: 169 patch tokens from the codebook.

    `train_rects` is a fixed training set, or None for fresh rectangles every step;
    evaluation rectangles come from their own key, so they are never trained on.
    """

    mask: MaskSpec
    centroids: jax.Array  # [K, 16]
    prior: dict  # sample_rects keyword arguments
    train_rects: jax.Array | None = None
    presentations: int = 1
    eval_examples: int = 512
    name: str = "grid"

    def __post_init__(self):
        object.__setattr__(self, "points_Lx2", shapes.lattice_points())
        if self.train_rects is not None:
            object.__setattr__(self, "train_values", rect_patches(self.train_rects))
            tokens = codebook.quantise(self.train_values, self.centroids)
            object.__setattr__(self, "train_tokens", tokens)

    num_tokens = property(lambda self: self.centroids.shape[0])
    seq_len = property(lambda self: 169)
    extent = property(lambda self: float(shapes.CANVAS))
    unit = property(lambda self: float(shapes.CELL))

    def _points(self, batch):
        return jnp.broadcast_to(self.points_Lx2, (batch, *self.points_Lx2.shape))

    def train_batch(self, key, step, batch: int) -> Batch:
        k_data, k_mask = jax.random.split(key)
        if self.train_rects is None:
            rects = shapes.sample_rects(jax.random.fold_in(k_data, step), batch, **self.prior)
            values = rect_patches(rects)
            tokens = codebook.quantise(values, self.centroids)
        else:
            n = self.train_rects.shape[0]
            idx = stream_indices(k_data, step, batch, n, self.presentations)
            tokens, values = self.train_tokens[idx], self.train_values[idx]
        k_mask = jax.random.fold_in(k_mask, step)
        return _masked(k_mask, self._points(batch), tokens, self.mask, values)

    def eval_rects(self, key):
        return shapes.sample_rects(jax.random.fold_in(key, 0), self.eval_examples, **self.prior)

    def eval_set(self, key) -> Batch:
        values = rect_patches(self.eval_rects(key))
        tokens = codebook.quantise(values, self.centroids)
        spec = dataclasses.replace(self.mask, schedule="fixed")
        points = self._points(self.eval_examples)
        return _masked(jax.random.fold_in(key, 1), points, tokens, spec, values)

    def eval_extra(self, pred_NxL, batch: Batch, key) -> dict:
        """Pixel MSE of the stitched prediction, and of the codebook alone (the floor)."""
        images = shapes.downsample(self.eval_rects(key))
        filled = jnp.where(batch.mask, pred_NxL, batch.tokens)
        recon = codebook.stitch(codebook.decode(filled, self.centroids))
        floor = codebook.stitch(codebook.decode(batch.tokens, self.centroids))
        return {
            "eval/pixel_mse": jnp.mean((recon - images) ** 2),
            "eval/codebook_pixel_mse": jnp.mean((floor - images) ** 2),
        }


def nearest_visible_tokens(batch: Batch):
    """[B, L] for each position, the token of the nearest visible point (a baseline)."""
    d_BxLxL = jnp.sum((batch.points[:, :, None] - batch.points[:, None, :]) ** 2, axis=-1)
    d_BxLxL = jnp.where(batch.mask[:, None, :], jnp.inf, d_BxLxL)
    nearest_BxL = jnp.argmin(d_BxLxL, axis=-1)
    return jnp.take_along_axis(batch.tokens, nearest_BxL, axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class SparseTask:
    """P points per rectangle at continuous coordinates; each token exact from the rectangle.

    `train_rects` is a fixed training set (the write-up's 100) whose points are redrawn every
    step, or None for fresh rectangles every step. Held-out rectangles come from their own key.
    """

    mask: MaskSpec
    centroids: jax.Array  # [K, 16]
    prior: dict  # sample_rects keyword arguments
    num_points: int = 24
    sampler: str = "uniform"  # shapes.POINT_SAMPLERS
    train_rects: jax.Array | None = None
    fixed_points: bool = False  # fixed set: draw each rectangle's points once, not every step
    presentations: int = 1
    eval_examples: int = 512
    name: str = "sparse"

    def __post_init__(self):
        if self.sampler not in shapes.POINT_SAMPLERS:
            raise ValueError(
                f"sampler must be one of {shapes.POINT_SAMPLERS}; got {self.sampler!r}"
            )
        # the majority-token baseline: the most common token of the training distribution
        rects = (
            self.train_rects
            if self.train_rects is not None
            else shapes.sample_rects(jax.random.key(12345), 2048, **self.prior)
        )
        tokens = self.examples(jax.random.key(54321), rects).tokens
        counts = jnp.bincount(tokens.ravel(), length=self.num_tokens)
        object.__setattr__(self, "majority_token", int(jnp.argmax(counts)))
        if self.fixed_points and self.train_rects is not None:
            fixed = self.examples(jax.random.key(777), self.train_rects)
            object.__setattr__(self, "train_examples", fixed)

    num_tokens = property(lambda self: self.centroids.shape[0])
    seq_len = property(lambda self: self.num_points)
    extent = property(lambda self: float(shapes.CANVAS))
    unit = property(lambda self: float(shapes.CELL))

    def examples(self, key, rects_Nx4, spec: MaskSpec | None = None) -> Batch:
        """Points, exact patch values, tokens and a mask for each rectangle."""
        k_points, k_mask = jax.random.split(key)
        points = shapes.sample_points(k_points, rects_Nx4, self.num_points, self.sampler)
        values = shapes.coverage(rects_Nx4, points)
        tokens = codebook.quantise(values, self.centroids)
        return _masked(k_mask, points, tokens, spec or self.mask, values)

    def train_rects_at(self, key, step, batch: int):
        if self.train_rects is None:
            return shapes.sample_rects(jax.random.fold_in(key, step), batch, **self.prior)
        n = self.train_rects.shape[0]
        return self.train_rects[stream_indices(key, step, batch, n, self.presentations)]

    def train_batch(self, key, step, batch: int) -> Batch:
        k_data, k_points = jax.random.split(key)
        if self.fixed_points and self.train_rects is not None:
            n = self.train_rects.shape[0]
            ex = self.train_examples
            idx = stream_indices(k_data, step, batch, n, self.presentations)
            return _masked(
                jax.random.fold_in(k_points, step),
                ex.points[idx],
                ex.tokens[idx],
                self.mask,
                ex.values[idx],
            )
        rects = self.train_rects_at(k_data, step, batch)
        return self.examples(jax.random.fold_in(k_points, step), rects)

    def eval_rects(self, key):
        return shapes.sample_rects(jax.random.fold_in(key, 0), self.eval_examples, **self.prior)

    def eval_set(self, key) -> Batch:
        spec = dataclasses.replace(self.mask, schedule="fixed")
        return self.examples(jax.random.fold_in(key, 1), self.eval_rects(key), spec)

    def train_eval_set(self, key, data_key, batch: int) -> Batch:
        """Rectangles the model trained on (those of the first steps), with new points
        (with fixed_points: the very examples trained on, with new masks)."""
        spec = dataclasses.replace(self.mask, schedule="fixed")
        if self.fixed_points and self.train_rects is not None:
            idx = jnp.arange(self.eval_examples) % self.train_rects.shape[0]
            ex = self.train_examples
            return _masked(
                jax.random.fold_in(key, 2), ex.points[idx], ex.tokens[idx], spec, ex.values[idx]
            )
        k_data, _ = jax.random.split(data_key)
        steps = -(-self.eval_examples // batch)
        rects = jnp.concatenate([self.train_rects_at(k_data, s, batch) for s in range(steps)])
        return self.examples(jax.random.fold_in(key, 2), rects[: self.eval_examples], spec)

    def eval_extra(self, pred_NxL, batch: Batch, key) -> dict:
        """The two baselines on the same held-out examples, and per-token accuracy."""
        mask = batch.mask
        right = pred_NxL == batch.tokens
        out = {
            "eval/majority_accuracy": jnp.mean((batch.tokens == self.majority_token)[mask]),
            "eval/nearest_accuracy": jnp.mean(
                (nearest_visible_tokens(batch) == batch.tokens)[mask]
            ),
        }
        for k in range(self.num_tokens):
            sel = mask & (batch.tokens == k)
            out[f"eval/token_accuracy/{k:02d}"] = jnp.sum(right & sel) / jnp.maximum(sel.sum(), 1)
        return out
