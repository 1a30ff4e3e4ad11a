"""Stopping a run cleanly: SIGTERM and SIGINT become a request to stop at the next step, where
the loop saves a checkpoint and raises Interrupted.
"""

from __future__ import annotations

import os
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
    (handlers restored on leaving). With several processes a process must not stop alone (the
    others would wait for it in a collective save): jax's preemption service, which takes
    SIGTERM, agrees on one step at which all of them stop, and a SIGINT (Ctrl-C) is handed to
    it as a SIGTERM, so both signals behave alike."""

    def __init__(self, multi: bool):
        self.multi, self.received, self.previous = multi, [], {}

    def __enter__(self):
        caught = (signal.SIGINT,) if self.multi else (signal.SIGTERM, signal.SIGINT)
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            self.previous = {s: signal.getsignal(s) for s in caught}
            for s in caught:
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received.append(signum)
        if self.multi:  # to the preemption service's handler (jax's, not Python's)
            os.kill(os.getpid(), signal.SIGTERM)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def requested(self, step: int) -> int | None:
        """The signal that asks to stop before `step`, or None. With several processes only at
        the step the preemption service agreed on: this process's signal if it had one, else
        SIGTERM (another process's)."""
        if self.multi:
            if not multihost_utils.reached_preemption_sync_point(step):
                return None
            return self.received[0] if self.received else signal.SIGTERM
        return self.received[0] if self.received else None
