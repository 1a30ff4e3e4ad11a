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
from rectbert.data import keys
from rectbert.model import encoder, losses

SCHEDULES = ("cosine", "constant")


OPTIMIZERS = {  # name -> optax's optimiser (decoupled weight decay in each)
    "adamw": optax.adamw,
    "nadamw": optax.nadamw,
    "lion": optax.lion,  # sign updates: wants a 3-10x smaller learning rate than AdamW
}


PARAM_SHARDINGS = ("replicated", "fsdp")


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
