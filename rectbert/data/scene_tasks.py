"""The grid and sparse tasks: shapes of a scene family, tokenised by a k-means codebook.

Grid: the 169 overlapping 4x4 patches of the 16x16 image; sparse: patches at continuous points.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config, scenes
from rectbert.config import setting
from rectbert.data import keys
from rectbert.data.tasks import (
    BUDGET,
    MAX_ELEMENTS,
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
from rectbert.files import FileError
from rectbert.geometry import codebook, shapes


def patches(scene, params_NxD):
    """[N, 169, 16] the exact 4x4 patches of each shape's 16x16 downsampled image."""
    return codebook.extract_patches(scene.downsample(params_NxD))


@dataclasses.dataclass(frozen=True, eq=False)
class SceneTask(Task):
    """What the grid and sparse tasks share: a scene, its codebook, a fixed training set of
    `num_train` shapes (0: fresh shapes every step) and held-out shapes from their own key."""

    scene: scenes.Scene
    mask: MaskSpec
    num_train: int = setting(
        0, "Fixed training shapes (the write-up: 100); 0: fresh every step.", flag="num_train_rects"
    )
    presentations: int = presentations_setting(1)
    eval_examples: int = eval_examples_setting()
    num_clusters: int = setting(20, "Codebook size K (k-means clusters).")
    codebook_examples: int = setting(
        100, "Shapes whose patches fit the codebook.", flag="codebook_rects"
    )
    seed: int = seed_setting()
    centroids: jax.Array | None = None  # [K, 16]: fit_codebook() or a workdir's codebook.npy
    has_values: ClassVar[bool] = True

    def __post_init__(self):
        per_shape = (shapes.CANVAS // shapes.CELL - shapes.GRID + 1) ** 2  # patches
        n_patches = self.codebook_examples * per_shape
        c_shape = None if self.centroids is None else tuple(jnp.shape(self.centroids))
        most_train = MAX_ELEMENTS // (self.seq_len * shapes.GRID**2)
        most_fit = MAX_ELEMENTS // (per_shape * shapes.GRID**2)
        config.validate(
            self,
            [
                (
                    0 <= self.num_train <= most_train,
                    "num_train",
                    f"an integer in [0, {most_train}] (0: fresh shapes; the set's [shapes, "
                    f"{self.seq_len}, 16] float32 patch values {BUDGET})",
                ),
                (
                    1 <= self.codebook_examples <= most_fit,
                    "codebook_examples",
                    f"an integer in [1, {most_fit}] (their [shapes x {per_shape}, 16] float32 "
                    f"patches {BUDGET})",
                ),
                (
                    2 <= self.num_clusters <= n_patches,
                    "num_clusters",
                    f"an integer in [2, {n_patches}] (the codebook's patches)",
                ),
                (
                    c_shape in (None, (self.num_clusters, shapes.GRID**2)),
                    "centroids",
                    f"None or shape ({self.num_clusters}, {shapes.GRID**2})",
                ),
                *common_checks(self, self.seq_len),
            ],
        )

    num_tokens = property(lambda self: self.num_clusters)
    num_examples = property(lambda self: self.num_train)
    extent = property(lambda self: float(self.scene.size))
    unit = property(lambda self: float(shapes.CELL))

    def fit_codebook(self):
        """([K, 16] k-means centroids, inertia) of every patch of `codebook_examples` shapes."""
        key = keys.codebook(self.seed)
        images = jax.jit(
            lambda: self.scene.downsample(self.scene.sample(key, self.codebook_examples))
        )()
        return codebook.fit_codebook(key, images, self.num_clusters)

    def prepare(self, workdir: str, *, main: bool = True):
        """With the run's codebook: codebook.npy when the workdir has one (the run's record,
        written before, says it was made for these settings), else fitted (all processes
        alike, from the same key) and written by process 0. A task given its codebook (a study's
        row) writes it there, or checks that the one there is it (FileError, one line)."""
        path = os.path.join(workdir, "codebook.npy")
        shape = (self.num_clusters, shapes.GRID**2)
        if self.centroids is None:
            if os.path.lexists(path):
                return self.with_codebook(codebook.load(path, shape))
            centroids = np.asarray(self.fit_codebook()[0], np.float32)
        else:
            centroids = np.asarray(self.centroids, np.float32)
            if os.path.lexists(path):
                if not np.array_equal(codebook.load(path, shape), centroids):
                    raise FileError("its codebook.npy is not the codebook this run is given")
                return self
        if main:
            os.makedirs(workdir, exist_ok=True)
            codebook.save(path, centroids)
        return self.with_codebook(centroids)

    def with_codebook(self, centroids):
        return dataclasses.replace(self, centroids=jnp.asarray(centroids, jnp.float32))

    @property
    def codebook(self):
        if self.centroids is None:
            raise ValueError(f"the {self.name} task has no codebook yet: use with_codebook()")
        return self.centroids

    @constant
    def train_params(self):
        """[num_train, D] the fixed training shapes, or None (fresh shapes every step)."""
        if not self.num_train:
            return None
        return self.scene.sample(keys.train_set(self.seed), self.num_train)

    @constant
    def eval_params(self):
        """[eval_examples, D] the held-out shapes."""
        k = jax.random.fold_in(keys.key(self.seed, "held_out"), 0)
        return self.scene.sample(k, self.eval_examples)

    def unseen_eval_set(self):
        """eval_examples shapes of the scene's unseen() kinds (glyphs, fonts never trained
        on), their points and masks drawn as the held-out set's, from a key of their own; or
        None where the scene has no such split."""
        held = self.scene.unseen()
        if held is None:
            return None
        k_shapes, k_examples = jax.random.split(keys.key(self.seed, "unseen"))
        params = held.sample(k_shapes, self.eval_examples)
        return dataclasses.replace(self, scene=held).eval_batch(k_examples, params)

    def shapes_at(self, key, step, batch: int):
        """[batch, D] the training shapes of a step: fresh, or from the fixed set's stream."""
        if self.train_params is None:
            return self.scene.sample(jax.random.fold_in(key, step), batch)
        idx = stream_indices(key, step, batch, self.num_train, self.presentations)
        return self.train_params[idx]

    def tokens_of(self, values_xG):
        return codebook.quantise(values_xG, self.codebook)

    def record(self) -> dict:
        return {"name": self.name, **config.fields_record(self, skip=("centroids",))}


@dataclasses.dataclass(frozen=True, eq=False)
class GridTask(SceneTask):
    """Shapes on the 16x16 downsampled grid: 169 overlapping 4x4 patch tokens."""

    name: ClassVar[str] = "grid"
    lattice: ClassVar[bool] = True
    seq_len = property(lambda self: len(shapes.lattice_points()))

    def _batch(self, key, params, values, spec) -> Batch:
        points = jnp.broadcast_to(shapes.lattice_points(), (params.shape[0], self.seq_len, 2))
        return masked(key, points, self.tokens_of(values), spec, values, params)

    @constant
    def _train_values(self):
        return None if self.train_params is None else patches(self.scene, self.train_params)

    def train_batch(self, step, batch: int) -> Batch:
        k_data, k_mask = jax.random.split(keys.key(self.seed, "data"))
        k_mask = jax.random.fold_in(k_mask, step)
        if self.train_params is None:
            params = self.shapes_at(k_data, step, batch)
            return self._batch(k_mask, params, patches(self.scene, params), self.mask)
        idx = stream_indices(k_data, step, batch, self.num_train, self.presentations)
        return self._batch(k_mask, self.train_params[idx], self._train_values[idx], self.mask)

    def eval_set(self) -> Batch:
        return self.eval_batch(
            jax.random.fold_in(keys.key(self.seed, "held_out"), 1), self.eval_params
        )

    def eval_batch(self, key, params_NxD) -> Batch:
        """These shapes as evaluation examples (every patch; the fixed mask's count)."""
        return self._batch(key, params_NxD, patches(self.scene, params_NxD), fixed(self.mask))

    def train_eval_set(self, batch: int) -> None:
        return None

    def eval_extra(self, pred_NxL, batch: Batch) -> dict:
        """Pixel MSE of the stitched prediction, and of the codebook alone (the floor)."""
        images = self.scene.downsample(batch.scenes)
        filled = jnp.where(batch.mask, pred_NxL, batch.tokens)
        recon = codebook.stitch(codebook.decode(filled, self.codebook))
        floor = codebook.stitch(codebook.decode(batch.tokens, self.codebook))
        return {
            "eval/pixel_mse": jnp.mean((recon - images) ** 2),
            "eval/codebook_pixel_mse": jnp.mean((floor - images) ** 2),
        }
