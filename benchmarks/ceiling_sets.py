"""What the time-to-the-ceiling benchmark measures against: validation sets from their own key,
and the oracle's predictions on them (and the codebook), cached on disk by what they depend
on (a minute per thousand examples on a CPU, and they never change)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.analysis import oracle
from rectbert.data import keys, masking
from rectbert.data.tasks import fixed


def _cached(cache_dir: str, name: str, what: dict, make):
    """make() (a dict of arrays), stored under cache_dir by a hash of `what`."""
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"{name}-{digest}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return dict(f)
    out = make()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)  # two runs at once: either's whole file
    return out


def codebook(task, cache_dir: str):
    fields = ("seed", "num_clusters", "codebook_examples")
    what = {"scene": task.scene.record(), **{f: getattr(task, f) for f in fields}}
    return _cached(cache_dir, "codebook", what, lambda: {"c": np.asarray(task.fit_codebook()[0])})[
        "c"
    ]


def validation_sets(task, examples: int, visible: tuple[int, ...]) -> dict:
    """name -> Batch: examples from the validation key; any-count tasks: one per count."""
    k = keys.key(task.seed, "validation")
    shapes = task.scene.sample(jax.random.fold_in(k, 0), examples)
    base = task.examples(jax.random.fold_in(k, 1), shapes, fixed(task.mask))
    if task.mask.schedule == "fixed":
        return {"validation": base}
    n, length = base.mask.shape
    k_mask = jax.random.fold_in(k, 2)  # one key for all counts: nested visible sets
    return {
        f"visible {v}": dataclasses.replace(
            base,
            mask=~masking.mask_exact(k_mask, jnp.full((n,), v), length),  # v visible
        )
        for v in visible
    }


CACHE_VERSION = 1  # bump when rectbert.oracle changes its answers


def oracle_predictions(task, name: str, batch, cache_dir: str) -> np.ndarray:
    """[N, P] the oracle's argmax tokens on `batch` (cached)."""
    cfg = oracle.OracleConfig()
    content = hashlib.sha256()
    for a in (batch.points, batch.tokens, batch.mask, task.codebook):
        content.update(np.asarray(a).tobytes())
    what = {  # what the oracle sees (not the training settings): configs share the cache
        "scene": task.scene.record(),
        "seed": task.seed,
        "batch": content.hexdigest(),
        "oracle": config.record(cfg),
        "version": [CACHE_VERSION, jax.__version__, jax.default_backend()],
    }

    def make():
        t = time.perf_counter()
        key = jax.random.fold_in(keys.key(task.seed, "oracle"), 7)
        _, pred, _ = oracle.evaluate(key, batch, task.codebook, task.scene, cfg)
        print(f"  oracle on {name}: {time.perf_counter() - t:.0f} s (cached now)", flush=True)
        return {"pred": pred}

    return _cached(cache_dir, "oracle", what, make)["pred"]


def right(pred, batch) -> np.ndarray:
    """Per hidden token: 1 where `pred` is right."""
    mask = np.asarray(batch.mask)
    return (np.asarray(pred) == np.asarray(batch.tokens))[mask].astype(np.float64)
