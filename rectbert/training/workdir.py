"""A run's working directory: one writer at a time, the recorded configuration a resume must
match, atomic writes, and the codebook, bound to that record.

claim() takes the workdir's lock (held until the run ends; the kernel drops it when the
process dies, so a killed run leaves no stale lock), then writes config.json before anything
else, so every later file belongs to the run it records; a run that does not match it is
refused before it computes or writes anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

# config.json's layout; a workdir written with another (an earlier rectbert's) is refused, not
# guessed at: a run it records may need settings this version no longer has or draws differently
FORMAT = 3  # 3: checkpoints carry the part-logged window

# what a resumed run may change: how often it logs and saves, and where it runs; also where it
# stops, but only with a constant learning rate (see _safe)
SAFE_TO_CHANGE = (
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.eval_batch_size",
    "train.param_sharding",
    "task.eval_examples",
)
ADDED = {  # settings added after runs were made: a record without one had this value
    "train.optimizer": "adamw",
    "task.extra_targets": 0,
}


class WorkdirError(ValueError):
    """The workdir cannot take this run (unwritable, or it holds another run)."""


def write_atomic(path: str, data: str | bytes) -> None:
    """Replace `path` with `data` whole or not at all (a temporary file, fsync, rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _safe(key: str, old_flat: dict) -> bool:
    """Whether a resume may change `key`. The step count is the cosine schedule's horizon: a
    cosine run resumed with more steps would not be the run started with them (the learning
    rate would jump), so only a constant-schedule run may move its end."""
    if key == "train.num_steps":
        steps = old_flat.get("train.num_steps", 0)
        on_cadence = all(
            steps % max(old_flat.get(f"train.{k}", 1), 1) == 0 for k in ("log_every", "eval_every")
        )
        return old_flat.get("train.schedule") == "constant" and on_cadence
    return key in SAFE_TO_CHANGE


def differences(old: dict, new: dict) -> list[str]:
    """'path: old -> new' for every setting that differs, beside the safe ones; names (the
    task's, the scene's) first: they say the most."""
    a, b = {**ADDED, **_flatten(old)}, {**ADDED, **_flatten(new)}
    missing = "(absent)"
    keys = sorted(set(a) | set(b), key=lambda k: (not k.endswith(".name"), k))
    return [
        f"{k}: {a.get(k, missing)} -> {b.get(k, missing)}"
        for k in keys
        if not _safe(k, a) and a.get(k, missing) != b.get(k, missing)
    ]


def read_record(workdir: str) -> dict | None:
    """The workdir's config.json, or None when it has none; WorkdirError (one line) when it is
    unreadable or was written by a rectbert with another FORMAT."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise WorkdirError(f"its config.json is unreadable ({e}); use a new workdir") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format", "none") if isinstance(record, dict) else "none"
        raise WorkdirError(
            f"its config.json has format {found}, this rectbert reads and writes {FORMAT} (an "
            "earlier version's run: use that version, or a new workdir)"
        )
    return record


def begin(workdir: str, record: dict, *, main: bool = True, files: dict | None = None) -> None:
    """Claim `workdir` for the run `record` describes: refuse one recorded with other settings
    (WorkdirError, one line), then (process 0) write config.json and `files` {name: text}."""
    record = {"format": FORMAT, **record}
    old = read_record(workdir)
    if old is None:
        left = [n for n in ("ckpt", "metrics.jsonl", "codebook.npy") if _exists(workdir, n)]
        if left:
            raise WorkdirError(
                f"it holds a run's {', '.join(left)} but no config.json to say what made them; "
                "restore config.json or use a new workdir"
            )
    if old is not None:
        changed = differences(old, json.loads(json.dumps(record)))
        if changed:
            more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
            why = ""
            if any(c.startswith("train.num_steps:") for c in changed):
                why = (
                    " (num_steps is the cosine schedule's horizon, and a run's end logs and "
                    "evaluates off the cadence: only a --lr_schedule=constant run that ended on "
                    "its log_every and eval_every cadence may change it)"
                )
            raise WorkdirError(
                f"it holds a run with other settings ({'; '.join(changed[:4])}{more}){why}; "
                "resume with the original ones or use a new workdir"
            )
    if not main:
        return
    try:
        os.makedirs(workdir, exist_ok=True)
        if old != json.loads(json.dumps(record)):
            write_atomic(os.path.join(workdir, "config.json"), json.dumps(record, indent=1))
        for name, text in (files or {}).items():
            write_atomic(os.path.join(workdir, name), text)
    except OSError as e:
        raise WorkdirError(f"not a writable directory ({e.strerror})") from e


_HELD: dict[str, list] = {}  # this process's locks: real path -> [directory fd, depth]


@contextlib.contextmanager
def lock(workdir: str, *, main: bool = True):
    """Hold `workdir` for one run: a second run in another process is refused (WorkdirError
    naming the holder) until this one ends. The lock is the kernel's, on the directory itself
    (so deleting any file cannot release it); `lock` only says who holds it. Re-entrant within
    a process (an experiment holds it around train(), which takes it too; threads of one
    process are not told apart). With several processes the run holds it through process 0,
    and every process learns whether it got it."""
    path = os.path.realpath(workdir)
    got, holder = True, "process 0 of another job"
    if main and path in _HELD:
        _HELD[path][1] += 1
    elif main:
        try:
            os.makedirs(workdir, exist_ok=True)
            fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise WorkdirError(f"not a writable directory ({e.strerror})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = _holder(workdir)
            got = False
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                write_atomic(
                    os.path.join(workdir, "lock"),
                    f"pid {os.getpid()} on {socket.gethostname()}, since {when}\n",
                )
            except OSError as e:
                os.close(fd)
                raise WorkdirError(f"not a writable directory ({e.strerror})") from e
            _HELD[path] = [fd, 1]
    if jax.process_count() > 1:
        got = bool(multihost_utils.broadcast_one_to_all(np.int32(got)))
    if not got:
        raise WorkdirError(
            f"another run is writing to it ({holder}); one run per workdir: wait for it to end "
            "or use another workdir"
        )
    try:
        yield
    finally:
        if main:
            held = _HELD[path]
            held[1] -= 1
            if not held[1]:
                del _HELD[path]
                fcntl.flock(held[0], fcntl.LOCK_UN)
                os.close(held[0])


def _holder(workdir: str) -> str:
    """What the holder wrote in `lock` (its first line), or that it has not said."""
    try:
        with open(os.path.join(workdir, "lock"), "rb") as f:
            line = f.read(200).decode("utf-8", "replace").splitlines()
    except OSError:
        line = []
    return line[0].strip() if line and line[0].strip() else "a run that has not said who it is"


@contextlib.contextmanager
def claim(workdir: str, record: dict, *, main: bool = True, files: dict | None = None):
    """lock() the workdir, then begin() the run `record` describes in it, for the block."""
    with lock(workdir, main=main):
        begin(workdir, record, main=main, files=files)
        yield


def _exists(workdir: str, name: str) -> bool:
    return os.path.lexists(os.path.join(workdir, name))


def read_codebook(path: str, shape: tuple[int, int]) -> np.ndarray:
    """codebook.npy, checked: readable, of `shape`, finite (WorkdirError, one line)."""
    try:
        centroids = np.load(path)
    except (OSError, ValueError) as e:
        raise WorkdirError(f"its codebook.npy is unreadable ({e}); delete it to refit") from e
    if centroids.shape != shape:
        raise WorkdirError(f"its codebook.npy has shape {centroids.shape}, not {shape}")
    if not np.all(np.isfinite(centroids)):
        raise WorkdirError("its codebook.npy holds non-finite values; delete it to refit")
    return centroids


def codebook(workdir: str, task, *, main: bool = True) -> np.ndarray:
    """The run's codebook: codebook.npy when the workdir has one (begin() has checked it was
    made for this run's settings), else fitted by the task and written (process 0)."""
    path = os.path.join(workdir, "codebook.npy")
    want = (task.num_clusters, 16)
    if os.path.lexists(path):
        return read_codebook(path, want)
    centroids = np.asarray(task.fit_codebook()[0], np.float32)
    if main:  # the other processes fit the same one (same key)
        _save_codebook(path, centroids)
    return centroids


def _save_codebook(path: str, centroids) -> None:
    buffer = io.BytesIO()
    np.save(buffer, centroids)
    write_atomic(path, buffer.getvalue())


def keep_codebook(workdir: str, centroids, *, main: bool = True) -> None:
    """Write the task's centroids to codebook.npy if the run has none (a run trained on a
    codebook made elsewhere, e.g. a study's row, stays loadable on its own); one there must
    be these centroids."""
    path = os.path.join(workdir, "codebook.npy")
    centroids = np.asarray(centroids, np.float32)
    if os.path.lexists(path):
        if not np.array_equal(read_codebook(path, centroids.shape), centroids):
            raise WorkdirError("its codebook.npy is not the codebook this run is given")
    elif main:
        _save_codebook(path, centroids)
