"""A long analysis's results kept count by count as they are done (the oracle curve's), so
one stopped part-way resumes where it stopped."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os

import jax
import numpy as np

from rectbert import files

FORMAT = 1  # of the kept file and of what a count's row holds: raised when either changes


@dataclasses.dataclass(frozen=True)
class Partial:
    """The counts of a curve done so far, kept in `path` (files.keep, written after each
    count) with what they were made for (made_for: the checkpoint's step and a hash of its
    parameters, a hash of the examples scored and the codebook, the oracle's config, the
    backend, FORMAT), so a curve stopped part-way resumes where it stopped: the oracle's keys
    are fixed per count, so its rows are those of one run straight through. A file made for
    anything else, or unreadable, is said and set aside (renamed *.set-aside, which replaces
    the one set aside before), never reused. `fields`: the per-token scores each count holds."""

    path: str
    made_for: dict
    fields: tuple[str, ...]

    def load(self, log) -> dict:
        """{visible: (row, scores)} of the counts the file holds for this curve."""
        held, why = files.kept(self.path, self.made_for)
        if held is not None:
            try:
                return dict(self._count(c) for c in held["counts"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                why = f"unreadable ({type(e).__name__}: {e})"
        if why != "absent":
            aside = self.path + ".set-aside"
            os.replace(self.path, aside)
            log(f"  {self.path} is {why}: set aside as {aside}, starting over")
        return {}

    def _count(self, c: dict):
        row, scores = c["row"], {k: np.asarray(a, c["dtypes"][k]) for k, a in c["scores"].items()}
        if set(scores) != set(self.fields):
            raise ValueError(f"scores {sorted(scores)}")
        sizes = {a.shape for a in scores.values()} | {(scores[self.fields[0]].size,)}
        if len(sizes) != 1 or any(a.dtype.kind not in "biuf" for a in scores.values()):
            raise ValueError("scores of different sizes or kinds")
        if not isinstance(row["visible"], int) or isinstance(row["visible"], bool):
            raise ValueError(f"visible {row['visible']!r}")
        return row["visible"], (row, scores)

    def save(self, done: dict) -> None:
        counts = [
            {
                "row": r,
                "scores": {k: np.asarray(a).tolist() for k, a in s.items()},
                "dtypes": {k: np.asarray(a).dtype.str for k, a in s.items()},
            }
            for r, s in done.values()
        ]
        files.keep(self.path, self.made_for, {"counts": counts})

    def finish(self, counts) -> None:
        """After the curve of `counts` is written whole: the file goes where every count it
        keeps is in that curve; it stays, whole, where it keeps others (another
        --curve_visible's), for the curve that needs them."""
        files.check_live()
        try:
            with open(self.path) as f:
                kept = {c["row"]["visible"] for c in json.load(f)["counts"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # gone, or not ours to judge: a later load sets it aside
        if kept <= set(counts):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


def fingerprint(*trees) -> str:
    """A short hash of arrays: each tree's structure, then every leaf's shape, dtype and
    bytes, leaf after leaf."""
    h = hashlib.sha256()
    for tree in trees:
        h.update(str(jax.tree.structure(tree)).encode())
        for leaf in jax.tree.leaves(tree):
            leaf = np.asarray(leaf)
            h.update(f"{leaf.shape}{leaf.dtype.str}".encode())
            h.update(leaf.tobytes())
    return h.hexdigest()[:16]
