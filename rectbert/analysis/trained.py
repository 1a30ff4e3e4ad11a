"""load_run(workdir): a trained run — its configuration, parameters, codebook, task and scene —
and what can be asked of it: predictions, exact tokens, the oracle curve, joint samples.

Reads what training wrote: config.json, codebook.npy (scene tasks), ckpt/.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config as config_lib
from rectbert import scenes
from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.samples import sampler
from rectbert.data import scene_tasks, sparse_task, squares, tasks
from rectbert.data.tasks import Batch
from rectbert.files import FileError
from rectbert.geometry import codebook as codebook_lib
from rectbert.geometry import shapes
from rectbert.model import encoder, positions
from rectbert.training import checkpoint, evaluation
from rectbert.training import workdir as workdir_lib
from rectbert.training.engine import TrainConfig


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
        """Returns the run's task rebuilt from config.json (the same held-out set, points and
        masks), with the run's codebook for grid and sparse runs."""
        task = _task(self.workdir, self.config)
        if self.codebook is not None and task.name != "squares":
            task = task.with_codebook(self.codebook)
        return task

    def oracle_curve(self, visible=None, examples: int = 256, cfg=None, on: str = "held_out"):
        """The model against the Bayes-optimal oracle at each visible count (sparse runs).

        Args:
            visible: a count or counts of visible points (None: oracle_curve.default_visible).
            examples: the task's first held-out examples scored.
            cfg: an oracle.OracleConfig (None: its defaults).
            on: "held_out" (the run's held-out set) or "unseen" (its drawings never trained
                on: the first `examples` of its unseen set, the oracle's prior theirs).

        Returns:
            (rows, calibration) of oracle_curve.curve: a row per count (accuracy, NLL, KL,
            ESS, ... of both), and the reliability bins.
        """
        if isinstance(visible, int | np.integer) and not isinstance(visible, bool):
            visible = (visible,)  # one count
        elif visible is not None and not isinstance(visible, Iterable):
            raise ValueError(
                f"visible must be a visible count or a sequence of counts (None: the default "
                f"counts); got {type(visible).__name__}"
            )
        if cfg is not None and not isinstance(cfg, oracle.OracleConfig):
            raise ValueError(
                f"cfg must be an oracle.OracleConfig or None; got {type(cfg).__name__}"
            )
        task = self.task()
        if task.name != "sparse":
            raise ValueError(f"workdir={self.workdir!r}: the oracle curve needs a sparse run")
        predict = _predict_fn(self.model_config)
        return oracle_curve.curve(task, predict, self.params, visible, examples, cfg, on=on)

    def tokens(self, shapes_BxD, points_BxPx2):
        """The true tokens of shapes at points: exact coverage, quantised with the codebook.

        Args:
            shapes_BxD: rows of run.scene's parameters, inside its support.
            points_BxPx2: P points (x, y) per shape, canvas pixels.

        Returns:
            [B, P] int32 token ids in [0, K).
        """
        if self.codebook is None or self.scene is None:
            raise ValueError(f"workdir={self.workdir!r}: a run without a scene or codebook")
        shapes_BxD, points_BxPx2 = (
            _array(shapes_BxD, "shapes_BxD"),
            _array(points_BxPx2, "points_BxPx2"),
        )
        self.scene.check(shapes_BxD, points_BxPx2, names=("shapes_BxD", "points_BxPx2"))
        values = self.scene.coverage(jnp.asarray(shapes_BxD), jnp.asarray(points_BxPx2))
        return codebook_lib.quantise(values, jnp.asarray(self.codebook))

    def predict(self, points_BxPx2, tokens_BxP, visible_BxP):
        """The model's token probabilities at every position, given the visible tokens.

        Args:
            points_BxPx2: the points (x, y), canvas pixels (grid runs: the 169 lattice points).
            tokens_BxP: token ids in [0, K) where visible; invisible entries are ignored
                (the model sees [mask] there).
            visible_BxP: booleans (or 0/1), [B, P], or [1, P] / [P] for every example.

        Returns:
            [B, P, K] float32 probabilities, visible positions included.
        """
        batch = self._batch(points_BxPx2, tokens_BxP, visible_BxP)
        return jax.nn.softmax(_predict_fn(self.model_config)(self.params, batch), axis=-1)

    def sample(self, points_BxPx2, tokens_BxP, visible_BxP, key, cfg=None):
        """Completions of the hidden tokens, drawn from the model.

        Args:
            points_BxPx2, tokens_BxP, visible_BxP: as predict's.
            key: a jax.random key.
            cfg: a SampleConfig (None: SampleConfig(), joint by the repair sampler: up to
                H + 8 (1 + H) model calls for H hidden, each round one leave-one-out pass
                of B x P rows; SampleConfig(order="random") is ancestral sampling, H calls;
                the joint samplers of sampler.SAMPLERS by its `order`, argmax, independent).

        Returns:
            [B, P] int32: the visible tokens kept, the others drawn.
        """
        batch = self._batch(points_BxPx2, tokens_BxP, visible_BxP)
        shapes.check_key(key)
        if cfg is not None and not isinstance(cfg, sampler.SampleConfig):
            raise ValueError(f"cfg must be a SampleConfig or None; got {type(cfg).__name__}")
        predict = _predict_fn(self.model_config)
        return sampler.sample(predict, self.params, batch, key, cfg or sampler.SampleConfig())

    def _batch(self, points_BxPx2, tokens_BxP, visible_BxP) -> Batch:
        """The model's batch of a user's arrays, checked first (_check_batch). visible_BxP may
        be [1, P] or [P], one mask for every example."""
        points_BxPx2, tokens_BxP, visible_BxP = (
            _array(a, n)
            for a, n in [
                (points_BxPx2, "points_BxPx2"),
                (tokens_BxP, "tokens_BxP"),
                (visible_BxP, "visible_BxP"),
            ]
        )
        tokens_BxP = _check_batch(self.model_config, points_BxPx2, tokens_BxP, visible_BxP)
        b, p = jnp.shape(tokens_BxP)
        visible = jnp.broadcast_to(jnp.asarray(visible_BxP, bool), (b, p))
        tokens = jnp.where(visible, jnp.asarray(tokens_BxP, jnp.int32), 0)
        return Batch(points=jnp.asarray(points_BxPx2, jnp.float32), tokens=tokens, mask=~visible)


_TASKS = {c.name: c for c in (squares.SquaresTask, scene_tasks.GridTask, sparse_task.SparseTask)}


def _task(workdir: str, record: dict):
    """The task config.json records (its scene and mask made anew; a setting the record lacks
    at its default); ValueError (one line, naming the workdir) when it names no known task or
    is damaged."""
    rec = dict(record.get("task") or {})
    name = rec.pop("name", None)
    if name not in _TASKS:
        raise ValueError(f"workdir={workdir!r}: config.json names no known task ({name!r})")
    try:
        rec["mask"] = tasks.MaskSpec(**rec["mask"])
        if "scene" in rec:
            rec["scene"] = scenes.from_record(rec["scene"])
        return _TASKS[name](**rec)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"workdir={workdir!r}: config.json's task is damaged ({e!r})") from None


def _inherited(workdir: str, config: dict, model_cfg) -> dict:
    """config.json's record with the settings added since it was written at their declared
    defaults (workdir.inherit, as a resume reads it; a warning names them); ValueError (one
    line) for a setting it records that this rectbert does not have. A task that cannot be
    rebuilt is left as it is (Run.task() says why)."""
    unknown = _unknown(config)
    if unknown:
        raise ValueError(
            f"workdir={workdir!r}: config.json records {', '.join(unknown)}, which this "
            "rectbert does not have (removed or renamed since it was written): load it with "
            "the rectbert that wrote it"
        )
    declared = {
        **config_lib.defaults(model_cfg, "model."),
        **config_lib.defaults(TrainConfig, "train."),
    }
    try:
        declared.update(config_lib.defaults(_task(workdir, config), "task."))
    except ValueError:
        pass
    config, added = workdir_lib.inherit(config, declared)
    if added:
        workdir_lib.said_inherited(workdir, config, added)
    return config


def _unknown(config: dict) -> list[str]:
    """The settings config.json records under a config this rectbert has (by its name) that
    the config does not declare: a setting removed or renamed since."""
    task = config.get("task") if isinstance(config.get("task"), dict) else {}
    scene = task.get("scene") if isinstance(task.get("scene"), dict) else {}
    family = scenes.SCENES.get(scene.get("name"))
    known = [
        ("train", config.get("train"), TrainConfig),
        ("task", task, _TASKS.get(task.get("name"))),
        ("task.mask", task.get("mask"), tasks.MaskSpec),
        ("task.scene", scene, family),
    ]
    out = []
    for where, rec, cls in known:
        if isinstance(rec, dict) and cls is not None:
            fields = {f.name for f in dataclasses.fields(cls)} | {"name"}
            out += [f"{where}.{k}" for k in rec if k not in fields]
    return out


def _array(x, name: str):
    """x itself when it is an array (or a tracer), else as a numpy array; ValueError naming it
    when it is none (a ragged list, a dict, None)."""
    if isinstance(x, jax.Array | np.ndarray):
        return x
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        a = None
    if a is None or a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be an array of numbers; got {type(x).__name__}")
    return a


def _check_batch(model_cfg, points_BxPx2, tokens_BxP, visible_BxP):
    """ValueError (one line, naming the argument and what is allowed) unless points_BxPx2 is
    [B, P, 2] finite reals (B, P >= 1), tokens_BxP [B, P] integer ids in [0, K) where
    visible, visible_BxP [B, P] (or [1, P]) booleans or 0/1; the values are checked unless
    they are traced (inside a jit). Returns tokens_BxP, hidden entries set to 0 there."""
    shape, k = jnp.shape(points_BxPx2), model_cfg.num_tokens
    if len(shape) != 3 or shape[2] != 2 or min(shape[:2]) < 1:
        raise ValueError(
            f"points_BxPx2 must have shape [B, P, 2] with B, P >= 1 (a batch of (x, y) points); "
            f"got {shape}"
        )
    b, p = shape[:2]
    most = model_cfg.num_positions
    if not positions.POSITIONS[model_cfg.position].continuous and p > most:
        raise ValueError(
            f"points_BxPx2 must have P <= {most} (the run's learned position table); got P = {p}"
        )
    if jnp.shape(tokens_BxP) != (b, p):
        raise ValueError(
            f"tokens_BxP must have shape [B, P] = [{b}, {p}] (as points_BxPx2); "
            f"got {jnp.shape(tokens_BxP)}"
        )
    if jnp.shape(visible_BxP) not in ((b, p), (1, p), (p,)):  # one mask for every example
        raise ValueError(
            f"visible_BxP must have shape [B, P] = [{b}, {p}] (as points_BxPx2), or [1, {p}] or "
            f"[{p}] (one for every example); got {jnp.shape(visible_BxP)}"
        )
    arrays = (points_BxPx2, tokens_BxP, visible_BxP)
    if any(isinstance(a, jax.core.Tracer) for a in arrays):
        return tokens_BxP
    pts, toks, vis = (np.asarray(a) for a in arrays)
    shapes.finite(pts, "points_BxPx2")
    if vis.dtype != bool and not (vis.dtype.kind in "iuf" and np.all((vis == 0) | (vis == 1))):
        raise ValueError(f"visible_BxP must be booleans (or 0 and 1); got dtype {vis.dtype}")
    vis = np.broadcast_to(vis.astype(bool), (b, p))
    if toks.dtype.kind not in "iu":
        raise ValueError(f"tokens_BxP must be integer token ids; got dtype {toks.dtype}")
    bad = vis & ((toks < 0) | (toks >= k))
    if bad.any():
        e, i = np.argwhere(bad)[0]
        raise ValueError(
            f"tokens_BxP must be token ids in [0, {k}) (the run's num_tokens) where visible; "
            f"tokens_BxP[{e}, {i}] = {toks[e, i]}"
        )
    return np.where(vis, toks, 0)


_PREDICT_CACHE: dict = {}


def _predict_fn(model_cfg):
    if model_cfg not in _PREDICT_CACHE:
        _PREDICT_CACHE[model_cfg] = evaluation.make_predict(model_cfg)
    return _PREDICT_CACHE[model_cfg]


def load_run(workdir: str, step: int | None = None) -> Run:
    """A trained run, read from what training wrote: config.json, codebook.npy, ckpt/.

    A config.json written before a setting existed reads it at its default, with a warning
    naming it; one that records a setting this rectbert does not have is refused.

    Args:
        workdir: the run's directory.
        step: a checkpoint's step (None: the latest readable one; an unreadable newer one is
            skipped with a warning).

    Returns:
        A Run: .config, .model_config, .params, .step, .codebook; .predict, .tokens,
        .sample, .task(), .scene, .oracle_curve.

    Raises:
        ValueError: one line naming the workdir and what is wrong with it.
    """
    if not isinstance(workdir, str | os.PathLike) or not os.fspath(workdir):
        raise ValueError(f"workdir must be a trained run's directory (a path); got {workdir!r}")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0
    ):
        raise ValueError(
            f"step must be a checkpoint's step (an integer >= 0) or None; got {step!r}"
        )
    try:
        config = workdir_lib.read_record(workdir)
    except workdir_lib.WorkdirError as e:
        raise ValueError(f"workdir={workdir!r}: {e}") from None
    if config is None or "model" not in config:
        raise ValueError(f"workdir={workdir!r} holds no trained run's config.json")
    model_cfg = _model_config(workdir, config["model"])
    config = _inherited(workdir, config, model_cfg)
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


_TYPES = {"int": (int, "an integer"), "float": (int | float, "a number"), "str": (str, "a string")}


def _model_config(workdir, record) -> encoder.ModelConfig:
    """config.json's model as a ModelConfig, a field the record lacks at its declared default
    (load_run says which); ValueError (one line, naming the workdir and the field) for a field
    this rectbert does not have, one without a default that is missing, a value of the wrong
    type, or one its checks refuse."""
    fields = {f.name: f for f in dataclasses.fields(encoder.ModelConfig)}
    if not isinstance(record, dict):
        raise ValueError(f"workdir={workdir!r}: config.json's model is not a record of fields")
    unknown = sorted(set(record) - set(fields))
    if unknown:
        raise ValueError(
            f"workdir={workdir!r}: config.json's model has {unknown}, which this rectbert does "
            "not have (removed or renamed since it was written): load it with the rectbert "
            "that wrote it"
        )
    required = [n for n, f in fields.items() if not config_lib.has_default(f)]
    lacking = [n for n in required if n not in record]
    if lacking:
        raise ValueError(
            f"workdir={workdir!r}: config.json's model lacks {lacking}, which have no default"
        )
    for name, value in record.items():
        kind, what = _TYPES.get(fields[name].type, (object, "anything"))
        if kind is not object and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ValueError(
                f"workdir={workdir!r}: config.json's model.{name}={value!r} must be {what}"
            )
    try:
        return encoder.ModelConfig(**record)
    except (TypeError, ValueError) as e:
        raise ValueError(f"workdir={workdir!r}: config.json's model is refused ({e})") from None
