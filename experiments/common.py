"""What the experiments share: flags made from the library's configs and registries, and the
one-line errors that map a failed config check back to the flag that set it.

Only experiments/ reads flags (DESIGN.md); each experiment defines its flags on a FlagValues
of its own (define_flags), builds the library's configs from them (build: validation only,
nothing written), then calls the library (main).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys

import jax
from absl import app, flags
from absl import logging as absl_logging

from rectbert import config, scenes
from rectbert.analysis import trained
from rectbert.data import masking, points, tasks
from rectbert.model import encoder, losses, positions
from rectbert.training import checkpoint, engine, metrics, signals, train, workdir


class FlagError(Exception):
    """A flag value that is not allowed: one line, printed as `error: ...`."""


def error(fv, flag: str, allowed: str) -> FlagError:
    shown = fv[flag].serialize() if flag in fv else ""
    return FlagError(f"{shown or f'--{flag}'} is not allowed: {allowed}")


def parse(fv, argv) -> list[str]:
    try:
        return fv(argv)
    except flags.Error as e:
        raise FlagError(str(e)) from None


def run(define_flags, main) -> None:
    """The entry point of `python -m experiments.<name>`: the experiment's flags (beside
    absl's), multi-host start, and every expected failure as one line with a non-zero exit."""
    fv = flags.FlagValues()
    define_flags(fv)
    flags.FLAGS.append_flag_values(fv)
    for name in fv:  # listed by --help under the experiment (appended flags belong to no module)
        flags.FLAGS.register_flag_by_module(sys.argv[0], fv[name])
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # backend search

    def parse_all(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"error: {e}")

    def guarded(argv):
        fv.mark_as_parsed()  # parsed as part of flags.FLAGS
        if not flags.FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
        try:
            if "distributed" in fv and fv.distributed:
                start_distributed(fv)
            main(fv)
        except (FlagError, metrics.NonFiniteError, checkpoint.CheckpointError) as e:
            sys.exit(f"error: {e}")
        except (metrics.MetricsError, workdir.WorkdirError) as e:  # found after the start
            sys.exit(f"error: --workdir={fv.workdir}: {e}")
        except KeyboardInterrupt:  # before training began (its own handler takes it there)
            print("interrupted before training began", file=sys.stderr, flush=True)
            sys.exit(128 + signal.SIGINT)
        except signals.Interrupted as e:
            print(e, file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)

    app.run(guarded, flags_parser=parse_all)


def from_flags(cls, fv, renames: dict | None = None, **given):
    """cls(**fields): each field from `given`, else from the flag of its name (or renamed);
    a ConfigError becomes a FlagError naming the flag."""
    renames = renames or {}
    kwargs = dict(given)
    for f in dataclasses.fields(cls):
        flag = renames.get(f.name, f.name)
        if f.name not in given and f.init and flag in fv:
            kwargs[f.name] = fv[flag].value
    try:
        return cls(**kwargs)
    except config.ConfigError as e:
        raise error(fv, renames.get(e.field, e.field), e.allowed) from None


# ----------------------------------------------------------------------------- scenes
def define_scene_flags(fv) -> None:
    """--scene and every option of every registered family. An option several families share
    with different defaults has no flag default: each family's own applies (named in the help)."""
    helps = {n: (c.__doc__ or "").strip().splitlines()[0] for n, c in scenes.SCENES.items()}
    flags.DEFINE_enum(
        "scene",
        "rect",
        sorted(scenes.SCENES),
        "Scene family: " + "; ".join(f"{n}: {h}" for n, h in helps.items()),
        flag_values=fv,
    )
    fields, defaults = {}, {}
    for name, cls in scenes.SCENES.items():
        for f in scenes.options(cls):
            fields.setdefault(f.name, f)
            defaults.setdefault(f.name, {})[name] = f.default
    for name, f in fields.items():
        help, ds = f.metadata["help"], defaults[name]
        d = f.default if len(set(map(repr, ds.values()))) == 1 else None
        if d is None and f.default is not None:
            help += " Default: " + ", ".join(f"{v} ({n})" for n, v in ds.items()) + "."
        if f.metadata.get("kind") == "range":
            flags.DEFINE_list(name, list(d or []), help, flag_values=fv)
        elif isinstance(f.default, bool):
            flags.DEFINE_bool(name, d, help, flag_values=fv)
        elif isinstance(f.default, int):
            flags.DEFINE_integer(name, d, help, flag_values=fv)
        else:
            flags.DEFINE_float(name, d, help, flag_values=fv)


def scene(fv, name: str | None = None, *, among: tuple[str, ...] = ()) -> scenes.Scene:
    """The scene family `name` (default --scene) with the options the flags give it; an option
    no family of `among` (default: `name` alone) has is refused."""
    name = name or fv.scene
    cls = scenes.SCENES[name]
    own = {f.name: f for f in scenes.options(cls)}
    allowed = set(own) | {f.name for a in among for f in scenes.options(scenes.SCENES[a])}
    for other in scenes.SCENES.values():
        for f in scenes.options(other):
            if f.name not in allowed and fv[f.name].present:
                said = f"--scenes={','.join(among)}" if among else f"--scene={name}"
                raise error(fv, f.name, f"unset with {said} (an option of {other.name})")
    opts = {}
    for key, f in own.items():
        value = fv[key].value
        if value is None and f.default is not None:  # a shared option: the family's default
            continue
        if f.metadata.get("kind") == "range":
            try:
                value = tuple(float(v) for v in value) or None
            except ValueError:
                raise error(fv, key, "two numbers 'lo,hi'") from None
        opts[key] = value
    try:
        return scenes.scene(name, **opts)
    except config.ConfigError as e:
        raise error(fv, e.field, e.allowed) from None


def define_codebook_flags(fv) -> None:
    flags.DEFINE_integer("num_clusters", 20, "Codebook size K (k-means clusters).", flag_values=fv)
    flags.DEFINE_integer(
        "codebook_rects", 100, "Shapes whose patches fit the codebook.", flag_values=fv
    )


# ----------------------------------------------------------------------------- training
def define_train_flags(fv, experiment: str, **defaults) -> None:
    """DESIGN.md's common flags plus the model, masking and schedule flags; `defaults` are the
    experiment's own defaults (the one place they are set)."""

    def d(name, value):
        return defaults.get(name, value)

    def integer(name, value, help):
        flags.DEFINE_integer(name, d(name, value), help, flag_values=fv)

    def number(name, value, help):
        flags.DEFINE_float(name, d(name, value), help, flag_values=fv)

    def enum(name, value, choices, help):
        flags.DEFINE_enum(name, d(name, value), list(choices), help, flag_values=fv)

    flags.DEFINE_string(
        "workdir", f"runs/{experiment}", "Run directory; re-running resumes.", flag_values=fv
    )
    integer("seed", 0, "Random seed: every draw of the run (init, data, masks, points, ...).")
    define_distributed_flags(fv)
    integer("num_steps", -1, "Training steps; -1: num_epochs x presentations x examples / batch.")
    integer("num_epochs", 1, "Epochs, when --num_steps=-1.")
    integer("presentations", 1, "Times each training example is shown in a row per epoch.")
    integer("batch_size", 64, "Global batch size.")
    number("learning_rate", 1e-3, "Peak learning rate.")
    enum("lr_schedule", "cosine", engine.SCHEDULES, "Warm-up + cosine decay, or constant.")
    integer("warmup_steps", 100, "Linear warm-up steps (cosine schedule).")
    enum("optimizer", "adamw", engine.OPTIMIZERS, "optax optimiser (Lion: a smaller rate).")
    number("weight_decay", 0.01, "Decoupled weight decay.")
    number("grad_clip", 1.0, "Global gradient-norm clip.")
    integer("log_every", 50, "Steps between progress lines / train metrics.")
    integer("eval_every", 500, "Steps between held-out evaluations.")
    integer("checkpoint_every", 1000, "Steps between checkpoints.")
    integer("eval_examples", 512, "Held-out examples per evaluation.")
    number("mask_ratio", 0.2, "Fraction of tokens masked: round(r * L).")
    integer("mask_count", 0, "Tokens masked per example; 0: use mask_ratio.")
    enum("mask_schedule", "fixed", masking.SCHEDULES, "fixed count, or MaskGIT's cosine.")
    integer("embed_dim", 128, "Transformer width.")
    integer("mlp_dim", 256, "MLP hidden width.")
    integer("num_heads", 4, "Attention heads.")
    integer("num_layers", 2, "Transformer blocks.")
    number("dropout", 0.0, "Dropout rate.")
    enum("norm", "pre", encoder.NORMS, "Pre-LN, or post-LN as the write-up's code.")
    helps = "; ".join(f"{n}: {p.help}" for n, p in positions.POSITIONS.items())
    enum("position", "learned", positions.POSITIONS, f"Position embedding. {helps}.")
    enum(
        "attention",
        "full",
        encoder.ATTENTIONS,
        "full self-attention, or context: hidden tokens attend only to visible ones.",
    )
    helps = "; ".join(f"{n}: {h}" for n, h in losses.LOSSES.items())
    enum("loss", "ce", losses.LOSSES, f"Training loss. {helps}.")
    number("label_smoothing", 0.1, "Label smoothing for --loss=smooth.")
    number("soft_temperature", 0.05, "Temperature of --loss=soft targets.")
    number("aux_weight", 0.0, "Weight of a regression of the 16 patch values (0: off).")
    number("fourier_scale", 10.0, "Std of Fourier-feature frequencies (per canvas).")
    enum("dtype", "auto", ["auto", *encoder.DTYPES], "Compute dtype; auto: bf16 on TPU, Ampere+.")
    flags.DEFINE_string(
        "profile_steps",
        "",
        "START:STOP: a jax.profiler trace of the steps after START up to STOP in "
        "WORKDIR/profile (TensorBoard's profiler, or Perfetto); empty: none.",
        flag_values=fv,
    )
    enum(
        "attention_impl",
        "auto",
        encoder.ATTENTION_IMPLS,
        "auto: cuDNN flash attention on a GPU for bf16 full attention, else XLA.",
    )


def define_point_flags(fv) -> None:
    flags.DEFINE_integer("num_points", 24, "Points per shape.", flag_values=fv)
    helps = "; ".join(f"{n}: {s.help}" for n, s in points.SAMPLERS.items())
    flags.DEFINE_enum(
        "point_sampler",
        "uniform",
        list(points.SAMPLERS),
        f"Where points fall. {helps}.",
        flag_values=fv,
    )


def define_distributed_flags(fv) -> None:
    """DESIGN.md's multi-host flags; on a TPU VM jax discovers all three itself."""
    flags.DEFINE_bool(
        "distributed", False, "Call jax.distributed.initialize() (multi-host).", flag_values=fv
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 (discovered on TPU VMs).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "num_processes", None, "Processes in the job (TPU VMs: discovered).", flag_values=fv
    )
    flags.DEFINE_integer(
        "process_id", None, "This process's index (TPU VMs: discovered).", flag_values=fv
    )
    flags.DEFINE_enum(
        "param_sharding",
        "replicated",
        list(engine.PARAM_SHARDINGS),
        "Parameters and optimiser state: a copy per device, or split over the data axis.",
        flag_values=fv,
    )


def check_distributed(fv) -> None:
    given = [fv.coordinator_address, fv.num_processes, fv.process_id]
    if not fv.distributed:
        for flag, value in zip(
            ("coordinator_address", "num_processes", "process_id"), given, strict=True
        ):
            if value is not None:
                raise error(fv, flag, "unset without --distributed (it would be ignored)")
        return
    if any(v is not None for v in given) and any(v is None for v in given):
        allowed = "given with --num_processes and --process_id, or none of them (TPU VMs)"
        raise error(fv, "coordinator_address", allowed)
    if fv.coordinator_address is not None:
        host, _, port = fv.coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            raise error(fv, "coordinator_address", "host:port")
        if fv.num_processes < 1:
            raise error(fv, "num_processes", "an integer >= 1")
        if not 0 <= fv.process_id < fv.num_processes:
            raise error(fv, "process_id", f"in [0, {fv.num_processes - 1}]")


def start_distributed(fv) -> None:
    """Validate the multi-host flags, then join the job: before any other jax call."""
    check_distributed(fv)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes only
    try:
        jax.distributed.initialize(
            coordinator_address=fv.coordinator_address,
            num_processes=fv.num_processes,
            process_id=fv.process_id,
        )
    except (RuntimeError, ValueError) as e:
        raise error(fv, "distributed", f"a reachable job ({str(e).splitlines()[0]})") from None


# ----------------------------------------------------------------------------- configs
TASK_FLAGS = {  # task field -> flag
    "num_train": "num_train_rects",
    "codebook_examples": "codebook_rects",
    "sampler": "point_sampler",
    "mask": "mask_ratio",
}


def mask_spec(fv, seq_len: int) -> tasks.MaskSpec:
    if fv.mask_count:
        if not 1 <= fv.mask_count < seq_len:
            raise error(fv, "mask_count", f"an integer in [0, {seq_len - 1}] (0: use the ratio)")
        count = fv.mask_count
    else:
        in_range = 0 < fv.mask_ratio < 1  # False for nan
        count = masking.count_for_ratio(fv.mask_ratio, seq_len) if in_range else 0
        if not in_range or count >= seq_len:
            allowed = f"a fraction in (0, 1) that leaves one of {seq_len} tokens visible"
            raise error(fv, "mask_ratio", allowed)
    return from_flags(tasks.MaskSpec, fv, {"schedule": "mask_schedule"}, count=count)


def task(cls, fv, renames: dict | None = None, **given):
    """The task `cls` from the flags: its own fields first, then the mask, which needs the
    task's sequence length."""
    placeholder = tasks.MaskSpec(1)
    t = from_flags(cls, fv, {**TASK_FLAGS, **(renames or {})}, mask=placeholder, **given)
    return dataclasses.replace(t, mask=mask_spec(fv, t.seq_len))


def num_steps(fv, num_examples: int) -> int:
    """--num_steps, or epochs x presentations x examples / batch (num_examples 0: fresh)."""
    if fv.num_steps == 0 or fv.num_steps < -1:
        raise error(fv, "num_steps", "an integer >= 1, or -1 to derive it from epochs")
    if fv.num_steps > 0:
        return fv.num_steps
    if not num_examples:
        raise error(fv, "num_steps", "an explicit step count with fresh shapes (no epochs)")
    if fv.num_epochs < 1:
        raise error(fv, "num_epochs", "an integer >= 1")
    total = fv.num_epochs * fv.presentations * num_examples
    return max(1, -(-total // max(fv.batch_size, 1)))


def model_config(fv, task) -> encoder.ModelConfig:
    renames = {"fourier_seed": "seed"}
    if fv.attention_impl == "cudnn" and jax.default_backend() != "gpu":
        raise error(fv, "attention_impl", f"xla or auto on {jax.default_backend()} (GPU only)")
    return from_flags(
        encoder.ModelConfig,
        fv,
        renames,
        num_tokens=task.num_tokens,
        num_positions=task.seq_len,
        extent=task.extent,
        unit=task.unit,
        dtype=encoder.resolve_dtype(fv.dtype),
        aux_dim=16 if fv.aux_weight > 0 else 0,
    )


def train_config(fv, steps: int) -> engine.TrainConfig:
    if fv.batch_size >= 1 and fv.batch_size % jax.device_count():
        allowed = f"a multiple of the {jax.device_count()} devices (the batch is split evenly)"
        raise error(fv, "batch_size", allowed)
    return from_flags(
        engine.TrainConfig,
        fv,
        {"schedule": "lr_schedule"},
        num_steps=steps,
        eval_batch_size=min(512, max(fv.eval_examples, 1)),
    )


def profile_steps(fv, steps: int) -> tuple[int, int] | None:
    """--profile_steps as (start, stop) with 0 <= start < stop <= steps, or None when unset."""
    if not fv.profile_steps:
        return None
    allowed = f"START:STOP, integers with 0 <= START < STOP <= {steps} (the run's steps)"
    start, sep, stop = fv.profile_steps.partition(":")
    try:
        start, stop = int(start), int(stop)
    except ValueError:
        raise error(fv, "profile_steps", allowed) from None
    if not (sep and 0 <= start < stop <= steps):
        raise error(fv, "profile_steps", allowed)
    return start, stop


def train_run(fv, task, model_cfg, train_cfg, workdir: str | None = None, **kwargs):
    """train.train in `workdir` (default --workdir) with what every experiment's flags add:
    --profile_steps."""
    profile = profile_steps(fv, train_cfg.num_steps)
    return train.train(
        task, model_cfg, train_cfg, workdir or fv.workdir, profile_steps=profile, **kwargs
    )


def configs(fv, task, num_examples: int):
    """(model config, training config) for the task, checked against it; num_examples: the
    training set's size for epochs (0: fresh examples every step)."""
    check_distributed(fv)
    model_cfg = model_config(fv, task)
    train_cfg = train_config(fv, num_steps(fv, num_examples))
    profile_steps(fv, train_cfg.num_steps)
    try:
        tasks.check_compatible(task, model_cfg, train_cfg)
    except config.ConfigError as e:
        raise error(fv, {"num_positions": "position"}.get(e.field, e.field), e.allowed) from None
    return model_cfg, train_cfg


@contextlib.contextmanager
def claim(fv, record: dict):
    """For the block: hold --workdir (a second run is refused in one line) and claim it for
    `record` (drift refused in one line; config.json and flags.txt written)."""
    main = jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        try:
            files = {"flags.txt": fv.flags_into_string()}
            stack.enter_context(workdir.claim(fv.workdir, record, main=main, files=files))
        except workdir.WorkdirError as e:
            raise error(fv, "workdir", str(e)) from None
        yield


@contextlib.contextmanager
def start(fv, task, model_cfg, train_cfg, *, run_info=None, codebook: bool = False):
    """For the block: claim() the workdir for this run, then load or fit the codebook. Yields
    the task, with its codebook when asked."""
    with claim(fv, train.run_record(task, model_cfg, train_cfg, run_info)):
        if codebook:
            try:
                main = jax.process_index() == 0
                task = task.with_codebook(workdir.codebook(fv.workdir, task, main=main))
            except workdir.WorkdirError as e:
                raise error(fv, "workdir", str(e)) from None
        yield task


def finished_run(fv, tasks: tuple[str, ...], goes_in_it: str):
    """(run, task) of --workdir (--step: its checkpoint) for a command that writes into it,
    or a FlagError in one line before any compute: the directory exists and is writable,
    the run loads, is one of `tasks` and has its codebook."""
    kinds = " or ".join(tasks)
    if not fv.workdir:
        raise error(fv, "workdir", f"a {kinds} run's directory")
    if not os.path.isdir(fv.workdir):
        raise error(fv, "workdir", "an existing run directory")
    figures = os.path.join(fv.workdir, "figures")
    if not all(os.access(d, os.W_OK) for d in (fv.workdir, figures) if os.path.isdir(d)):
        raise error(fv, "workdir", f"a directory this user can write ({goes_in_it} go in it)")
    try:
        run = trained.load_run(fv.workdir, fv.step)
        task = run.task()
    except (ValueError, TypeError) as e:
        flag = "step" if fv.step is not None and "step" in str(e) else "workdir"
        raise error(fv, flag, f"a loadable {kinds} run ({e})") from None
    if task.name not in tasks:
        raise error(fv, "workdir", f"a {kinds} run (this one is {task.name})")
    if run.codebook is None:
        raise error(fv, "workdir", f"a {task.name} run with its codebook.npy (missing)")
    return run, task
