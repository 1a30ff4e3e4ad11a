"""load_run(workdir): a trained run's parameters, codebook and a predict function.

Reads what train.train wrote: config.json, codebook.npy (rectangle tasks), ckpt/.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rectbert import model as model_lib
from rectbert import train as train_lib
from rectbert.tasks import Batch


@dataclasses.dataclass(frozen=True)
class Run:
    workdir: str
    config: dict
    model_config: model_lib.ModelConfig
    params: dict
    step: int
    codebook: np.ndarray | None  # [K, 16] centroids for rectangle tasks

    def predict(self, points_BxPx2, tokens_BxP, visible_BxP):
        """Token probabilities [B, P, K] at every position, given the visible tokens.

        Invisible entries of tokens_BxP are ignored (the model sees [mask] there).
        """
        visible = jnp.asarray(visible_BxP, bool)
        tokens = jnp.where(visible, jnp.asarray(tokens_BxP, jnp.int32), 0)
        batch = Batch(points=jnp.asarray(points_BxPx2, jnp.float32), tokens=tokens, mask=~visible)
        return jax.nn.softmax(_predict_fn(self.model_config)(self.params, batch), axis=-1)


_PREDICT_CACHE: dict = {}


def _predict_fn(model_cfg):
    if model_cfg not in _PREDICT_CACHE:
        _PREDICT_CACHE[model_cfg] = train_lib.make_predict(model_cfg)
    return _PREDICT_CACHE[model_cfg]


def load_run(workdir: str, step: int | None = None) -> Run:
    """The run in `workdir` at its latest checkpoint (or at `step`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"workdir={workdir!r} holds no config.json: not a rectbert run")
    with open(path) as f:
        config = json.load(f)
    model_cfg = model_lib.ModelConfig(**config["model"])
    # the parameter structure, to restore into (shapes only; nothing is computed)
    model = model_lib.Encoder(model_cfg)
    length = max(model_cfg.num_positions, 1)
    abstract = jax.eval_shape(
        lambda: model.init(
            jax.random.key(0), jnp.zeros((1, length), jnp.int32), jnp.zeros((1, length, 2))
        )["params"]
    )
    with ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "ckpt"),
        options=ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0),
    ) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"workdir={workdir!r} has no checkpoint yet")
        restored = mngr.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))
        )
    codebook_path = os.path.join(workdir, "codebook.npy")
    codebook = np.load(codebook_path) if os.path.exists(codebook_path) else None
    return Run(workdir, config, model_cfg, restored.params, int(step), codebook)
