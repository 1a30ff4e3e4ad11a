"""TrainConfig, the optimiser, the train state and its shardings, and the jitted train step.

The global batch is made inside the step from (seed, step), split over the devices' "data"
axis: a run is a pure function of its seed and step, for any device or host count.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rectbert import config
from rectbert.config import setting
from rectbert.data import keys, tasks
from rectbert.geometry import shapes
from rectbert.model import encoder, losses, positions

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = {  # name -> optax's optimiser (decoupled weight decay in each)
    "adamw": optax.adamw,
    "nadamw": optax.nadamw,
    "lion": optax.lion,  # sign updates: wants a 3-10x smaller learning rate than AdamW
}
PARAM_SHARDINGS = ("replicated", "fsdp")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a run trains. num_steps and eval_batch_size come from other settings (recipes)."""

    num_steps: int
    batch_size: int = setting(64, "Global batch size (split over every device of every host).")
    learning_rate: float = setting(1e-3, "Peak learning rate.")
    schedule: str = setting(
        "cosine",
        "Warm-up + cosine decay to 0, or the write-up's constant rate.",
        flag="lr_schedule",
        choices=SCHEDULES,
    )
    optimizer: str = setting(
        "adamw", "optax optimiser (Lion: a 3-10x smaller rate).", choices=OPTIMIZERS
    )
    warmup_steps: int = setting(100, "Linear warm-up steps (cosine schedule).")
    weight_decay: float = setting(0.01, "Decoupled weight decay.")
    grad_clip: float = setting(1.0, "Global gradient-norm clip.")
    log_every: int = setting(50, "Steps between progress lines / train metrics.")
    eval_every: int = setting(500, "Steps between held-out evaluations.")
    checkpoint_every: int = setting(1000, "Steps between checkpoints.")
    eval_batch_size: int = 512
    loss: str = setting("ce", "Training loss.", choices=losses.LOSSES)
    label_smoothing: float = setting(0.1, "Label smoothing for --loss=smooth.")
    soft_temperature: float = setting(0.05, "Temperature of --loss=soft targets.")
    aux_weight: float = setting(0.0, "Weight of a regression of the 16 patch values (0: off).")
    loss_average: str = setting(
        "token", "How the hidden tokens' losses are averaged.", choices=losses.AVERAGES
    )
    param_sharding: str = setting(
        "replicated",
        "Parameters and optimiser state: a copy per device, or split over the data axis.",
        choices=PARAM_SHARDINGS,
    )

    def __post_init__(self):
        steps = ("num_steps", "log_every", "eval_every", "checkpoint_every")
        in_int32 = f"an integer in [1, {tasks.INT32_MAX}] (steps are int32)"
        # a batch holds >= 2 tokens x width 4 per example; the task bounds it by its sizes
        most = tasks.MAX_ELEMENTS // 8
        batch = f"an integer in [1, {most}] (a batch's activations {tasks.BUDGET})"
        config.validate(
            self,
            [
                *((1 <= getattr(self, f) <= tasks.INT32_MAX, f, in_int32) for f in steps),
                (1 <= self.batch_size <= most, "batch_size", batch),
                (1 <= self.eval_batch_size <= most, "eval_batch_size", batch),
                (self.learning_rate > 0, "learning_rate", "a number > 0"),
                (
                    0 <= self.warmup_steps <= tasks.INT32_MAX,
                    "warmup_steps",
                    f"an integer in [0, {tasks.INT32_MAX}] (steps are int32)",
                ),
                (self.weight_decay >= 0, "weight_decay", "a number >= 0"),
                (self.grad_clip > 0, "grad_clip", "a number > 0"),
                (0 <= self.label_smoothing < 1, "label_smoothing", "a fraction in [0, 1)"),
                (self.soft_temperature > 0, "soft_temperature", "a number > 0"),
                (self.aux_weight >= 0, "aux_weight", "a weight >= 0"),
                (
                    self.loss_average in losses.AVERAGES,
                    "loss_average",
                    f"one of {tuple(losses.AVERAGES)}",
                ),
            ],
        )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run is: its task, model and training, checked together when made (so a
    run is validated once, before anything is computed or written); `info` is recorded too."""

    task: object  # a data.tasks.Task
    model: encoder.ModelConfig
    train: TrainConfig
    info: dict = dataclasses.field(default_factory=dict)  # more for config.json to record

    def __post_init__(self):
        task, model, cfg = self.task, self.model, self.train
        by_position = positions.POSITIONS[model.position]
        if model.num_tokens != task.num_tokens:
            raise config.error(model, "num_tokens", f"{task.num_tokens} (the task's)")
        if not task.lattice and not by_position.continuous:
            allowed = f"a continuous embedding for {task.name} points: {positions.continuous()}"
            raise config.error(model, "position", allowed)
        if task.lattice and not by_position.continuous and model.num_positions < task.seq_len:
            raise config.error(model, "position", f"a table of >= {task.seq_len} positions")
        if not task.has_values and cfg.loss == "soft":
            allowed = f"ce or smooth: {task.name} has no codebook to soften targets with"
            raise config.error(cfg, "loss", allowed)
        if not task.has_values and cfg.aux_weight > 0:
            raise config.error(cfg, "aux_weight", f"0: {task.name} has no patch values to regress")
        if cfg.aux_weight > 0 and model.aux_dim != shapes.GRID**2:
            raise config.error(model, "aux_dim", f"{shapes.GRID**2} with aux_weight > 0")
        task.check(model, cfg)

    def record(self) -> dict:
        """What config.json records (load_run reads it; a resume must match it)."""
        return {
            "task": self.task.record(),
            "model": config.record(self.model),
            "train": config.record(self.train),
            **self.info,
        }


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
    model, tx = encoder.Encoder(model_cfg), make_optimizer(cfg)
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
                average=cfg.loss_average,
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
