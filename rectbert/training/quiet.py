"""What orbax and TensorStore report from their threads while rectbert reads or saves
checkpoints, scoped to those reads and saves: tracebacks of a damaged checkpoint's abandoned
reads, and the log lines of a failed background save. The failure itself reaches the
caller, which reports it in one line (checkpoint.py); every other report is passed on."""

from __future__ import annotations

import gc
import logging
import sys
import time


class QuietAbandonedReads:
    """While checkpoints are read and a little after: a failed orbax read abandons its other
    array reads, and as they are collected, or TensorStore finishes them on a closed event
    loop, each would print a traceback (through sys.unraisablehook or sys.excepthook), up to
    about a second after the read failed. Those two kinds are dropped (every other one is passed
    on): the failure itself is reported in one line. On leaving, when any was dropped, it
    waits until none has come for QUIET seconds (at most WAIT), then gives the process its
    own hooks back. A context manager around the reads of a restore (a resume's, load_run's):
    only a restore that met a damaged checkpoint waits."""

    QUIET, WAIT = 1.0, 5.0

    def __enter__(self):
        self.previous = sys.unraisablehook, sys.excepthook
        self.dropped, self.last, self.failed = 0, time.monotonic(), False
        sys.unraisablehook, sys.excepthook = self._unraisable, self._except
        return self

    def _drop(self) -> None:
        self.dropped, self.last = self.dropped + 1, time.monotonic()

    def _unraisable(self, unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if (code is not None and "orbax" in code.co_filename) or _closed_loop(unraisable.exc_value):
            return self._drop()
        self.previous[0](unraisable)

    def _except(self, kind, value, traceback):  # TensorStore's callbacks report through this
        if _closed_loop(value):
            return self._drop()
        self.previous[1](kind, value, traceback)

    def __exit__(self, *exc):
        gc.collect()
        now = time.monotonic()
        deadline, self.last = now + self.WAIT, max(self.last, now) if self.failed else self.last
        while (self.dropped or self.failed) and time.monotonic() - self.last < self.QUIET:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            gc.collect()
        sys.unraisablehook, sys.excepthook = self.previous
        return False


class QuietFailedSaves(QuietAbandonedReads):
    """While a Store is open: a background save that fails (a full disk) reports from each of
    orbax's threads — an ERROR log line with its traceback, asyncio's unretrieved task, and
    TensorStore's closed-loop tracebacks — before the failure reaches the loop, which reports
    it in one line (Store._failed). Those reports are dropped; every other one is passed on."""

    def __enter__(self):
        super().__enter__()
        self.filter = _OrbaxSaveReports(self)
        for name in ("absl", "asyncio"):
            logging.getLogger(name).addFilter(self.filter)
        return self

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for name in ("absl", "asyncio"):
            logging.getLogger(name).removeFilter(self.filter)
        return False


class _OrbaxSaveReports(logging.Filter):
    def __init__(self, quiet: QuietFailedSaves):
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = (record.name == "absl" and "orbax" in record.pathname) or (
            record.name == "asyncio" and ("orbax" in message or "RESOURCE_EXHAUSTED" in message)
        )
        if ours and record.levelno >= logging.ERROR:
            self.quiet.failed = True
            self.quiet._drop()
            return False
        return True


def _closed_loop(error) -> bool:
    return isinstance(error, RuntimeError) and "loop is closed" in str(error)
