"""Checkpoints (orbax): training's save and restore, and load_run's parameters-only restore onto
this process's devices, whatever mesh wrote them.

Orbax writes each checkpoint to a temporary directory and renames it to its step number when
complete, so a save killed half-way is never restored.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from rectbert.training.quiet import QuietAbandonedReads, QuietFailedSaves
from rectbert.training.signals import Interrupted
from rectbert.warn import warn


def directory(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "ckpt")


def steps(workdir: str) -> list[int]:
    """The steps of the complete checkpoints, oldest first."""
    path = directory(workdir)
    return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def _torn(path: str) -> list[str]:
    return sorted(d for d in os.listdir(path) if ".orbax-checkpoint-tmp" in d)


class Store:
    """A run's checkpoints, as a context manager: leaving it waits for the saves in flight
    and closes the manager, however the run ends."""

    def __init__(self, workdir: str, max_to_keep: int = 2):
        path = directory(workdir)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise CheckpointError(f"{path} is not a directory: move it aside or use a new workdir")
        torn = _torn(path) if os.path.isdir(path) else []
        if torn and jax.process_index() == 0:
            warn(
                f"removing incomplete checkpoint(s) {', '.join(torn)} in {path} (a save was "
                "interrupted); resuming from the last complete one"
            )
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True
        )
        self.path, self.in_flight = path, None
        self.manager = ocp.CheckpointManager(path, options=options)
        self.quiet = QuietFailedSaves()

    def __enter__(self):
        self.quiet.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self.wait()
        except CheckpointError:
            if exc[0] is None:  # else the error already leaving says more
                raise
        finally:
            self.manager.close()
            self.quiet.__exit__()

    def save(self, state, window_rows: list[dict] = ()) -> None:
        """Save `state` with the training scalars logged since the last log line, so a resume
        from here logs exactly what an uninterrupted run logs. Saves run in the background:
        one that failed (a full disk, an unwritable directory) is a CheckpointError here, at
        the next save, or at wait()."""
        try:
            self.manager.save(
                int(state.step),
                args=ocp.args.Composite(
                    params=ocp.args.StandardSave(state.params),
                    opt_state=ocp.args.StandardSave(state.opt_state),
                    window=ocp.args.JsonSave({"rows": list(window_rows)}),
                ),
            )
        except Interrupted:
            raise
        except Exception as e:
            with contextlib.suppress(Exception):  # did the save before this one complete?
                self.manager.wait_until_finished()
                self.in_flight = None
            raise self._failed(e, int(state.step)) from None
        self.in_flight = int(state.step)

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Interrupted:
            raise
        except Exception as e:
            raise self._failed(e, self.in_flight) from None
        self.in_flight = None

    def _failed(self, error: Exception, step: int | None) -> CheckpointError:
        """The one line for a save that failed; its torn directory removed (the space back)."""
        self.quiet.failed = True
        complete = steps(os.path.dirname(self.path))
        if self.in_flight is not None and self.in_flight not in complete:
            step = self.in_flight  # the save in the background failed, not this one
        text = str(error)
        reason = next(
            (r for r in ("No space left on device", "Permission denied", "Read-only") if r in text),
            f"{type(error).__name__}: {text.strip().splitlines()[0][:160] if text.strip() else ''}",
        )
        if jax.process_index() == 0:
            for torn in _torn(self.path) if os.path.isdir(self.path) else []:
                shutil.rmtree(os.path.join(self.path, torn), ignore_errors=True)
        complete = [s for s in complete if s != step]
        kept = f"the one at step {complete[-1]} is kept" if complete else "no checkpoint is kept"
        return CheckpointError(
            f"could not save the checkpoint at step {step} in {self.path} ({reason}); {kept}: "
            "make room (or fix the directory) and re-run the same command to resume"
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, state):
        """(`state` at the latest readable checkpoint, laid out as `state` is; its window rows),
        or (`state`, []) when there is none. A checkpoint that cannot be read is reported and
        moved to damaged/ once an older one has been read (so its step can be saved again);
        CheckpointError (one line) when checkpoints exist and none can be read."""
        args = ocp.args.Composite(
            params=ocp.args.StandardRestore(state.params),
            opt_state=ocp.args.StandardRestore(state.opt_state),
            window=ocp.args.JsonRestore(),
        )

        def read(s):
            restored = self.manager.restore(s, args=args)
            _check_finite(restored.params)
            return restored

        # every step directory there is, listed as load_run lists them (orbax lists only the
        # ones it can parse, and would silently start a run with damaged ones from step 0)
        with QuietAbandonedReads() as quiet:
            restored, step, damaged = _first_readable(
                steps(os.path.dirname(self.path)), read, quiet
            )
        if jax.process_count() > 1:  # every process must resume from the same step
            first = int(
                multihost_utils.broadcast_one_to_all(np.int32(-1 if step is None else step))
            )
            if first != (-1 if step is None else step):
                raise CheckpointError(
                    f"process {jax.process_index()} read step {step}, process 0 step {first}"
                )
        if step is None:
            return state, []
        if damaged and jax.process_index() == 0:
            _move_aside(self.path, damaged)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("rectbert: damaged checkpoints moved")
        self.manager.reload()
        step_array = jax.make_array_from_callback((), state.step.sharding, lambda _: np.int32(step))
        state = state.replace(step=step_array, params=restored.params, opt_state=restored.opt_state)
        return state, restored.window["rows"]


class CheckpointError(ValueError):
    """Checkpoints exist and none of them can be read."""


MISMATCH = ("is not compatible with the stored shape", "tree structure", "do not match")


def _first_readable(steps_, read, quiet: QuietAbandonedReads, others=()):
    """(what `read(step)` returns, step, damaged steps) for the newest step that reads; a
    failed read is reported (process 0), told to `quiet`, and the next older one tried. None
    read: CheckpointError whose advice keeps data — checkpoints that do not match the
    config.json (not damaged) or readable ones among `others` (steps not tried) are never
    to be deleted."""
    damaged, first_error, mismatch = [], None, False
    for step in sorted(steps_, reverse=True):
        try:
            return read(step), step, damaged
        except (MemoryError, Interrupted):  # not the file's fault: a stop is not damage
            raise
        except Exception as e:  # orbax and TensorStore raise many kinds for a damaged file
            if "RESOURCE_EXHAUSTED" in str(e):  # out of device memory: not the file's fault
                raise
            lines = str(e).strip().splitlines() or [""]
            reason = f"{type(e).__name__}: {lines[0][:160]}"
            mismatch = mismatch or any(m in str(e) for m in MISMATCH)
        gc.collect()  # the abandoned reads, now that the traceback holding them is gone
        quiet.failed, first_error = True, first_error or reason
        damaged.append(step)
        if jax.process_index() == 0:
            warn(f"the checkpoint at step {step} is unreadable ({reason})")
    if damaged:
        raise CheckpointError(_advice(sorted(damaged), first_error, mismatch, sorted(others)))
    return None, None, damaged


def _advice(damaged: list[int], error: str, mismatch: bool, others: list[int]) -> str:
    if mismatch:
        return (
            f"its checkpoints (steps {damaged}) do not match its config.json ({error}): they "
            "are not damaged; restore the config.json that wrote them, or use a new workdir"
        )
    if others:
        return (
            f"the checkpoint at step {damaged[-1]} is unreadable ({error}); steps {others} "
            "may be: load one of them (--step), or the latest readable one (no --step)"
        )
    return (
        f"no checkpoint can be read (steps {damaged}; {error}): delete ckpt/ to start over, "
        "or use a new workdir"
    )


@jax.jit
def _all_finite(params):
    leaves = [jax.numpy.all(jax.numpy.isfinite(x)) for x in jax.tree.leaves(params)]
    return jax.numpy.all(jax.numpy.stack(leaves))


def _check_finite(params) -> None:
    """A damaged file can also read as garbage: non-finite parameters are refused like one
    (one compiled check for the whole tree, not one small program per array)."""
    if not bool(_all_finite(params)):
        raise ValueError("it holds non-finite parameters")


def _move_aside(path: str, damaged: list[int]) -> None:
    aside = os.path.join(os.path.dirname(path), "damaged")
    os.makedirs(aside, exist_ok=True)
    for step in damaged:
        target = os.path.join(aside, f"ckpt-{step}-{int(time.time())}")
        os.rename(os.path.join(path, str(step)), target)
        warn(f"moved the unreadable checkpoint at step {step} to {target}")


def restore_params(workdir: str, abstract_params, step: int | None = None):
    """(params, step) from the checkpoint at `step` (default: the latest readable one, older
    ones tried with a warning), restored onto this process's first device whatever mesh
    wrote it; read-only."""
    available = steps(workdir)
    if not available:
        raise ValueError(f"workdir={workdir!r} has no checkpoint yet")
    if step is not None and step not in available:
        raise ValueError(f"workdir={workdir!r} has no checkpoint at step {step}: {available}")
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here), abstract_params
    )

    def read(s):
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
            params = checkpointer.restore(
                os.path.join(directory(workdir), str(s)),
                args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)),
            ).params
        _check_finite(params)
        return params

    try:
        with QuietAbandonedReads() as quiet:
            tried = [step] if step is not None else available
            others = [s for s in available if s not in tried]
            params, step, _ = _first_readable(tried, read, quiet, others)
    except CheckpointError as e:
        raise ValueError(f"workdir={workdir!r}: {e}") from None
    return params, step
