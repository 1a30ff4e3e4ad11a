"""The one training loop: init or resume, jitted steps, held-out eval, checkpoints, metrics.

Batches are made inside the jitted step from (seed, step), so a run is a pure function of its
seed and step: resuming from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from rectbert import config
from rectbert.data import tasks
from rectbert.model import encoder
from rectbert.training import checkpoint, evaluation, metrics
from rectbert.training import workdir as workdir_lib
from rectbert.training.engine import TrainConfig, build, learning_rate_fn, local_copy, make_mesh
from rectbert.training.progress import Profiler, Progress, eta
from rectbert.training.signals import Interrupted, StopSignals


class Window:
    """The training metrics since the last log line, still on the device until read."""

    def __init__(self, rows=()):
        self.rows, self.checked = list(rows), 0

    def add(self, scalars: dict) -> None:
        self.rows.append(scalars)

    def first_non_finite(self, done: int) -> int | None:
        """The first step (1-based) with a non-finite loss or gradient norm, among the rows
        not yet checked, the last of which is step `done`. One transfer for the window; done
        only at log and checkpoint times, never every step."""
        new = jax.device_get(self.rows[self.checked :])
        self.rows[self.checked :] = new
        first = done - len(self.rows) + self.checked + 1
        self.checked = len(self.rows)
        for i, m in enumerate(new):
            if not (np.isfinite(m["train/loss"]) and np.isfinite(m["train/grad_norm"])):
                return first + i
        return None

    def means(self) -> dict:
        return {k: float(np.mean([float(m[k]) for m in self.rows])) for k in self.rows[0]}

    def host_rows(self) -> list[dict]:
        return [{k: float(v) for k, v in m.items()} for m in jax.device_get(self.rows)]


def run_record(task, model_cfg, cfg: TrainConfig, run_info: dict | None = None) -> dict:
    """What config.json records (load_run reads it; a resume must match it)."""
    return {
        "task": task.record(),
        "model": config.record(model_cfg),
        "train": config.record(cfg),
        **(run_info or {}),
    }


def train(
    task: tasks.Task,
    model_cfg: encoder.ModelConfig,
    cfg: TrainConfig,
    workdir: str,
    *,
    run_info: dict | None = None,
    on_eval: Callable | None = None,
    mesh: Mesh | None = None,
    profile_steps: tuple[int, int] | None = None,
):
    """Train (or resume) in `workdir` on `mesh` (default: every device of every process);
    returns (state, last eval metrics).

    `run_info` is recorded in config.json beside the task, model and training configs;
    `on_eval(state, eval_batch, preds, metrics, final)` is called after each evaluation on
    process 0, e.g. to draw figures. With several processes all of them train, evaluate and
    write checkpoints together; only process 0 writes metrics, config.json and prints.
    `profile_steps=(start, stop)`: a jax.profiler trace of the steps after `start` up to
    `stop` (counted as the progress lines count them) in `workdir`/profile (Profiler).
    """
    mesh = make_mesh() if mesh is None else mesh
    if cfg.batch_size % mesh.size:
        allowed = f"a multiple of the {mesh.size} devices (the global batch is split evenly)"
        raise config.ConfigError("TrainConfig", "batch_size", cfg.batch_size, allowed)
    tasks.check_compatible(task, model_cfg, cfg)
    main = jax.process_index() == 0
    record = run_record(task, model_cfg, cfg, run_info)
    with contextlib.ExitStack() as stack:
        stack.enter_context(workdir_lib.claim(workdir, record, main=main))  # one writer
        if getattr(task, "centroids", None) is not None:  # load_run reads the run's own
            workdir_lib.keep_codebook(workdir, task.centroids, main=main)
        state, step_fn = build(task, model_cfg, cfg, mesh)
        store = stack.enter_context(checkpoint.Store(workdir))
        state, pending = store.restore(state)
        start = int(state.step)
        progress = Progress(cfg, start, main)
        progress.say(
            f"{task.name}: {encoder.count_params(state.params):,} parameters, steps "
            f"{start}..{cfg.num_steps}, batch {cfg.batch_size} on {_devices(mesh)}, "
            f"workdir {workdir}" + (f"\nresumed from checkpoint at step {start}" if start else "")
        )
        writer = stack.enter_context(metrics.Writer(workdir, start, enabled=main))
        stop = stack.enter_context(StopSignals(multi=jax.process_count() > 1))
        profiler = stack.enter_context(Profiler(workdir, profile_steps, start, progress))
        evaluator = evaluation.Evaluator(
            task, model_cfg, batch_size=cfg.eval_batch_size, train_batch_size=cfg.batch_size
        )

        def run_eval(state, step, final, replace=False):
            # every process evaluates the whole set on its first device (small, no collective)
            local = state.replace(params=local_copy(state.params, mesh))
            scalars, preds = evaluator(local.params)
            writer.write(step, scalars, replace=replace)  # non-finite: stops every process
            shown = {k: v for k, v in scalars.items() if "/token_accuracy/" not in k}
            progress.say("  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
            if on_eval is not None and main:  # after the write: figures see this evaluation
                on_eval(local, evaluator.held_out, preds, scalars, final)
            return scalars

        state, last_eval, last_step = _loop(
            state, Window(pending), step_fn, cfg, store, writer, stop, progress, run_eval, profiler
        )
        if start >= cfg.num_steps:
            past = f" (past num_steps={cfg.num_steps})" if start > cfg.num_steps else ""
            progress.say(
                f"already trained to step {start}{past}; re-evaluating and redrawing figures"
            )
            last_eval = run_eval(state, start, final=True, replace=True)
    if start < cfg.num_steps:
        progress.say(f"done in {eta(time.time() - progress.t_start)}")
    progress.end_of_process(cfg.num_steps, last_step)
    return state, last_eval


def _devices(mesh: Mesh) -> str:
    devices = f"{mesh.size} {mesh.devices.flat[0].platform} device(s)"
    if jax.process_count() > 1:
        devices += f" on {jax.process_count()} processes"
    return devices


def _loop(
    state, window, step_fn, cfg: TrainConfig, store, writer, stop, progress, run_eval, profiler
):
    """Steps from the state's step to cfg.num_steps; `window`: the training scalars since the
    last log line (a resumed run's come from its checkpoint).

    Returns (state, the last evaluation's metrics, the last step's training scalars)."""
    lr = learning_rate_fn(cfg)
    last_eval, scalars = {}, None
    for step in range(int(state.step), cfg.num_steps):
        signum = stop.requested(step)
        if signum is not None:  # save this step with the part-logged window, stop cleanly
            _check(window, step, store)
            store.save(state, window.host_rows())
            store.wait()
            progress.end_of_process(step, scalars)
            raise Interrupted(
                f"stopped by signal {signum} at step {step}; checkpoint saved, re-run the same "
                "command to resume",
                signum,
            )
        profiler.before(step, state)
        state, scalars = step_fn(state, np.int32(step))
        window.add(scalars)
        done = step + 1
        profiler.after(done, state)
        log_now = done % cfg.log_every == 0 or done == cfg.num_steps
        if log_now or done % cfg.checkpoint_every == 0:
            _check(window, done, store)  # before any write: never log or save a broken state
        if log_now:
            means, sps = window.means(), progress.steps_per_sec(done)
            writer.write(done, {**means, "lr": float(lr(step)), "steps_per_sec": sps})
            progress.line(done, means, sps)
            window = Window()
        if done % cfg.eval_every == 0 or done == cfg.num_steps:
            _check(window, done, store)  # never evaluate (and log) a broken state
            with progress.paused():  # steps/s counts training only
                last_eval = run_eval(state, done, final=done == cfg.num_steps)
        if done % cfg.checkpoint_every == 0 or done == cfg.num_steps:
            store.save(state, window.host_rows())  # checked above
    return state, last_eval, scalars


def _check(window: Window, done: int, store) -> None:
    bad = window.first_non_finite(done)
    if bad is not None:
        store.wait()
        good = store.latest_step()
        kept = f"checkpoint at step {good} kept" if good is not None else "no checkpoint yet"
        raise metrics.NonFiniteError(
            f"non-finite loss or gradient norm at step {bad}; stopped, {kept}"
        )
