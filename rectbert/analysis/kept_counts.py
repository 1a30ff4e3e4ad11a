"""A long analysis's results kept count by count as they are done (the oracle curve's), so
one stopped part-way resumes where it stopped."""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import numpy as np

from rectbert import files


@dataclasses.dataclass(frozen=True)
class Partial:
    """The counts of a curve done so far, kept in `path` (files.keep, written after each
    count) with what they were made for (the run's step and parameters, the examples, which
    set, the task's seed, the oracle's config), so a curve stopped part-way resumes where it
    stopped: the oracle's keys are fixed per count, so its rows are those of one run straight
    through. A file made for anything else, or unreadable, is said and set aside."""

    path: str
    made_for: dict

    def load(self, log) -> dict:
        """{visible: (row, scores)} of the counts the file holds for this curve."""
        held, why = files.kept(self.path, self.made_for)
        if held is None:
            if why != "absent":
                log(f"  {self.path} is {why}: starting over")
            return {}
        try:
            return {int(c["row"]["visible"]): (c["row"], _arrays(c)) for c in held["counts"]}
        except (KeyError, TypeError, ValueError) as e:
            log(f"  {self.path} is unreadable ({type(e).__name__}): starting over")
            return {}

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


def _arrays(count: dict) -> dict:
    """A kept count's scores as the arrays they were."""
    return {k: np.asarray(a, count["dtypes"][k]) for k, a in count["scores"].items()}


def fingerprint(params) -> str:
    """A short hash of a model's parameters (their bytes, leaf after leaf)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]
