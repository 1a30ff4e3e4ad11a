"""Files written whole or not at all, and the one-line error for a file that cannot be used.

Every file a run rewrites (config.json, flags.txt, codebook.npy, metrics.jsonl on resume,
figures, the analyses' JSON) goes through write_atomic: a reader, or a run killed half-way,
never sees half a file.
"""

from __future__ import annotations

import io
import os

import numpy as np


class FileError(ValueError):
    """A file (or directory) a run needs cannot be used: unwritable, damaged, or another run's."""


def write_atomic(path: str, data: str | bytes) -> None:
    """Replace `path` with `data` whole or not at all (a temporary file, fsync, rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_array(path: str, array) -> None:
    """An .npy file, written atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    write_atomic(path, buffer.getvalue())
