"""The one training loop: init or resume, jitted steps, held-out eval, checkpoints, metrics.

Batches are made inside the jitted step from fold_in(key, step), so a run is a pure function
of its seed and step: resuming from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rectbert import losses
from rectbert import model as model_lib
from rectbert.tasks import Batch

SCHEDULES = ("cosine", "constant")
PARAM_SHARDINGS = ("replicated", "fsdp")


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT stopped training; a checkpoint at the current step was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient norm; the run stopped before saving."""


def first_non_finite(pending: list[dict], first_step: int) -> int | None:
    """The first step (1-based count) among `pending` metrics with a non-finite loss or
    gradient norm, or None. Reading them syncs with the device: done only at log and
    checkpoint times, never every step."""
    for i, m in enumerate(pending):
        if not (np.isfinite(float(m["train/loss"])) and np.isfinite(float(m["train/grad_norm"]))):
            return first_step + i
    return None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    num_steps: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # warm-up then cosine decay to 0, or the write-up's constant rate
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 1000
    eval_batch_size: int = 512
    seed: int = 0
    loss: str = "ce"  # losses.LOSSES
    label_smoothing: float = 0.1
    soft_temperature: float = 0.05
    aux_weight: float = 0.0  # weight of the 16-vector regression (needs model aux_dim=16)
    param_sharding: str = "replicated"  # or "fsdp": params and optimiser state split on "data"


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
        optax.adamw(learning_rate_fn(cfg), weight_decay=cfg.weight_decay),
    )


def masked_loss(logits_BxLxK, batch: Batch):
    """Cross-entropy and accuracy over the masked positions only (visible ones carry none)."""
    ce_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxK, batch.tokens)
    weight_BxL = batch.mask.astype(jnp.float32)
    count = jnp.maximum(weight_BxL.sum(), 1.0)
    correct_BxL = (jnp.argmax(logits_BxLxK, -1) == batch.tokens).astype(jnp.float32)
    return (ce_BxL * weight_BxL).sum() / count, (correct_BxL * weight_BxL).sum() / count


def model_inputs(batch: Batch, num_tokens: int):
    """The model sees [mask] (id K) wherever the batch hides a token."""
    return jnp.where(batch.mask, num_tokens, batch.tokens)


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with a "data" axis over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


@functools.cache
def _model_and_optimizer(model_cfg, cfg: TrainConfig):
    # one instance per config: a TrainState's static fields must compare equal for jit's
    # shardings to match it, and two optax chains built apart never do
    return model_lib.Encoder(model_cfg), make_optimizer(cfg)


def _state_fn(model_cfg, cfg: TrainConfig, task):
    def make():
        model, tx = _model_and_optimizer(model_cfg, cfg)
        k_init = jax.random.fold_in(jax.random.key(cfg.seed), 0)
        dummy = task.train_batch(jax.random.key(0), 0, 2)
        params = model.init(k_init, dummy.tokens, dummy.points)["params"]
        return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    return make


def state_shardings(model_cfg, cfg: TrainConfig, task, mesh: Mesh):
    """Replicated on every device, or (fsdp) each array split along its largest dimension
    that the device count divides; XLA inserts the all-gathers and reduce-scatters."""
    n = mesh.size

    def rule(x):
        dims = [i for i, size in enumerate(x.shape) if size % n == 0]
        if cfg.param_sharding == "fsdp" and dims and n > 1:
            spec = [None] * x.ndim
            spec[max(dims, key=lambda i: x.shape[i])] = "data"
            return NamedSharding(mesh, P(*spec))
        return NamedSharding(mesh, P())

    return jax.tree.map(rule, jax.eval_shape(_state_fn(model_cfg, cfg, task)))


def init_state(model_cfg, cfg: TrainConfig, task, mesh: Mesh | None = None):
    """Parameters and optimiser state, created in place on the mesh's devices."""
    mesh = make_mesh() if mesh is None else mesh
    shardings = state_shardings(model_cfg, cfg, task, mesh)
    return jax.jit(_state_fn(model_cfg, cfg, task), out_shardings=shardings)()


def local_copy(tree, mesh: Mesh):
    """`tree` gathered onto this process's first device, for evaluation and figures."""
    whole = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, P()))(tree)
    return jax.tree.map(lambda a: a.addressable_data(0), whole)


def make_train_step(task, model_cfg, cfg: TrainConfig, mesh: Mesh | None = None):
    """Jitted (state, step) -> (state, metrics) on the mesh: the global batch is generated
    inside the step and split over the "data" axis, so each device makes only its own slice
    and the batch is the same for any device or host count (partitionable threefry)."""
    mesh = make_mesh() if mesh is None else mesh
    k_data, k_drop = data_key(cfg.seed), jax.random.fold_in(jax.random.key(cfg.seed), 2)
    k = model_cfg.num_tokens
    replicated = NamedSharding(mesh, P())
    shardings = state_shardings(model_cfg, cfg, task, mesh)

    def step_fn(state, step):
        batch = task.train_batch(k_data, step, cfg.batch_size)
        batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))

        def loss_fn(params):
            output = state.apply_fn(
                {"params": params},
                model_inputs(batch, k),
                batch.points,
                train=True,
                rngs={"dropout": jax.random.fold_in(k_drop, step)},
            )
            logits = model_lib.logits_of(output)
            loss = losses.training_loss(
                logits,
                output[1] if isinstance(output, tuple) else None,
                batch,
                kind=cfg.loss,
                label_smoothing=cfg.label_smoothing,
                soft_temperature=cfg.soft_temperature,
                aux_weight=cfg.aux_weight,
                centroids_KxG=getattr(task, "centroids", None),
            )
            return loss, masked_loss(logits, batch)[1]

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        metrics = {
            "train/loss": loss,
            "train/masked_accuracy": acc,
            "train/grad_norm": optax.tree.norm(grads),
        }
        return state.apply_gradients(grads=grads), metrics

    return jax.jit(
        step_fn,
        in_shardings=(shardings, replicated),
        out_shardings=(shardings, replicated),
        donate_argnums=0,
    )


def make_predict(model_cfg):
    """Jitted (params, batch) -> logits_BxLxK with the batch's masked tokens hidden."""
    model = model_lib.Encoder(model_cfg)

    @jax.jit
    def predict(params, batch: Batch):
        inputs = model_inputs(batch, model_cfg.num_tokens)
        return model_lib.logits_of(model.apply({"params": params}, inputs, batch.points))

    return predict


def evaluate(predict, params, eval_batch: Batch, batch_size: int):
    """Masked loss and accuracy over the whole eval set, and the argmax tokens [N, L]."""
    n = eval_batch.tokens.shape[0]
    loss_sum = correct_sum = count_sum = 0.0
    preds = []
    for i in range(0, n, batch_size):
        chunk = jax.tree.map(lambda a: a[i : i + batch_size], eval_batch)  # noqa: B023
        logits = predict(params, chunk)
        loss, acc = masked_loss(logits, chunk)
        count = chunk.mask.sum()
        loss_sum, correct_sum = loss_sum + loss * count, correct_sum + acc * count
        count_sum += count
        preds.append(jnp.argmax(logits, -1))
    return {
        "eval/loss": loss_sum / count_sum,
        "eval/masked_accuracy": correct_sum / count_sum,
    }, jnp.concatenate(preds)


class MetricsWriter:
    """metrics.jsonl (one JSON object per line, each with "step"), TensorBoard if available."""

    def __init__(self, workdir: str, resume_step: int):
        self.path = os.path.join(workdir, "metrics.jsonl")
        # drop lines past the checkpoint we resume from: they will be written again
        if os.path.exists(self.path):
            with open(self.path) as f:
                keep = [
                    line for line in f if line.strip() and json.loads(line)["step"] <= resume_step
                ]
            with open(self.path, "w") as f:
                f.writelines(keep)
        try:
            import tensorboardX

            self.tb = tensorboardX.SummaryWriter(workdir)
        except ImportError:
            self.tb = None

    def write(self, step: int, scalars: dict):
        append_metrics(os.path.dirname(self.path), step, scalars)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, float(v), step)
            self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()


class NullWriter:
    """What processes other than 0 write: nothing."""

    def write(self, step: int, scalars: dict):
        pass

    def close(self):
        pass


def append_metrics(workdir: str, step: int, scalars: dict) -> None:
    """One more metrics.jsonl line (e.g. an evaluation made after training)."""
    row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def checkpoint_manager(workdir: str):
    """Orbax writes each checkpoint to a temporary directory and renames it when complete,
    so a save killed half-way is never restored; its leftovers are reported and removed."""
    path = os.path.join(os.path.abspath(workdir), "ckpt")
    torn = (
        sorted(d for d in os.listdir(path) if ".orbax-checkpoint-tmp" in d)
        if (os.path.isdir(path))
        else []
    )
    if torn:
        print(
            f"warning: ignoring incomplete checkpoint(s) {', '.join(torn)} in {path} (a save "
            "was interrupted); resuming from the last complete one",
            flush=True,
        )
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(path, options=options)


def save_checkpoint(mngr, state):
    mngr.save(
        int(state.step),
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            opt_state=ocp.args.StandardSave(state.opt_state),
        ),
    )


def restore_checkpoint(mngr, state):
    step = mngr.latest_step()
    if step is None:
        return state
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(state.params),
            opt_state=ocp.args.StandardRestore(state.opt_state),
        ),
    )
    step_array = jax.make_array_from_callback((), state.step.sharding, lambda _: np.int32(step))
    return state.replace(step=step_array, params=restored.params, opt_state=restored.opt_state)


def data_key(seed: int):
    """The key every training batch is folded from (with the step)."""
    return jax.random.fold_in(jax.random.key(seed), 1)


def eval_key(seed: int):
    """The key of the held-out set: disjoint from the init (0), data (1), dropout (2) keys."""
    return jax.random.fold_in(jax.random.key(seed), 3)


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(
    task,
    model_cfg: model_lib.ModelConfig,
    cfg: TrainConfig,
    workdir: str,
    *,
    run_info: dict | None = None,
    on_eval: Callable | None = None,
    mesh: Mesh | None = None,
):
    """Train (or resume) in `workdir` on `mesh` (default: every device of every process);
    returns (state, last eval metrics).

    `run_info` is stored in config.json beside the model config (load_run reads both);
    `on_eval(state, eval_batch, preds, metrics, final)` is called after each evaluation,
    e.g. to draw figures. With several processes all of them train, evaluate and write the
    checkpoints together; only process 0 writes metrics, config.json, figures and prints.
    """
    mesh = make_mesh() if mesh is None else mesh
    main = jax.process_index() == 0
    if cfg.batch_size % mesh.size:
        raise ValueError(f"batch_size={cfg.batch_size} is not a multiple of {mesh.size} devices")
    say = print if main else (lambda *a, **k: None)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json") if main else os.devnull, "w") as f:
        json.dump(
            {
                "model": dataclasses.asdict(model_cfg),
                "train": dataclasses.asdict(cfg),
                "task": task.name,
                **(run_info or {}),
            },
            f,
            indent=1,
        )
    state = init_state(model_cfg, cfg, task, mesh)
    mngr = checkpoint_manager(workdir)
    state = restore_checkpoint(mngr, state)
    start = int(state.step)
    n_params = model_lib.count_params(state.params)
    devices = f"{mesh.size} {mesh.devices.flat[0].platform} device(s)"
    if jax.process_count() > 1:
        devices += f" on {jax.process_count()} processes"
    say(
        f"{task.name}: {n_params:,} parameters, steps {start}..{cfg.num_steps}, "
        f"batch {cfg.batch_size} on {devices}, workdir {workdir}",
        flush=True,
    )
    if start:
        say(f"resumed from checkpoint at step {start}", flush=True)
    writer = MetricsWriter(workdir, start) if main else NullWriter()
    step_fn = make_train_step(task, model_cfg, cfg, mesh)
    predict = make_predict(model_cfg)
    k_eval = eval_key(cfg.seed)
    eval_batch = task.eval_set(k_eval)
    train_eval_batch = None
    if hasattr(task, "train_eval_set"):
        train_eval_batch = task.train_eval_set(k_eval, data_key(cfg.seed), cfg.batch_size)
    lr = learning_rate_fn(cfg)

    def run_eval(step, final, write=True):
        # every process evaluates the whole held-out set on its first device: small, and no
        # collective; only process 0 writes what it finds
        local = state.replace(params=local_copy(state.params, mesh))
        metrics, preds = evaluate(predict, local.params, eval_batch, cfg.eval_batch_size)
        metrics.update(task.eval_extra(preds, eval_batch, k_eval))
        if train_eval_batch is not None:  # the same measure on rectangles trained on
            seen, _ = evaluate(predict, local.params, train_eval_batch, cfg.eval_batch_size)
            metrics["eval/train_masked_accuracy"] = seen["eval/masked_accuracy"]
            metrics["eval/train_loss"] = seen["eval/loss"]
            metrics["eval/gap"] = seen["eval/masked_accuracy"] - metrics["eval/masked_accuracy"]
        metrics = {k: float(v) for k, v in metrics.items()}
        if write:
            writer.write(step, metrics)
        shown = {k: v for k, v in metrics.items() if "/token_accuracy/" not in k}
        say("  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()), flush=True)
        if on_eval is not None and main:  # after the write, so figures see this evaluation
            on_eval(local, eval_batch, preds, metrics, final)
        return metrics

    pending, t_window, steps_window, t_start = [], time.time(), 0, time.time()
    eval_metrics = {}
    checked = 0  # how many of `pending` are known finite
    # the part-logged window of an interrupted run, so its first log averages the same steps
    pending_path = os.path.join(workdir, "pending_metrics.json")
    if main and os.path.exists(pending_path):
        with open(pending_path) as f:
            saved = json.load(f)
        if saved["step"] == start:
            pending = saved["rows"]
        os.remove(pending_path)
    signals, previous = [], {}
    # One process: SIGTERM/SIGINT are caught here. Several: SIGTERM is left to jax's
    # preemption service, which agrees on one step at which every process stops (a process
    # stopping alone would leave the others waiting in a collective save).
    multi = jax.process_count() > 1
    caught = (signal.SIGINT,) if multi else (signal.SIGTERM, signal.SIGINT)
    if threading.current_thread() is threading.main_thread():  # handlers only work there
        previous = {s: signal.getsignal(s) for s in caught}
        for s in previous:
            signal.signal(s, lambda signum, frame: signals.append(signum))

    def restore_signals():
        for s, handler in previous.items():
            signal.signal(s, handler)

    def stop_if_non_finite(done):
        nonlocal checked
        pending[checked:] = jax.device_get(pending[checked:])  # one transfer for the window
        bad = first_non_finite(pending[checked:], done - len(pending) + checked + 1)
        checked = len(pending)
        if bad is not None:
            mngr.wait_until_finished()
            good = mngr.latest_step()
            mngr.close()
            writer.close()
            restore_signals()
            kept = f"checkpoint at step {good} kept" if good is not None else "no checkpoint yet"
            raise NonFiniteError(f"non-finite loss or gradient norm at step {bad}; stopped, {kept}")

    last = None  # the latest step's metrics, still on the device

    def report_end(step, metrics):
        """With several processes each says where it ended and its last training loss
        (replicated, so they must agree)."""
        if multi:
            loss = float(metrics["train/loss"]) if metrics is not None else float("nan")
            print(
                f"process {jax.process_index()}/{jax.process_count()}: step {step}, "
                f"train/loss {loss:.6f}",
                flush=True,
            )

    for step in range(start, cfg.num_steps):
        if multi and multihost_utils.reached_preemption_sync_point(step):
            signals.append(signal.SIGTERM)
        if signals:  # preempted: save this step, keep the window, stop cleanly
            stop_if_non_finite(step)
            save_checkpoint(mngr, state)
            mngr.wait_until_finished()
            with open(pending_path if main else os.devnull, "w") as f:
                rows = [{k: float(v) for k, v in m.items()} for m in pending]
                json.dump({"step": step, "rows": rows}, f)
            mngr.close()
            writer.close()
            restore_signals()
            report_end(step, last)
            raise Interrupted(
                f"stopped by signal {signals[0]} at step {step}; checkpoint saved, "
                "re-run the same command to resume",
                signals[0],
            )
        state, metrics = step_fn(state, np.int32(step))
        last = metrics
        pending.append(metrics)
        steps_window += 1
        done = step + 1
        log_now = done % cfg.log_every == 0 or done == cfg.num_steps
        if log_now or done % cfg.checkpoint_every == 0:
            stop_if_non_finite(done)  # before any write: never log or save a broken state
        if log_now:
            means = {k: float(np.mean([float(m[k]) for m in pending])) for k in pending[0]}
            now = time.time()
            sps = steps_window / max(now - t_window, 1e-9)
            writer.write(done, {**means, "lr": float(lr(step)), "steps_per_sec": sps})
            say(
                f"step {done}/{cfg.num_steps}  loss {means['train/loss']:.4f}  "
                f"acc {means['train/masked_accuracy']:.3f}  {sps:.1f} steps/s  "
                f"ETA {_eta((cfg.num_steps - done) / sps)}",
                flush=True,
            )
            pending, t_window, steps_window, checked = [], now, 0, 0
        if done % cfg.eval_every == 0 or done == cfg.num_steps:
            t_eval = time.time()
            eval_metrics = run_eval(done, final=done == cfg.num_steps)
            t_window += time.time() - t_eval  # steps/s counts training only
        if done % cfg.checkpoint_every == 0 or done == cfg.num_steps:
            save_checkpoint(mngr, state)
    restore_signals()
    if start >= cfg.num_steps:
        say(f"already trained to step {start}; re-evaluating and redrawing figures", flush=True)
        eval_metrics = run_eval(start, final=True, write=False)
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
    if start < cfg.num_steps:
        say(f"done in {_eta(time.time() - t_start)}", flush=True)
    report_end(cfg.num_steps, last)
    return state, eval_metrics
