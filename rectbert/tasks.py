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


def _masked(key, points, tokens, spec: MaskSpec) -> Batch:
    b, length = tokens.shape
    mask = masking.sample_mask(key, b, length, count=spec.count, schedule=spec.schedule)
    return Batch(points=points, tokens=tokens, mask=mask)


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
    patches = codebook.extract_patches(shapes.downsample(rects_Nx4))
    return codebook.quantise(patches, centroids_KxG)


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
            object.__setattr__(self, "train_tokens", rect_tokens(self.train_rects, self.centroids))

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
            tokens = rect_tokens(rects, self.centroids)
        else:
            n = self.train_rects.shape[0]
            tokens = self.train_tokens[stream_indices(k_data, step, batch, n, self.presentations)]
        return _masked(jax.random.fold_in(k_mask, step), self._points(batch), tokens, self.mask)

    def eval_rects(self, key):
        return shapes.sample_rects(jax.random.fold_in(key, 0), self.eval_examples, **self.prior)

    def eval_set(self, key) -> Batch:
        tokens = rect_tokens(self.eval_rects(key), self.centroids)
        spec = dataclasses.replace(self.mask, schedule="fixed")
        return _masked(jax.random.fold_in(key, 1), self._points(self.eval_examples), tokens, spec)

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
