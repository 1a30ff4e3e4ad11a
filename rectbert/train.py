"""The one training loop: init or resume, jitted steps, held-out eval, checkpoints, metrics.

Batches are made inside the jitted step from (seed, step), so a run is a pure function of its
seed and step: resuming from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rectbert import checkpoint, config, evaluation, keys, losses, metrics, tasks
from rectbert import model as model_lib
from rectbert import workdir as workdir_lib
from rectbert.signals import Interrupted, StopSignals

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = {  # name -> optax's optimiser (decoupled weight decay in each)
    "adamw": optax.adamw,
    "nadamw": optax.nadamw,
    "lion": optax.lion,  # sign updates: wants a 3-10x smaller learning rate than AdamW
}
PARAM_SHARDINGS = ("replicated", "fsdp")


NonFiniteError = metrics.NonFiniteError  # a non-finite loss, gradient norm or metric


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    num_steps: int
    batch_size: int = 64  # global: split over every device of every process
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # warm-up then cosine decay to 0, or the write-up's constant rate
    optimizer: str = "adamw"  # a name in OPTIMIZERS
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 1000
    eval_batch_size: int = 512
    loss: str = "ce"  # a name in losses.LOSSES
    label_smoothing: float = 0.1
    soft_temperature: float = 0.05
    aux_weight: float = 0.0  # weight of the 16-vector regression (needs model aux_dim=16)
    param_sharding: str = "replicated"  # or "fsdp": params and optimiser state split on "data"

    def __post_init__(self):
        positive = ("num_steps", "batch_size", "log_every", "eval_every", "checkpoint_every")
        config.validate(
            self,
            [
                *((getattr(self, f) >= 1, f, "an integer >= 1") for f in positive),
                (self.eval_batch_size >= 1, "eval_batch_size", "an integer >= 1"),
                (self.learning_rate > 0, "learning_rate", "a number > 0"),
                (self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}"),
                (self.optimizer in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}"),
                (self.warmup_steps >= 0, "warmup_steps", "an integer >= 0"),
                (self.weight_decay >= 0, "weight_decay", "a number >= 0"),
                (self.grad_clip > 0, "grad_clip", "a number > 0"),
                (self.loss in losses.LOSSES, "loss", f"one of {list(losses.LOSSES)}"),
                (0 <= self.label_smoothing < 1, "label_smoothing", "a fraction in [0, 1)"),
                (self.soft_temperature > 0, "soft_temperature", "a number > 0"),
                (self.aux_weight >= 0, "aux_weight", "a weight >= 0"),
                (self.param_sharding in PARAM_SHARDINGS, "param_sharding", f"{PARAM_SHARDINGS}"),
            ],
        )


def learning_rate_fn(cfg: TrainConfig):
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.learning_rate)
    warmup = min(cfg.warmup_steps, max(cfg.num_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, warmup, max(cfg.num_steps, warmup + 1), end_value=0.0
    )


def make_optimizer(cfg: TrainConfig):
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        OPTIMIZERS[cfg.optimizer](learning_rate_fn(cfg), weight_decay=cfg.weight_decay),
    )


@flax.struct.dataclass
class State:
    step: jax.Array  # int32 scalar: steps taken
    params: dict
    opt_state: optax.OptState


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with a "data" axis over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


def init_state(model, tx, task, cfg: TrainConfig, mesh: Mesh):
    """(state, shardings): parameters and optimiser state created in place on the mesh —
    replicated, or (fsdp) each array split along its largest dimension the device count
    divides (XLA inserts the all-gathers and reduce-scatters)."""

    def make():
        dummy = task.train_batch(0, 2)
        params = model.init(keys.key(task.seed, "init"), dummy.tokens, dummy.points)["params"]
        return State(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    n = mesh.size

    def rule(x):
        dims = [i for i, size in enumerate(x.shape) if size % n == 0]
        if cfg.param_sharding == "fsdp" and dims and n > 1:
            spec = [None] * x.ndim
            spec[max(dims, key=lambda i: x.shape[i])] = "data"
            return NamedSharding(mesh, P(*spec))
        return NamedSharding(mesh, P())

    shardings = jax.tree.map(rule, jax.eval_shape(make))
    return jax.jit(make, out_shardings=shardings)(), shardings


def build(task, model_cfg, cfg: TrainConfig, mesh: Mesh | None = None):
    """(initial state, jitted step) of a run on the mesh: what train() runs, for benchmarks
    and tests that drive the step themselves."""
    mesh = make_mesh() if mesh is None else mesh
    model, tx = model_lib.Encoder(model_cfg), make_optimizer(cfg)
    state, shardings = init_state(model, tx, task, cfg, mesh)
    return state, make_train_step(task, model, tx, cfg, shardings, mesh)


def local_copy(tree, mesh: Mesh):
    """`tree` gathered onto this process's first device, for evaluation and figures."""
    whole = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, P()))(tree)
    return jax.tree.map(lambda a: a.addressable_data(0), whole)


def make_train_step(task, model, tx, cfg: TrainConfig, shardings, mesh: Mesh):
    """Jitted (state, step) -> (state, metrics) on the mesh: the global batch is generated
    inside the step and split over the "data" axis, so each device makes only its own slice
    and the batch is the same for any device or host count (partitionable threefry)."""
    k_drop = keys.key(task.seed, "dropout")
    replicated = NamedSharding(mesh, P())

    def step_fn(state: State, step):
        batch = task.train_batch(step, cfg.batch_size)
        batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))

        def loss_fn(params):
            rngs = {"dropout": jax.random.fold_in(k_drop, step)}
            inputs = batch.model_inputs(task.num_tokens)
            out = model.apply({"params": params}, inputs, batch.points, train=True, rngs=rngs)
            loss = losses.training_loss(
                out,
                batch,
                kind=cfg.loss,
                label_smoothing=cfg.label_smoothing,
                soft_temperature=cfg.soft_temperature,
                aux_weight=cfg.aux_weight,
                centroids_KxG=task.centroids,
            )
            return loss, losses.masked_accuracy(out.logits, batch)

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        scalars = {
            "train/loss": loss,
            "train/masked_accuracy": acc,
            "train/grad_norm": optax.tree.norm(grads),
        }
        return State(step=state.step + 1, params=params, opt_state=opt_state), scalars

    return jax.jit(
        step_fn,
        in_shardings=(shardings, replicated),
        out_shardings=(shardings, replicated),
        donate_argnums=0,
    )


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


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
    model_cfg: model_lib.ModelConfig,
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
            f"{task.name}: {model_lib.count_params(state.params):,} parameters, steps "
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
        progress.say(f"done in {_eta(time.time() - progress.t_start)}")
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
        raise NonFiniteError(f"non-finite loss or gradient norm at step {bad}; stopped, {kept}")


class Profiler:
    """A jax.profiler trace of the steps after `start` up to `stop`, written under
    `workdir`/profile: TensorBoard's profiler reads the directory (`tensorboard
    --logdir=WORKDIR/profile`, Profile tab), Perfetto (ui.perfetto.dev) opens the
    perfetto_trace.json.gz beside the xplane.pb. Steps a resumed run does not take are not
    traced; a trace open when the loop ends early (signal, error) is closed and kept."""

    def __init__(self, workdir: str, steps: tuple[int, int] | None, first: int, progress):
        self.dir = os.path.join(workdir, "profile")
        if jax.process_count() > 1:  # each process its own trace (same host: same file names)
            self.dir = os.path.join(self.dir, f"process_{jax.process_index()}")
        self.steps, self.progress, self.on = steps, progress, False
        if steps is not None and first >= steps[1]:
            progress.say(f"--profile_steps: steps {steps[0]}:{steps[1]} were run before: no trace")
        elif steps is not None and first > steps[0]:
            progress.say(f"--profile_steps: resumed at step {first}: the trace starts there")

    def before(self, step: int, state) -> None:
        if self.steps is not None and not self.on and self.steps[0] <= step < self.steps[1]:
            jax.block_until_ready(state)  # steps still queued are not this window's
            jax.profiler.start_trace(self.dir, create_perfetto_trace=True)
            self.on, self.first, self.last = True, step, step

    def after(self, done: int, state) -> None:
        self.last = done
        if self.on and done >= self.steps[1]:
            jax.block_until_ready(state)  # the trace holds the steps' device work
            self._stop(done)

    def _stop(self, done: int) -> None:
        self.on = False
        jax.profiler.stop_trace()
        self.progress.say(
            f"profile of steps {self.first + 1}..{done} in {self.dir} (tensorboard "
            f"--logdir={self.dir}, or perfetto_trace.json.gz in ui.perfetto.dev)"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.on:  # ended early (signal, error): keep what was traced
            try:
                self._stop(self.last)
            except Exception as e:  # noqa: BLE001 -- never hide the error that ended the loop
                self.progress.say(f"--profile_steps: the trace could not be written ({e})")
        return False


class Progress:
    """What the loop prints (process 0), with steps/s and ETA."""

    def __init__(self, cfg: TrainConfig, start: int, main: bool):
        self.cfg, self.start, self.main = cfg, start, main
        self.t_start = self.t_window = time.time()
        self.steps_from = start

    def say(self, text: str) -> None:
        if self.main:
            print(text, flush=True)

    def steps_per_sec(self, done: int) -> float:
        now = time.time()
        sps = (done - self.steps_from) / max(now - self.t_window, 1e-9)
        self.t_window, self.steps_from = now, done
        return sps

    def line(self, done: int, means: dict, sps: float) -> None:
        self.say(
            f"step {done}/{self.cfg.num_steps}  loss {means['train/loss']:.4f}  "
            f"acc {means['train/masked_accuracy']:.3f}  {sps:.1f} steps/s  "
            f"ETA {_eta((self.cfg.num_steps - done) / sps)}"
        )

    @contextlib.contextmanager
    def paused(self):
        t = time.time()
        yield
        self.t_window += time.time() - t

    def end_of_process(self, step: int, scalars) -> None:
        """With several processes each says where it ended and its last training loss
        (replicated, so they must agree)."""
        if jax.process_count() > 1:
            loss = float(scalars["train/loss"]) if scalars is not None else float("nan")
            print(
                f"process {jax.process_index()}/{jax.process_count()}: step {step}, "
                f"train/loss {loss:.6f}",
                flush=True,
            )
