"""The one training loop: init or resume, jitted steps, held-out eval, checkpoints, metrics.

Batches are made inside the jitted step from (seed, step), so a run is a pure function of its
seed and step: resuming from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from rectbert import config
from rectbert.data import tasks
from rectbert.model import encoder
from rectbert.training import checkpoint, evaluation, metrics, signals
from rectbert.training import workdir as workdir_lib
from rectbert.training.engine import (
    RunConfig,
    TrainConfig,
    build,
    learning_rate_fn,
    local_copy,
    make_mesh,
)
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


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Where the loop reports: metrics.jsonl, progress lines, the stop signals it honours and
    the checkpoint store."""

    writer: metrics.Writer
    progress: Progress
    stop: StopSignals
    store: checkpoint.Store


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What on_eval is given after each held-out evaluation (on process 0)."""

    task: tasks.Task  # the run's task, prepared (a scene task with its codebook)
    params: dict  # on this process's first device
    step: int
    batch: tasks.Batch  # the held-out set
    preds: jax.Array  # [N, L] the model's argmax tokens on it
    metrics: dict
    final: bool  # the run's last evaluation (or the re-evaluation of a finished run)


def train(
    run: RunConfig,
    workdir: str,
    *,
    files: dict | None = None,
    on_eval: Callable[[Evaluation], None] | None = None,
    mesh: Mesh | None = None,
    profile_steps: tuple[int, int] | None = None,
):
    """Train (or resume) `run` in `workdir` on `mesh` (default: every device of every
    process); returns (state, last eval metrics).

    The workdir is claimed once, first: its lock, then config.json (`run.record()`) and
    `files` ({name: text}, e.g. flags.txt) written, a different record refused; then the task
    is prepared in it (its codebook). `on_eval(Evaluation)` is called after each evaluation
    on process 0, e.g. to draw figures. With several processes all of them train, evaluate and
    write checkpoints together; only process 0 writes metrics, config.json and prints.
    `profile_steps=(start, stop)`: a jax.profiler trace of the steps after `start` up to
    `stop` (counted as the progress lines count them) in `workdir`/profile (Profiler).
    """
    mesh, cfg = make_mesh() if mesh is None else mesh, run.train
    if cfg.batch_size % mesh.size:
        allowed = f"a multiple of the {mesh.size} devices (the global batch is split evenly)"
        raise config.error(cfg, "batch_size", allowed)
    main = jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        claim = workdir_lib.claim(
            workdir, run.record(), declared=config.defaults(run), main=main, files=files
        )
        stack.enter_context(claim)
        if jax.process_count() == 1:  # its codebook's fit: a stop seen mid-call
            task = signals.responsive(run.task.prepare, workdir, main=main)
        else:  # every process fits it alike: none stops alone
            task = run.task.prepare(workdir, main=main)
        state, step_fn = build(task, run.model, cfg, mesh)
        store = stack.enter_context(checkpoint.Store(workdir))
        state, pending = store.restore(state)
        start = int(state.step)
        progress = Progress(cfg, start, main)
        progress.say(_banner(task, state, cfg, mesh, workdir, start))
        writer = stack.enter_context(metrics.Writer(workdir, start, enabled=main))
        stop = stack.enter_context(StopSignals(multi=jax.process_count() > 1))
        profiler = stack.enter_context(Profiler(workdir, profile_steps, start, progress))
        outputs = Outputs(writer, progress, stop, store)
        evaluate = _evaluator(task, run.model, cfg, mesh, outputs, on_eval)
        state, last_eval, last_step = _loop(
            state, Window(pending), step_fn, cfg, outputs, evaluate, profiler
        )
        if start >= cfg.num_steps:
            past = f" (past num_steps={cfg.num_steps})" if start > cfg.num_steps else ""
            progress.say(
                f"already trained to step {start}{past}; re-evaluating and redrawing figures"
            )
            last_eval = evaluate(state, start, final=True, replace=True)
    if start < cfg.num_steps:
        progress.say(f"done in {eta(time.time() - progress.t_start)}")
    progress.end_of_process(cfg.num_steps, last_step)
    return state, last_eval


def _banner(task, state, cfg: TrainConfig, mesh: Mesh, workdir: str, start: int) -> str:
    line = (
        f"{task.name}: {encoder.count_params(state.params):,} parameters, steps "
        f"{start}..{cfg.num_steps}, batch {cfg.batch_size} on {_devices(mesh)}, workdir {workdir}"
    )
    return line + (f"\nresumed from checkpoint at step {start}" if start else "")


def _evaluator(task, model_cfg, cfg: TrainConfig, mesh: Mesh, outputs: Outputs, on_eval):
    """evaluate(state, step, final, replace=False) -> metrics: the held-out evaluation, its row
    written (replacing the step's own with `replace`), a progress line, and on_eval called.
    The final one, and what on_eval does after it, stops at once on a signal (training's
    stop waits for the next step), keeping the checkpoint saved before it."""
    writer, progress, stop, store = outputs.writer, outputs.progress, outputs.stop, outputs.store
    evaluator = evaluation.Evaluator(
        task, model_cfg, batch_size=cfg.eval_batch_size, train_batch_size=cfg.batch_size
    )

    def evaluate(state, step, final, replace=False):
        if not final:
            return once(state, step, final, replace)
        store.wait()  # the checkpoint the stage's message says is kept is complete (or: one line)
        what = f"the final evaluation at step {step} and the analyses after it"
        kept = f"the checkpoint at step {step}"
        finish = "re-run the same command (it trains nothing more)"
        with stop.now(), signals.stage(writer.workdir, what, kept=kept, finish=finish):
            if stop.multi:  # every process stops at an agreed point: none mid-call
                return once(state, step, final, replace)
            return signals.responsive(once, state, step, final, replace)  # a stop seen mid-call

    def once(state, step, final, replace):
        # every process evaluates the whole set on its first device (small, no collective)
        params = local_copy(state.params, mesh)
        scalars, preds = evaluator(params)
        writer.write(step, scalars, replace=replace)  # non-finite: stops every process
        shown = {k: v for k, v in scalars.items() if "/token_accuracy/" not in k}
        progress.say("  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        if on_eval is not None and jax.process_index() == 0:  # after the write: figures see it
            on_eval(Evaluation(task, params, step, evaluator.held_out, preds, scalars, final))
        return scalars

    return evaluate


def _devices(mesh: Mesh) -> str:
    devices = f"{mesh.size} {mesh.devices.flat[0].platform} device(s)"
    if jax.process_count() > 1:
        devices += f" on {jax.process_count()} processes"
    return devices


def _loop(state, window, step_fn, cfg: TrainConfig, outputs: Outputs, evaluate, profiler):
    """Steps from the state's step to cfg.num_steps; `window`: the training scalars since the
    last log line (a resumed run's come from its checkpoint).

    Returns (state, the last evaluation's metrics, the last step's training scalars)."""
    writer, progress, stop, store = outputs.writer, outputs.progress, outputs.stop, outputs.store
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
                told=True,
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
        if done % cfg.checkpoint_every == 0 or done == cfg.num_steps:
            store.save(state, window.host_rows())  # checked above; before the evaluation, so
            # a stop during the final one keeps the trained state
        if done % cfg.eval_every == 0 or done == cfg.num_steps:
            _check(window, done, store)  # never evaluate (and log) a broken state
            with progress.paused():  # steps/s counts training only
                last_eval = evaluate(state, done, final=done == cfg.num_steps)
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
