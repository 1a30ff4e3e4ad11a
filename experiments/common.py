"""Flags shared by the experiments, and their one-line validation.

Only experiments/ reads flags; the library gets plain arguments (DESIGN.md).
"""

from __future__ import annotations

import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from rectbert import codebook, losses, masking, shapes, tasks
from rectbert import model as model_lib
from rectbert import train as train_lib

FLAGS = flags.FLAGS
# jax logs its search for TPU/GPU backends at INFO through absl; a CPU user needn't see it
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def define_rect_flags() -> None:
    """The rectangle prior and the patch codebook (grid, sparse and codebook experiments)."""
    flags.DEFINE_float("min_side", 32.0, "Smallest rectangle side, canvas pixels.")
    flags.DEFINE_float("max_side", 192.0, "Largest rectangle side, canvas pixels.")
    flags.DEFINE_list("aspect", [], "Height/width range 'lo,hi'; empty for any.")
    flags.DEFINE_bool("contains_center", False, "Rectangles all contain the canvas centre.")
    flags.DEFINE_integer("num_clusters", 20, "Codebook size K (k-means clusters).")
    flags.DEFINE_integer("codebook_rects", 100, "Rectangles whose patches fit the codebook.")


def run(main) -> None:
    """absl's app.run, with flag-parsing errors as one line (no usage dump)."""

    def parse(argv):
        try:
            return FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"error: {e}")

    def guarded(argv):
        if "distributed" in FLAGS and FLAGS.distributed:
            start_distributed()
        try:
            return main(argv)
        except train_lib.NonFiniteError as e:
            sys.exit(f"error: {e}")
        except train_lib.Interrupted as e:
            print(e, file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)

    app.run(guarded, flags_parser=parse)


def define_distributed_flags() -> None:
    """DESIGN.md's multi-host flags; on a TPU VM jax discovers all three itself."""
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")
    flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0 (discovered on TPU VMs)."
    )
    flags.DEFINE_integer("num_processes", None, "Processes in the job (discovered on TPU VMs).")
    flags.DEFINE_integer("process_id", None, "This process's index (discovered on TPU VMs).")
    flags.DEFINE_enum(
        "param_sharding",
        "replicated",
        list(train_lib.PARAM_SHARDINGS),
        "Parameters and optimiser state: a copy per device, or split over the data axis.",
    )


def start_distributed() -> None:
    """Validate the multi-host flags, then join the job: before any other jax call."""
    given = [FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id]
    if any(v is not None for v in given) and any(v is None for v in given):
        fail(
            "coordinator_address",
            FLAGS.coordinator_address,
            "give --coordinator_address, --num_processes and --process_id together, or none "
            "(TPU VMs discover them)",
        )
    if FLAGS.coordinator_address is not None:
        host, _, port = FLAGS.coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            fail("coordinator_address", FLAGS.coordinator_address, "host:port")
        if FLAGS.num_processes < 1:
            fail("num_processes", FLAGS.num_processes, "an integer >= 1")
        if not 0 <= FLAGS.process_id < FLAGS.num_processes:
            fail("process_id", FLAGS.process_id, f"in [0, {FLAGS.num_processes - 1}]")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes only
    try:
        jax.distributed.initialize(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    except (RuntimeError, ValueError) as e:
        fail("distributed", True, f"a reachable job ({str(e).splitlines()[0]})")


def is_main_process() -> bool:
    return jax.process_index() == 0


def fail(flag: str, value, allowed: str) -> None:
    """Exit non-zero with one line: the flag, the value given, what is allowed."""
    sys.exit(f"error: --{flag}={value} is not allowed: {allowed}")


def rect_prior() -> dict:
    """The validated rectangle-prior flags as sample_rects keyword arguments."""
    if not 0 < FLAGS.min_side <= shapes.CANVAS:
        fail("min_side", FLAGS.min_side, f"need 0 < min_side <= {shapes.CANVAS}")
    if not FLAGS.min_side <= FLAGS.max_side <= shapes.CANVAS:
        fail("max_side", FLAGS.max_side, f"need min_side <= max_side <= {shapes.CANVAS}")
    aspect = None
    if FLAGS.aspect:
        try:
            aspect = tuple(float(a) for a in FLAGS.aspect)
        except ValueError:
            aspect = ()
        if len(aspect) != 2 or not 0 < aspect[0] <= aspect[1]:
            fail("aspect", ",".join(FLAGS.aspect), "two numbers 'lo,hi' with 0 < lo <= hi")
        lo, hi = shapes.side_range(FLAGS.min_side, FLAGS.max_side, aspect)
        if lo > hi:
            fail("aspect", ",".join(FLAGS.aspect), "a range that admits sides in [min, max]")
    return dict(
        min_side=FLAGS.min_side,
        max_side=FLAGS.max_side,
        aspect=aspect,
        contains_center=FLAGS.contains_center,
    )


def codebook_and_train_rects(workdir: str, prior: dict, num_train_rects: int):
    """The run's codebook and its fixed training rectangles (None when 0: fresh), both from
    keys of --seed, so a resumed or repeated run gets the same ones."""
    k_codebook, k_train = jax.random.split(jax.random.fold_in(jax.random.key(FLAGS.seed), 7))
    centroids = jnp.asarray(load_or_fit_codebook(workdir, k_codebook, prior))
    rects = shapes.sample_rects(k_train, num_train_rects, **prior) if num_train_rects else None
    return centroids, rects


def load_or_fit_codebook(workdir: str, key, prior: dict):
    """The run's codebook: fitted once on --codebook_rects rectangles, then read back."""
    path = os.path.join(workdir, "codebook.npy")
    if os.path.exists(path):
        centroids = np.load(path)
        if centroids.shape != (FLAGS.num_clusters, shapes.GRID**2):
            fail(
                "num_clusters",
                FLAGS.num_clusters,
                f"the workdir's codebook.npy has {centroids.shape[0]}; use a new workdir",
            )
        return centroids
    rects = shapes.sample_rects(key, FLAGS.codebook_rects, **prior)
    centroids = np.asarray(codebook.fit_codebook(key, rects, FLAGS.num_clusters)[0], np.float32)
    if is_main_process():  # the others fit the same one (same key); write whole or not at all
        with open(path + ".tmp", "wb") as f:
            np.save(f, centroids)
        os.replace(path + ".tmp", path)
    return centroids


def check_codebook() -> None:
    num_patches = FLAGS.codebook_rects * (shapes.CANVAS // shapes.CELL - shapes.GRID + 1) ** 2
    if FLAGS.codebook_rects < 1:
        fail("codebook_rects", FLAGS.codebook_rects, "an integer >= 1")
    if not 2 <= FLAGS.num_clusters <= num_patches:
        fail("num_clusters", FLAGS.num_clusters, f"an integer in [2, {num_patches}] (patches)")


# ----------------------------------------------------------------------------- training flags
def define_train_flags(
    experiment: str,
    *,
    position="learned",
    attention="full",
    embed_dim=128,
    mlp_dim=256,
    num_layers=2,
    num_steps=-1,
    batch_size=64,
    learning_rate=1e-3,
    mask_ratio=0.2,
    mask_count=0,
    presentations=1,
    num_epochs=1,
) -> None:
    """DESIGN.md's common flags plus the model, masking and schedule flags."""
    flags.DEFINE_string("workdir", f"runs/{experiment}", "Run directory; re-running resumes.")
    define_distributed_flags()
    flags.DEFINE_integer("seed", 0, "Random seed (init, data, masks, dropout).")
    flags.DEFINE_integer(
        "num_steps",
        num_steps,
        "Training steps; -1 for num_epochs x presentations x examples / batch.",
    )
    flags.DEFINE_integer("num_epochs", num_epochs, "Epochs, when --num_steps=-1.")
    flags.DEFINE_integer(
        "presentations",
        presentations,
        "Times each training example is shown in a row per epoch (write-up: 40).",
    )
    flags.DEFINE_integer("batch_size", batch_size, "Global batch size.")
    flags.DEFINE_float("learning_rate", learning_rate, "Peak learning rate.")
    flags.DEFINE_enum(
        "lr_schedule",
        "cosine",
        ["cosine", "constant"],
        "Warm-up + cosine decay, or the write-up's constant rate.",
    )
    flags.DEFINE_integer("warmup_steps", 100, "Linear warm-up steps (cosine schedule).")
    flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
    flags.DEFINE_float("grad_clip", 1.0, "Global gradient-norm clip.")
    flags.DEFINE_integer("log_every", 50, "Steps between progress lines / train metrics.")
    flags.DEFINE_integer("eval_every", 500, "Steps between held-out evaluations.")
    flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints.")
    flags.DEFINE_integer("eval_examples", 512, "Held-out examples per evaluation.")
    flags.DEFINE_float("mask_ratio", mask_ratio, "Fraction of tokens masked: round(r * L).")
    flags.DEFINE_integer("mask_count", mask_count, "Tokens masked per example; 0: use mask_ratio.")
    flags.DEFINE_enum(
        "mask_schedule",
        "fixed",
        ["fixed", "cosine"],
        "fixed count, or MaskGIT's cosine schedule (eval uses the fixed count).",
    )
    flags.DEFINE_integer("embed_dim", embed_dim, "Transformer width.")
    flags.DEFINE_integer("mlp_dim", mlp_dim, "MLP hidden width.")
    flags.DEFINE_integer("num_heads", 4, "Attention heads.")
    flags.DEFINE_integer("num_layers", num_layers, "Transformer blocks.")
    flags.DEFINE_float("dropout", 0.0, "Dropout rate.")
    flags.DEFINE_enum("norm", "pre", ["pre", "post"], "Pre-LN, or post-LN as the write-up's code.")
    flags.DEFINE_enum(
        "position",
        position,
        list(model_lib.POSITIONS),
        "Position embedding: a learned table over lattice indices, or a function "
        "of the continuous (x, y): sincos, fourier (Gaussian), nerf, mlp.",
    )
    flags.DEFINE_enum(
        "attention",
        attention,
        list(model_lib.ATTENTIONS),
        "full self-attention, or context: hidden tokens attend only to visible "
        "ones (and themselves), so they cannot exchange information.",
    )
    flags.DEFINE_enum(
        "loss",
        "ce",
        list(losses.LOSSES),
        "ce; smooth (label smoothing); soft (targets from centroid distances).",
    )
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing for --loss=smooth.")
    flags.DEFINE_float(
        "soft_temperature", 0.05, "Temperature (squared 16-vector distance) of --loss=soft targets."
    )
    flags.DEFINE_float(
        "aux_weight", 0.0, "Weight of an auxiliary regression of the 16 patch values (0: off)."
    )
    flags.DEFINE_float("fourier_scale", 10.0, "Std of Fourier-feature frequencies (per canvas).")
    flags.DEFINE_enum(
        "dtype",
        "auto",
        ["auto", *model_lib.DTYPES],
        "Compute dtype (params stay float32); auto: bfloat16 on TPU and Ampere+ GPUs, else f32.",
    )
    flags.DEFINE_enum(
        "attention_impl",
        "auto",
        list(model_lib.ATTENTION_IMPLS),
        "auto: cuDNN flash attention on a GPU for bf16 full attention (sequence padded to a "
        "multiple of 8), else XLA.",
    )


def _positive(*names: str) -> None:
    for name in names:
        if getattr(FLAGS, name) < 1:
            fail(name, getattr(FLAGS, name), "an integer >= 1")


def check_train_flags(seq_len: int) -> None:
    """Every training flag checked before compute; each failure is one line."""
    _positive(
        "batch_size",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "eval_examples",
        "num_epochs",
        "presentations",
        "embed_dim",
        "mlp_dim",
        "num_heads",
        "num_layers",
    )
    if FLAGS.batch_size % jax.device_count():
        fail(
            "batch_size",
            FLAGS.batch_size,
            f"a multiple of the {jax.device_count()} devices (the global batch is split evenly)",
        )
    if FLAGS.num_steps == 0 or FLAGS.num_steps < -1:
        fail("num_steps", FLAGS.num_steps, "an integer >= 1, or -1 to derive it from epochs")
    if not FLAGS.learning_rate > 0:
        fail("learning_rate", FLAGS.learning_rate, "a number > 0")
    if FLAGS.warmup_steps < 0 or FLAGS.weight_decay < 0 or FLAGS.grad_clip <= 0:
        fail("warmup_steps", FLAGS.warmup_steps, "warmup_steps, weight_decay >= 0, grad_clip > 0")
    if not 0 < FLAGS.mask_ratio < 1:
        fail("mask_ratio", FLAGS.mask_ratio, "a fraction in (0, 1)")
    if not 0 <= FLAGS.mask_count < seq_len:
        fail("mask_count", FLAGS.mask_count, f"an integer in [0, {seq_len - 1}] (0: use ratio)")
    if FLAGS.embed_dim % FLAGS.num_heads or FLAGS.embed_dim % 4:
        fail("embed_dim", FLAGS.embed_dim, f"a multiple of 4 and of num_heads={FLAGS.num_heads}")
    if not 0 <= FLAGS.dropout < 1:
        fail("dropout", FLAGS.dropout, "a rate in [0, 1)")
    if FLAGS.fourier_scale <= 0:
        fail("fourier_scale", FLAGS.fourier_scale, "a number > 0")
    if not 0 <= FLAGS.label_smoothing < 1:
        fail("label_smoothing", FLAGS.label_smoothing, "a fraction in [0, 1)")
    if FLAGS.soft_temperature <= 0:
        fail("soft_temperature", FLAGS.soft_temperature, "a number > 0")
    if FLAGS.aux_weight < 0:
        fail("aux_weight", FLAGS.aux_weight, "a weight >= 0")
    if FLAGS.attention_impl == "cudnn" and FLAGS.attention != "full":
        fail("attention_impl", "cudnn", "xla or auto with --attention=context (a custom mask)")
    if FLAGS.attention_impl == "cudnn" and compute_dtype() == "float32":
        fail("attention_impl", "cudnn", "xla or auto with float32 compute (cuDNN: bf16 only)")
    if FLAGS.attention_impl == "cudnn" and jax.default_backend() != "gpu":
        fail("attention_impl", "cudnn", f"xla or auto on {jax.default_backend()} (GPU only)")


def mask_spec(seq_len: int) -> tasks.MaskSpec:
    count = FLAGS.mask_count or masking.count_for_ratio(FLAGS.mask_ratio, seq_len)
    return tasks.MaskSpec(count=count, schedule=FLAGS.mask_schedule)


def num_steps(num_examples: int) -> int:
    """--num_steps, or epochs x presentations x examples / batch (at least 1)."""
    if FLAGS.num_steps > 0:
        return FLAGS.num_steps
    total = FLAGS.num_epochs * FLAGS.presentations * max(num_examples, 1)
    return max(1, -(-total // FLAGS.batch_size))


def compute_dtype() -> str:
    if FLAGS.dtype != "auto":
        return FLAGS.dtype
    modern = jax.default_backend() == "tpu" or model_lib.modern_cuda_gpu()
    return "bfloat16" if modern else "float32"  # CPU, pre-Ampere GPU: no fast bf16


def model_config(task) -> model_lib.ModelConfig:
    return model_lib.ModelConfig(
        num_tokens=task.num_tokens,
        num_positions=task.seq_len,
        extent=task.extent,
        unit=task.unit,
        position=FLAGS.position,
        fourier_scale=FLAGS.fourier_scale,
        embed_dim=FLAGS.embed_dim,
        mlp_dim=FLAGS.mlp_dim,
        num_heads=FLAGS.num_heads,
        num_layers=FLAGS.num_layers,
        dropout=FLAGS.dropout,
        norm=FLAGS.norm,
        dtype=compute_dtype(),
        attention=FLAGS.attention,
        attention_impl=FLAGS.attention_impl,
        aux_dim=shapes.GRID**2 if FLAGS.aux_weight > 0 else 0,
    )


def train_config(steps: int) -> train_lib.TrainConfig:
    return train_lib.TrainConfig(
        num_steps=steps,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        schedule=FLAGS.lr_schedule,
        warmup_steps=FLAGS.warmup_steps,
        weight_decay=FLAGS.weight_decay,
        grad_clip=FLAGS.grad_clip,
        log_every=FLAGS.log_every,
        eval_every=FLAGS.eval_every,
        checkpoint_every=FLAGS.checkpoint_every,
        eval_batch_size=min(512, FLAGS.eval_examples),
        seed=FLAGS.seed,
        loss=FLAGS.loss,
        label_smoothing=FLAGS.label_smoothing,
        soft_temperature=FLAGS.soft_temperature,
        aux_weight=FLAGS.aux_weight,
        param_sharding=FLAGS.param_sharding,
    )


# flags a resumed run may change: they do not alter what is trained on, or how
SAFE_TO_CHANGE = (
    "num_steps",
    "num_epochs",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "eval_examples",
    "eval_oracle",
    "dense_spacing",
    "workdir",
    # where it runs: the global batch, and so the run, is the same on any device/host count
    "distributed",
    "coordinator_address",
    "num_processes",
    "process_id",
    "param_sharding",
)


def _our_flags() -> dict:
    """name -> serialized value of every flag the experiments define (not absl's own)."""
    out = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if "experiments" in module:
            out.update({f.name: f.serialize() for f in module_flags})
    return out


def refuse_config_drift(workdir: str) -> None:
    """Resuming with flags that change the model, task or codebook fails with one line."""
    path = os.path.join(workdir, "flags.txt")
    ckpt = os.path.join(workdir, "ckpt")
    if not (
        os.path.exists(path) and os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))
    ):
        return
    ours = _our_flags()
    with open(path) as f:
        old = {}
        for line in f:
            name = line.strip().lstrip("-").split("=", 1)[0]
            if name.startswith("no") and name[2:] in ours and "=" not in line:
                name = name[2:]
            old[name] = line.strip()
    changed = [
        n for n, v in sorted(ours.items()) if n not in SAFE_TO_CHANGE and v and old.get(n, v) != v
    ]
    if changed:
        diffs = ", ".join(f"{old[n]} -> {ours[n]}" for n in changed)
        fail(
            "workdir",
            workdir,
            f"it holds a run trained with other flags ({diffs}); resume "
            f"with the original flags (only {', '.join(SAFE_TO_CHANGE)} may change) or use a "
            "new --workdir",
        )


def prepare_workdir() -> str:
    """Create the workdir (writable?) and write flags.txt, re-runnable with --flagfile.

    Call after validation: a bad flag must leave no workdir behind.
    """
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    workdir = FLAGS.workdir
    refuse_config_drift(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        if is_main_process():
            with open(os.path.join(workdir, "flags.txt"), "w") as f:
                f.write(FLAGS.flags_into_string())
    except OSError as e:
        fail("workdir", workdir, f"a writable directory ({e.strerror})")
    return workdir
