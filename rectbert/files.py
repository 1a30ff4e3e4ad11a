"""Files written whole or not at all, and the one-line error for a file that cannot be used.

Every file a run rewrites (config.json, flags.txt, codebook.npy, metrics.jsonl on resume,
figures, the analyses' JSON) goes through write_atomic: a reader, or a run killed half-way,
never sees half a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading

import numpy as np


class FileError(ValueError):
    """A file (or directory) a run needs cannot be used: unwritable, damaged, or another run's."""


class WriteError(FileError):
    """A file could not be written (unwritable, the disk full): one line naming it; nothing of
    the attempt is left behind."""

    def __init__(self, path: str, error: OSError):
        super().__init__(f"could not write {path} ({error.strerror or error})")
        self.path, self.strerror = path, error.strerror or str(error)


class Abandoned(RuntimeError):
    """Raised in a call its caller left (a stop: signals.responsive) where it would write."""


def check_live() -> None:
    """Abandoned in a worker thread whose caller has left it (signals.responsive marks it):
    what a stopped stage goes on computing writes nothing after its lock is let go."""
    if getattr(threading.current_thread(), "abandoned", False):
        raise Abandoned("a stopped call writes nothing")


def write_atomic(path: str, data: str | bytes) -> None:
    """Replace `path` with `data` whole or not at all (a temporary file, fsync, rename);
    WriteError when it cannot, with the temporary file removed and `path` as it was. Nothing
    from an abandoned call (check_live)."""
    check_live()
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # an OSError, or a signal's Interrupted half-way: no trace left
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise WriteError(path, e) from None
        raise


def written_since(workdir: str, start: float) -> list[str]:
    """The files in `workdir` and its figures/ modified since `start` (time.time()), by their
    paths relative to it (what a stage that stopped had written whole)."""
    out = []
    for sub in ("", "figures"):
        folder = os.path.join(workdir, sub)
        with contextlib.suppress(OSError):
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if entry.is_file() and ".tmp" not in entry.name and entry.name != "lock":
                    if entry.stat().st_mtime >= start - 1e-3:
                        out.append(os.path.join(sub, entry.name))
    return out


def save_array(path: str, array) -> None:
    """An .npy file, written atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    write_atomic(path, buffer.getvalue())


def keep(path: str, made_for: dict, payload: dict) -> None:
    """A JSON file of `payload` that says what it was made for (read back by kept), written
    atomically: a result a later run reuses where it was made for the same thing."""
    if "made_for" in payload:
        raise ValueError("a kept payload has no key 'made_for': it says what the file was made for")
    write_atomic(path, json.dumps({"made_for": made_for, **payload}) + "\n")


def kept(path: str, made_for: dict) -> tuple[dict | None, str]:
    """(the payload keep() wrote at `path`, "") where it was made for `made_for` (compared as
    JSON), else (None, why not: "absent", "made for another ...", "unreadable ...")."""
    if not os.path.exists(path):
        return None, "absent"
    try:
        with open(path) as f:
            held = json.load(f)
        want = json.loads(json.dumps(made_for))
        if held["made_for"] != want:
            keys = set(want) | set(held["made_for"])
            differ = sorted(k for k in keys if held["made_for"].get(k) != want.get(k))
            return None, f"made for another {', '.join(differ)}"
        return held, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # torn, not JSON
        return None, f"unreadable ({type(e).__name__})"
