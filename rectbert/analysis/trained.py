"""load_run(workdir): a trained run — its configuration, parameters, codebook, task and scene —
and what can be asked of it: predictions, exact tokens, the oracle curve, joint samples.

Reads what training wrote: config.json, codebook.npy (scene tasks), ckpt/.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import scenes
from rectbert.analysis import oracle_curve
from rectbert.analysis.samples import sampler
from rectbert.data import scene_tasks, squares, tasks
from rectbert.data.tasks import Batch
from rectbert.files import FileError
from rectbert.geometry import codebook as codebook_lib
from rectbert.model import encoder
from rectbert.training import checkpoint, evaluation
from rectbert.training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Run:
    workdir: str
    config: dict
    model_config: encoder.ModelConfig
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
            c.name: c for c in (squares.SquaresTask, scene_tasks.GridTask, scene_tasks.SparseTask)
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
        """(rows, calibration) of oracle_curve.curve for this sparse run at these visible
        counts (default: oracle_curve.default_visible), on its task's first `examples`
        held-out examples."""
        task = self.task()
        if task.name != "sparse":
            raise ValueError(f"workdir={self.workdir!r}: the oracle curve needs a sparse run")
        predict = _predict_fn(self.model_config)
        return oracle_curve.curve(task, predict, self.params, visible, examples, cfg)

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
        (sampler.SampleConfig: joint in random order by default; argmax; independent)."""
        visible = jnp.asarray(visible_BxP, bool)
        tokens = jnp.where(visible, jnp.asarray(tokens_BxP, jnp.int32), 0)
        batch = Batch(points=jnp.asarray(points_BxPx2, jnp.float32), tokens=tokens, mask=~visible)
        predict = _predict_fn(self.model_config)
        return sampler.sample(predict, self.params, batch, key, cfg or sampler.SampleConfig())


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
    fields = {f.name for f in dataclasses.fields(encoder.ModelConfig)}
    if set(config["model"]) != fields:
        odd = sorted(set(config["model"]) ^ fields)
        raise ValueError(f"workdir={workdir!r}: config.json's model has other fields ({odd})")
    model_cfg = encoder.ModelConfig(**config["model"])
    # the parameter structure, to restore into (shapes only; nothing is computed)
    model = encoder.Encoder(model_cfg)
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
            codebook = codebook_lib.load(codebook_path, (model_cfg.num_tokens, 16))
        except FileError as e:
            raise ValueError(f"workdir={workdir!r}: {e}") from None
    return Run(workdir, config, model_cfg, params, int(step), codebook)
