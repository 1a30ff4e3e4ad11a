"""Checkpoints (orbax): training's save and restore, and load_run's parameters-only restore onto
this process's devices, whatever mesh wrote them.

Orbax writes each checkpoint to a temporary directory and renames it to its step number when
complete, so a save killed half-way is never restored.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


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
        torn = _torn(path) if os.path.isdir(path) else []
        if torn and jax.process_index() == 0:
            print(
                f"warning: removing incomplete checkpoint(s) {', '.join(torn)} in {path} (a save "
                "was interrupted); resuming from the last complete one",
                flush=True,
            )
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True
        )
        self.manager = ocp.CheckpointManager(path, options=options)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.manager.wait_until_finished()
        self.manager.close()

    def save(self, state) -> None:
        self.manager.save(
            int(state.step),
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state.params),
                opt_state=ocp.args.StandardSave(state.opt_state),
            ),
        )

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, state):
        """`state` at the latest checkpoint (laid out as `state` is), or `state` itself."""
        step = self.manager.latest_step()
        if step is None:
            return state
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(state.params),
                opt_state=ocp.args.StandardRestore(state.opt_state),
            ),
        )
        step_array = jax.make_array_from_callback((), state.step.sharding, lambda _: np.int32(step))
        return state.replace(step=step_array, params=restored.params, opt_state=restored.opt_state)


def restore_params(workdir: str, abstract_params, step: int | None = None):
    """(params, step) from the checkpoint at `step` (default: the latest), restored onto this
    process's first device whatever mesh wrote it; read-only."""
    available = steps(workdir)
    if not available:
        raise ValueError(f"workdir={workdir!r} has no checkpoint yet")
    step = available[-1] if step is None else step
    if step not in available:
        raise ValueError(f"workdir={workdir!r} has no checkpoint at step {step}: {available}")
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here), abstract_params
    )
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(
            os.path.join(directory(workdir), str(step)),
            args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)),
        )
    return restored.params, step
