"""Stopping a run cleanly: SIGTERM and SIGINT become a request to stop at the next step, where
the loop saves a checkpoint and raises Interrupted.
"""

from __future__ import annotations

import signal
import threading

from jax.experimental import multihost_utils


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT stopped training; a checkpoint at the current step was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """SIGTERM and SIGINT become a request to stop at the next step, as a context manager
    (handlers restored on leaving). With several processes every signal goes to jax's
    preemption service, which agrees on one step at which all of them stop: a process
    stopping alone would leave the others waiting in a collective save."""

    def __init__(self, multi: bool):
        self.multi, self.received, self.previous = multi, [], {}

    def __enter__(self):
        caught = (signal.SIGINT,) if self.multi else (signal.SIGTERM, signal.SIGINT)
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            self.previous = {s: signal.getsignal(s) for s in caught}
            for s in caught:
                signal.signal(s, lambda signum, frame: self.received.append(signum))
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def requested(self, step: int) -> int | None:
        """The signal that asks to stop before `step`, or None."""
        if self.multi and multihost_utils.reached_preemption_sync_point(step):
            self.received.append(signal.SIGTERM)
        return self.received[0] if self.received else None
