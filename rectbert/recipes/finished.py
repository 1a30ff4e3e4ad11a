"""A trained run to analyse, for the commands that write into one (oracle_curve, sample): its
settings (--workdir, --step) and its loading, refused in one line before any compute."""

from __future__ import annotations

import dataclasses
import os

from rectbert import config
from rectbert.analysis import trained
from rectbert.config import setting
from rectbert.data import masking
from rectbert.warn import warn


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A trained run to analyse, at one of its checkpoints (while no other command writes in
    its workdir: the analysis takes the workdir's lock)."""

    workdir: str | None = setting(None, "A trained run's directory (required).", kind="str")
    step: int | None = setting(None, "Checkpoint step to load (default: the latest).", kind="int")

    def load(self, kinds: tuple[str, ...], goes_in_it: str):
        """(run, task) for a command that writes `goes_in_it` into the run's directory, or a
        ConfigError (workdir or step) in one line before any compute: the directory exists
        and is writable, the run loads, is one of `kinds` and has its codebook."""
        kind = " or ".join(kinds)
        if not self.workdir:
            raise config.error(self, "workdir", f"a {kind} run's directory")
        if not os.path.isdir(self.workdir):
            raise config.error(self, "workdir", "an existing run directory")
        figures = os.path.join(self.workdir, "figures")
        if not all(os.access(d, os.W_OK) for d in (self.workdir, figures) if os.path.isdir(d)):
            raise config.error(self, "workdir", f"a directory this user can write ({goes_in_it})")
        try:
            run = trained.load_run(self.workdir, self.step)
            task = run.task()
        except (ValueError, TypeError) as e:
            field = "step" if self.step is not None and "step" in str(e) else "workdir"
            raise config.error(self, field, f"a loadable {kind} run ({e})") from None
        if task.name not in kinds:
            raise config.error(self, "workdir", f"a {kind} run (this one is {task.name})")
        if run.codebook is None:
            raise config.error(self, "workdir", f"a {task.name} run with its codebook.npy")
        return run, task


def note_transfer(task, what: str) -> None:
    """A run trained at a fixed count, analysed at others: what that measures."""
    if task.mask.schedule not in masking.ANY_COUNT:
        warn(
            f"this run trained with --mask_schedule={task.mask.schedule} (count "
            f"{task.mask.count}); {what} at counts it never saw measure how it transfers"
        )
