"""load_run(workdir): a trained run's parameters, codebook and a predict function.

Reads what train.train wrote: config.json, codebook.npy (rectangle tasks), ckpt/.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import checkpoint, evaluation, scene_tasks, scenes, tasks
from rectbert import codebook as codebook_lib
from rectbert import model as model_lib
from rectbert import workdir as workdir_lib
from rectbert.tasks import Batch


@dataclasses.dataclass(frozen=True)
class Run:
    workdir: str
    config: dict
    model_config: model_lib.ModelConfig
    params: dict
    step: int
    codebook: np.ndarray | None  # [K, 16] centroids for rectangle tasks

    @property
    def scene(self) -> scenes.Scene | None:
        """The scene family the run trained on (grid and sparse runs), with its options."""
        task = self.config.get("task")
        rec = task.get("scene") if isinstance(task, dict) else None  # squares: no scene
        return None if rec is None else scenes.from_record(rec)

    def task(self):
        """The run's task rebuilt from config.json (the same held-out set, points and masks),
        with the run's codebook for grid and sparse runs."""
        rec = dict(self.config.get("task") or {})
        classes = {
            c.name: c for c in (tasks.SquaresTask, scene_tasks.GridTask, scene_tasks.SparseTask)
        }
        name = rec.pop("name", None)
        if name not in classes:
            raise ValueError(
                f"workdir={self.workdir!r}: config.json names no known task ({name!r})"
            )
        try:
            rec["mask"] = tasks.MaskSpec(**rec["mask"])
            if "scene" in rec:
                rec["scene"] = scenes.from_record(rec["scene"])
            task = classes[name](**rec)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"workdir={self.workdir!r}: config.json's task is damaged ({e!r})"
            ) from None
        if self.codebook is not None and name != "squares":
            task = task.with_codebook(self.codebook)
        return task

    def oracle_curve(self, visible=None, examples: int = 256, cfg=None):
        """(rows, calibration) of ceiling.curve for this sparse run at these visible counts
        (default: ceiling.default_visible), on its task's first `examples` held-out examples."""
        from rectbert import ceiling  # figures and the oracle: only when asked

        task = self.task()
        if task.name != "sparse":
            raise ValueError(f"workdir={self.workdir!r}: the oracle curve needs a sparse run")
        predict = _predict_fn(self.model_config)
        return ceiling.curve(task, predict, self.params, visible, examples, cfg)

    def tokens(self, shapes_BxD, points_BxPx2):
        """[B, P] the true tokens of these shapes (rows of run.scene's parameters) at these
        points: the exact coverage of each point's window, quantised with the run's codebook."""
        if self.codebook is None or self.scene is None:
            raise ValueError(f"workdir={self.workdir!r}: a run without a scene or codebook")
        values = self.scene.coverage(jnp.asarray(shapes_BxD), jnp.asarray(points_BxPx2))
        return codebook_lib.quantise(values, jnp.asarray(self.codebook))

    def predict(self, points_BxPx2, tokens_BxP, visible_BxP):
        """Token probabilities [B, P, K] at every position, given the visible tokens.

        Invisible entries of tokens_BxP are ignored (the model sees [mask] there).
        """
        visible = jnp.asarray(visible_BxP, bool)
        tokens = jnp.where(visible, jnp.asarray(tokens_BxP, jnp.int32), 0)
        batch = Batch(points=jnp.asarray(points_BxPx2, jnp.float32), tokens=tokens, mask=~visible)
        return jax.nn.softmax(_predict_fn(self.model_config)(self.params, batch), axis=-1)

    def sample(self, points_BxPx2, tokens_BxP, visible_BxP, key, cfg=None):
        """[B, P] completions: the visible tokens kept, the others drawn from the model
        (sampling.SampleConfig: joint in random order by default; argmax; independent)."""
        from rectbert import sampling

        visible = jnp.asarray(visible_BxP, bool)
        tokens = jnp.where(visible, jnp.asarray(tokens_BxP, jnp.int32), 0)
        batch = Batch(points=jnp.asarray(points_BxPx2, jnp.float32), tokens=tokens, mask=~visible)
        predict = _predict_fn(self.model_config)
        return sampling.sample(predict, self.params, batch, key, cfg or sampling.SampleConfig())


_PREDICT_CACHE: dict = {}


def _predict_fn(model_cfg):
    if model_cfg not in _PREDICT_CACHE:
        _PREDICT_CACHE[model_cfg] = evaluation.make_predict(model_cfg)
    return _PREDICT_CACHE[model_cfg]


def load_run(workdir: str, step: int | None = None) -> Run:
    """The run in `workdir` at its latest checkpoint (or at `step`)."""
    try:
        config = workdir_lib.read_record(workdir)
    except workdir_lib.WorkdirError as e:
        raise ValueError(f"workdir={workdir!r}: {e}") from None
    if config is None or "model" not in config:
        raise ValueError(f"workdir={workdir!r} holds no trained run's config.json")
    fields = {f.name for f in dataclasses.fields(model_lib.ModelConfig)}
    if set(config["model"]) != fields:
        odd = sorted(set(config["model"]) ^ fields)
        raise ValueError(f"workdir={workdir!r}: config.json's model has other fields ({odd})")
    model_cfg = model_lib.ModelConfig(**config["model"])
    # the parameter structure, to restore into (shapes only; nothing is computed)
    model = model_lib.Encoder(model_cfg)
    length = max(model_cfg.num_positions, 1)
    abstract = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0), jnp.zeros((1, length), jnp.int32), jnp.zeros((1, length, 2))
        )["params"]
    )
    params, step = checkpoint.restore_params(workdir, abstract, step)
    codebook_path = os.path.join(workdir, "codebook.npy")
    codebook = None
    if os.path.lexists(codebook_path):
        try:
            codebook = workdir_lib.read_codebook(codebook_path, (model_cfg.num_tokens, 16))
        except workdir_lib.WorkdirError as e:
            raise ValueError(f"workdir={workdir!r}: {e}") from None
    return Run(workdir, config, model_cfg, params, int(step), codebook)


def query(predict, params, visible_points_Vx2, visible_tokens_V, query_points_Qx2, *, chunk: int):
    """Argmax tokens [Q] at query points, given one example's visible (point, token) pairs.

    Queries go in chunks of `chunk` hidden positions beside all visible ones, as in training
    (so a full-attention model sees the number of hidden tokens it was trained with).
    `predict(params, batch) -> logits` is evaluation.make_predict's function.
    """
    vis_p = jnp.asarray(visible_points_Vx2, jnp.float32)
    vis_t = jnp.asarray(visible_tokens_V, jnp.int32)
    q = jnp.asarray(query_points_Qx2, jnp.float32)
    n_q, n_v = q.shape[0], vis_p.shape[0]
    n_chunks = -(-n_q // chunk)
    q = jnp.concatenate([q, jnp.broadcast_to(q[:1], (n_chunks * chunk - n_q, 2))])
    points = jnp.concatenate(
        [jnp.broadcast_to(vis_p, (n_chunks, n_v, 2)), q.reshape(n_chunks, chunk, 2)], axis=1
    )
    tokens = jnp.concatenate(
        [jnp.broadcast_to(vis_t, (n_chunks, n_v)), jnp.zeros((n_chunks, chunk), jnp.int32)], 1
    )
    mask = jnp.concatenate(
        [jnp.zeros((n_chunks, n_v), bool), jnp.ones((n_chunks, chunk), bool)], axis=1
    )
    logits = predict(params, Batch(points=points, tokens=tokens, mask=mask))
    return jnp.argmax(logits[:, n_v:], -1).reshape(-1)[:n_q]


def render(points_Nx2, values_NxG, *, size: int = 256, cell: int = 16):
    """[size, size] image: every point's grid x grid cell values painted over its window and
    averaged where windows overlap (at lattice spacing `cell` this is codebook.stitch)."""
    points = np.asarray(points_Nx2, np.float64)
    values = np.asarray(values_NxG, np.float64)
    grid = int(round(values.shape[1] ** 0.5))
    total, count = np.zeros((size, size)), np.zeros((size, size))
    half = grid * cell / 2
    for (px, py), v in zip(points, values.reshape(-1, grid, grid), strict=True):
        for r in range(grid):
            y0 = int(round(py - half + r * cell))
            for c in range(grid):
                x0 = int(round(px - half + c * cell))
                ys, xs = slice(max(y0, 0), max(y0 + cell, 0)), slice(max(x0, 0), max(x0 + cell, 0))
                total[ys, xs] += v[r, c]
                count[ys, xs] += 1
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def dense_lattice(spacing: float, *, lo: float = 32.0, hi: float = 224.0):
    """[M, 2] points on a square lattice over [lo, hi]^2 (the valid point region)."""
    t = np.arange(lo, hi + 1e-6, spacing, dtype=np.float32)
    ys, xs = np.meshgrid(t, t, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], -1)
