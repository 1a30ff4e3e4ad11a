"""A run's working directory: one writer at a time, and the recorded configuration a resume must
match.

claim() takes the workdir's lock (held until the run ends; the kernel drops it when the
process dies, so a killed run leaves no stale lock), then writes config.json before anything
else, so every later file belongs to the run it records; a run that does not match it is
refused before it computes or writes anything.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from rectbert import config
from rectbert.files import FileError, WriteError, write_atomic
from rectbert.warn import warn, warn_once

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


class WorkdirError(FileError):
    """The workdir cannot take this run (unwritable, or it holds another run)."""


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
    a, b = config.flatten(old), config.flatten(new)
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


def inherit(old: dict, declared: dict) -> tuple[dict, list[str]]:
    """(old with each setting of `declared` it lacks at that default, the paths added, sorted):
    a config.json written before a setting existed reads as a run that kept its default.
    declared: config.defaults() of the configs that read it. Only inside a part old records
    as a record (a dict), under configs of the same name (a scene's options are not
    another family's)."""
    flat, out, added = config.flatten(old), copy.deepcopy(old), []
    for path, value in declared.items():
        if path in flat or path.endswith(".name") or "." not in path:
            continue
        if not _within(path, old, declared):
            continue
        *above, leaf = path.split(".")
        node = out
        for part in above:
            node = node.setdefault(part, {})
        node[leaf] = value
        added.append(path)
    return out, sorted(added)


def _within(path: str, record: dict, names: dict) -> bool:
    """Whether `path` lies in a part `record` holds (its first level there), every level
    above the leaf a record where present, each named as `names` ({"task.scene.name": "rect",
    ...}, flattened) names it; a named config it lacks entirely is another config, not one
    to fill."""
    parts, node = path.split("."), record
    for i, part in enumerate(parts[:-1]):
        node = node.get(part) if isinstance(node, dict) else None
        name = ".".join(parts[: i + 1]) + ".name"
        if node is None and (i == 0 or name in names):
            return False
        if node is not None and not isinstance(node, dict):
            return False
        if node is not None and name in names and node.get("name") != names[name]:
            return False
    return True


def _removed(old: dict, new: dict) -> list[str]:
    """The settings old records that this rectbert's record of the same configs lacks (a
    setting removed or renamed since): inside a part both record, under the same names."""
    a, b = config.flatten(old), config.flatten(new)
    names = {k: v for k, v in b.items() if k.endswith(".name")}
    records = {k.rsplit(".", i)[0] for k in b for i in range(1, k.count(".") + 1)}
    return [
        k
        for k in a
        if k not in b and k not in records and "." in k and k.split(".")[0] in new
        if _within(k, old, names)
    ]


def _missing_record(path: str, old: dict) -> str | None:
    """The shallowest part above `path`'s leaf that `old` does not hold as a record."""
    parts, node = path.split("."), old
    for i, part in enumerate(parts[:-1]):
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return ".".join(parts[: i + 1])
    return None


def _refuse_another(old: dict, new: dict, added: list[str]) -> None:
    """WorkdirError (one line) unless `old` (config.json, its settings `added` read at their
    defaults) records the run `new` describes: a setting removed or renamed since, a new one
    with no default, or other values."""
    removed = _removed(old, new)
    if removed:
        raise WorkdirError(
            f"its config.json records {', '.join(removed)}, which this rectbert does not "
            "have (removed or renamed since it was written): resume it with the rectbert "
            "that wrote it, or use a new workdir"
        )
    changed = differences(old, new)
    lacks = set(config.flatten(new)) - set(config.flatten(old))
    if changed and all(c.split(":")[0] in lacks for c in changed):  # settings added since
        paths = [c.split(":")[0] for c in changed]
        parts = sorted({m for m in (_missing_record(p, old) for p in paths) if m})
        what = (
            f"no record of its {', '.join(parts)}"
            if parts
            else f"no {paths[0]}, which has no default to read it with"
        )
        raise WorkdirError(
            f"its config.json was written by an earlier rectbert (it has {what}): resume it "
            "with that version, or use a new workdir"
        )
    if changed:
        more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
        why = ""
        if any(c.startswith("train.num_steps:") for c in changed):
            why = (
                " (num_steps is the cosine schedule's horizon, and a run's end logs and "
                "evaluates off the cadence: only a --lr_schedule=constant run that ended on "
                "its log_every and eval_every cadence may change it)"
            )
        if any(c.split(":")[0] in added for c in changed):
            why += " (a setting config.json lacks is read at its default)"
        raise WorkdirError(
            f"it holds a run with other settings ({'; '.join(changed[:4])}{more}){why}; "
            "resume with the original ones or use a new workdir"
        )


def begin(
    workdir: str,
    record: dict,
    *,
    declared: dict | None = None,
    main: bool = True,
    files: dict | None = None,
) -> None:
    """Claim `workdir` for the run `record` describes: refuse one recorded with other settings
    (WorkdirError, one line), then (process 0) write config.json and `files` {name: text}.
    declared: the record's configs' declared defaults (config.defaults), which a config.json
    written before one of them existed takes (inherit), saying so once."""
    record = {"format": FORMAT, **record}
    raw, new = read_record(workdir), json.loads(json.dumps(record))
    old, added = (None, []) if raw is None else inherit(raw, declared or {})
    if old is None:
        left = [n for n in ("ckpt", "metrics.jsonl", "codebook.npy") if _exists(workdir, n)]
        if left:
            raise WorkdirError(
                f"it holds a run's {', '.join(left)} but no config.json to say what made them; "
                "restore config.json or use a new workdir"
            )
    if old is not None and _never_started(workdir, old, new):
        _unbind(workdir, old, main)
        old = None
    if old is not None:
        _refuse_another(old, new, added)
        if added and main:
            said_inherited(workdir, old, added)
    if not main:
        return
    try:
        os.makedirs(workdir, exist_ok=True)
        if raw != new:
            write_atomic(os.path.join(workdir, "config.json"), json.dumps(record, indent=1))
        for name, text in (files or {}).items():
            write_atomic(os.path.join(workdir, name), text)
    except (OSError, WriteError) as e:
        raise WorkdirError(f"not a writable directory ({e.strerror})") from None


# what a training run writes before its first step
STARTING = {"config.json", "flags.txt", "lock", "codebook.npy", "ckpt", "metrics.jsonl"}


def _never_started(workdir: str, old: dict, record: dict) -> bool:
    """Whether `old` records a training run that failed to start (no checkpoint, no metrics
    line: killed or failed while compiling, out of memory at its first step, ...) and
    `record` is another training run: nothing is bound to it, the workdir is free again."""
    if "train" not in old or "train" not in record or not differences(old, record):
        return False
    if set(os.listdir(workdir)) - STARTING:  # figures, a study's runs, ...: it did start
        return False
    ckpt = os.path.join(workdir, "ckpt")
    saved = os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))
    metrics = os.path.join(workdir, "metrics.jsonl")
    logged = os.path.exists(metrics) and os.path.getsize(metrics) > 0
    return not saved and not logged


def _unbind(workdir: str, old: dict, main: bool) -> None:
    """Forget the run that never started: its record is replaced, its codebook.npy (fitted for
    its settings, which another run would load as its own) removed."""
    if not main:
        return
    what = f"{old.get('task', {}).get('name', 'a')} run"
    warn(
        f"the {what} recorded in {workdir}/config.json never saved a checkpoint or logged a "
        "step (it failed to start): its record is replaced by this run's"
    )
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(workdir, "codebook.npy"))


def said_inherited(workdir: str, old: dict, added: list[str]) -> None:
    """Warn (once a process) that `workdir`'s config.json predates these settings."""
    flat = config.flatten(old)
    values = ", ".join(f"{k}={flat[k]!r}" for k in added)
    warn_once(
        f"{workdir}/config.json predates the settings {', '.join(added)}: the run is read with "
        f"their defaults ({values})"
    )


@contextlib.contextmanager
def lock(workdir: str, *, main: bool = True):
    """Hold `workdir` for one run: a second run is refused (WorkdirError naming the holder)
    until this one ends, in another process or this one. The lock is the kernel's, on the
    directory itself (so deleting any file cannot release it); `lock` only says who holds it.
    With several processes the run holds it through process 0, and every process learns
    whether it got it."""
    got, holder, fd = True, "process 0 of another job", None
    if main:
        fd, holder = _take(workdir)
        got = fd is not None
    if jax.process_count() > 1:
        got = bool(multihost_utils.broadcast_one_to_all(np.int32(got)))
    if not got:
        if fd is not None:
            os.close(fd)
        raise WorkdirError(
            f"another run is writing to it ({holder}); one run per workdir: wait for it to end "
            "or use another workdir"
        )
    try:
        yield
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _take(workdir: str) -> tuple[int | None, str]:
    """(the locked directory's descriptor, or None and who holds it)."""
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise WorkdirError(f"not a writable directory ({e.strerror})") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None, _holder(workdir)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        write_atomic(
            os.path.join(workdir, "lock"),
            f"pid {os.getpid()} on {socket.gethostname()}, since {when}\n",
        )
    except (OSError, WriteError) as e:
        os.close(fd)
        raise WorkdirError(f"not a writable directory ({e.strerror})") from e
    return fd, ""


def _holder(workdir: str) -> str:
    """What the holder wrote in `lock` (its first line), or that it has not said."""
    try:
        with open(os.path.join(workdir, "lock"), "rb") as f:
            line = f.read(200).decode("utf-8", "replace").splitlines()
    except OSError:
        line = []
    return line[0].strip() if line and line[0].strip() else "a run that has not said who it is"


@contextlib.contextmanager
def claim(
    workdir: str,
    record: dict,
    *,
    declared: dict | None = None,
    main: bool = True,
    files: dict | None = None,
):
    """lock() the workdir, then begin() the run `record` describes in it, for the block."""
    with lock(workdir, main=main):
        begin(workdir, record, declared=declared, main=main, files=files)
        yield


def _exists(workdir: str, name: str) -> bool:
    return os.path.lexists(os.path.join(workdir, name))
