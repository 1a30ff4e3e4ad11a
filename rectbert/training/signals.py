"""Stopping a run cleanly. In training, SIGTERM and SIGINT become a request to stop at the
next step, where the loop saves a checkpoint and raises Interrupted; in the stages after it
(the final evaluation, the oracle, the curve, the samples, the figures: each a few seconds to
minutes of work that no step boundary splits) they raise Interrupted at once, and stage() says
what the stage kept and how to finish it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from jax.experimental import multihost_utils

from rectbert import files

CAUGHT = (signal.SIGTERM, signal.SIGINT)
WAIT = 0.1  # seconds between the main thread's looks at a running call (responsive)


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT stopped the run: training (a checkpoint at the current step was
    saved) or a stage after it (what it kept is in the message). `told`: the message already
    says what was kept."""

    def __init__(self, message: str, signum: int, *, told: bool = False):
        super().__init__(message)
        self.signum, self.told = signum, told


def _raise(signum, frame) -> None:
    raise Interrupted(f"stopped by signal {signum}", signum)


@contextlib.contextmanager
def promptly():
    """For the block, SIGTERM and SIGINT raise Interrupted at once (in the main thread, where
    handlers run; elsewhere nothing changes); the previous handlers come back on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in CAUGHT}
    for s in CAUGHT:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def responsive(fn, *args, **kwargs):
    """fn(*args, **kwargs), its result or its exception, with the main thread free to take a
    signal meanwhile. Python runs a signal handler only between the main thread's bytecodes,
    so a stop during a compiled call (or its compilation) of minutes would wait for it to
    end: here fn runs in a worker thread (XLA lets go of the interpreter while it compiles
    and computes) and the main thread waits in WAIT-second steps, so a handler that raises
    (promptly, StopSignals.now) stops the caller at once; the command then leaves without
    waiting for the abandoned call (experiments/cli.py). Off the main thread: fn called
    directly. jax's thread-local contexts (a default device, a mesh) do not reach fn."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    out: dict = {}
    finished = threading.Event()

    def work():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 -- handed to the caller below
            out["error"] = e
        finally:
            finished.set()

    # waited for by an Event, not Thread.join: a join a signal interrupts marks the thread
    # stopped while it still runs (CPython 3.11)
    worker = threading.Thread(target=work, name="rectbert-call", daemon=True)
    worker.start()
    try:
        while not finished.wait(WAIT):
            pass
    finally:  # left by a signal: what it goes on computing writes nothing (files.check_live)
        worker.abandoned = not finished.is_set()
    if "error" in out:
        raise out["error"]
    return out["value"]


@contextlib.contextmanager
def stage(workdir: str, what: str, *, kept: str = "", finish: str = "re-run the same command"):
    """A stage that writes into `workdir`, stopped by a signal (Interrupted) or a file it
    cannot write (files.FileError): either leaves in one line saying what the stage was
    doing, what is kept (`kept`, and the files it wrote whole before it stopped) and how to
    finish it. Its files are each written whole (files.write_atomic), so none is half there."""
    start = time.time()

    def said() -> str:
        written = files.written_since(workdir, start)
        parts = [p for p in (kept, ", ".join(written)) if p]
        return "kept " + " and ".join(parts) if parts else "nothing of it written"

    try:
        yield
    except Interrupted as e:
        if e.told:
            raise
        message = f"stopped by signal {e.signum} during {what}; {said()}; {finish} to finish it"
        raise Interrupted(message, e.signum, told=True) from None
    except files.FileError as e:
        if getattr(e, "told", False):
            raise
        error = files.FileError(f"{e} during {what}; {said()}; {finish} once it can write")
        error.told = True
        raise error from None


class StopSignals:
    """SIGTERM and SIGINT become a request to stop at the next step, as a context manager
    (handlers restored on leaving). With several processes a process must not stop alone (the
    others would wait for it in a collective save): jax's preemption service, which takes
    SIGTERM, agrees on one step at which all of them stop, and a SIGINT (Ctrl-C) is handed to
    it as a SIGTERM, so both signals behave alike."""

    def __init__(self, multi: bool):
        self.multi, self.received, self.previous, self.immediate = multi, [], {}, False

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
        elif self.immediate:
            raise Interrupted(f"stopped by signal {signum}", signum)

    @contextlib.contextmanager
    def now(self):
        """For the block (a stage after the last step, one process), a signal raises
        Interrupted at once; one received before the block raises on entering it."""
        if self.multi:  # every process must stop at an agreed step: no stop mid-collective
            yield
            return
        if self.received:
            raise Interrupted(f"stopped by signal {self.received[0]}", self.received[0])
        self.immediate = True
        try:
            yield
        finally:
            self.immediate = False

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
