"""What the experiments' recipes share: the settings every training run takes beside its task,
one flat dict of values for a recipe (defaults, then what is given), and the configs made from
it. Values are keyed by flag name; the command line (experiments/cli.py) makes its flags from
the same settings.
"""

from __future__ import annotations

import dataclasses

import jax

from rectbert import config, scenes
from rectbert.config import setting
from rectbert.data import masking
from rectbert.data.tasks import MaskSpec
from rectbert.geometry import shapes
from rectbert.model.encoder import ModelConfig, resolve_dtype
from rectbert.training.distributed import DistributedConfig
from rectbert.training.engine import RunConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """Where a run writes, and what it traces."""

    workdir: str = setting("runs/run", "Run directory; re-running the same command resumes.")
    profile_steps: str = setting(
        "",
        "START:STOP: a jax.profiler trace of the steps after START up to STOP in "
        "WORKDIR/profile (TensorBoard's profiler, or Perfetto); empty: none.",
    )

    def __post_init__(self):
        config.validate(self, [(bool(self.workdir), "workdir", "a directory's path")])

    def window(self, num_steps: int) -> tuple[int, int] | None:
        """--profile_steps as (start, stop), 0 <= start < stop <= num_steps; None when unset."""
        if not self.profile_steps:
            return None
        start, sep, stop = self.profile_steps.partition(":")
        try:
            start, stop = int(start), int(stop)
        except ValueError:
            start = stop = -1
        if not (sep and 0 <= start < stop <= num_steps):
            allowed = f"START:STOP, integers with 0 <= START < STOP <= {num_steps} (the steps)"
            raise config.error(self, "profile_steps", allowed)
        return start, stop


@dataclasses.dataclass(frozen=True)
class Length:
    """Settings that are not recorded themselves: they resolve into recorded fields (the step
    count, TrainConfig.num_steps, and the mask count, MaskSpec.count)."""

    num_steps: int = setting(
        -1, "Training steps; -1: num_epochs x presentations x examples / batch."
    )
    num_epochs: int = setting(1, "Epochs, when --num_steps=-1.")
    mask_ratio: float = setting(0.2, "Fraction of tokens masked: round(r * L).")
    mask_count: int = setting(0, "Tokens masked per example; 0: use mask_ratio.")

    def __post_init__(self):
        config.validate(
            self,
            [
                (
                    self.num_steps >= 1 or self.num_steps == -1,
                    "num_steps",
                    "an integer >= 1, or -1",
                ),
                (self.num_epochs >= 1, "num_epochs", "an integer >= 1"),
                (self.mask_count >= 0, "mask_count", "an integer >= 0 (0: use the ratio)"),
            ],
        )

    def steps(self, num_examples: int, presentations: int, batch: int) -> int:
        """--num_steps, or epochs x presentations x examples / batch (num_examples 0: fresh
        examples every step, which have no epochs)."""
        if self.num_steps > 0:
            return self.num_steps
        if not num_examples:
            raise config.error(self, "num_steps", "an explicit step count with fresh shapes")
        total = self.num_epochs * presentations * num_examples
        return max(1, -(-total // max(batch, 1)))

    def mask_count_for(self, seq_len: int) -> int:
        """Tokens hidden per example: --mask_count, or round(mask_ratio x seq_len), leaving at
        least one of seq_len visible."""
        if self.mask_count:
            if self.mask_count >= seq_len:
                allowed = f"an integer in [0, {seq_len - 1}] (0: use the ratio)"
                raise config.error(self, "mask_count", allowed)
            return self.mask_count
        in_range = 0 < self.mask_ratio < 1
        count = masking.count_for_ratio(self.mask_ratio, seq_len) if in_range else 0
        if not in_range or count >= seq_len:
            allowed = f"a fraction in (0, 1) that leaves one of {seq_len} tokens visible"
            raise config.error(self, "mask_ratio", allowed)
        return count


# what every training recipe takes beside its task (and, for scene tasks, the scene)
TRAINING = (OutputSettings, DistributedConfig, Length, MaskSpec, ModelConfig, TrainConfig)
TRAINING_DEFAULTS = {"dtype": "auto"}  # the flags' default: the fast path where there is one


def flag_fields(recipe) -> list[dataclasses.Field]:
    """The settings of the recipe's SETTINGS that are flags (those it FIXES are not), one per
    flag name (two settings of one name must be one setting: the same metadata)."""
    seen = {}
    for cls in recipe.SETTINGS:
        for f in config.settings(cls):
            name = config.flag_name(f)
            if name in recipe.FIXED:
                continue
            if name in seen and (seen[name].metadata, seen[name].default) != (
                f.metadata,
                f.default,
            ):
                raise TypeError(f"{recipe.NAME}: two settings make the flag --{name}")
            seen.setdefault(name, f)
    return list(seen.values())


def option_fields() -> dict[str, dataclasses.Field]:
    """Every scene option by name, as its first family declares it (the families that share
    a name share its kind; their defaults may differ)."""
    out = {}
    for cls in scenes.SCENES.values():
        for f in scenes.options(cls):
            out.setdefault(f.name, f)
    return out


def fields(recipe) -> dict[str, dataclasses.Field]:
    """Every setting of the recipe by flag name, scene options included."""
    own = {config.flag_name(f): f for f in flag_fields(recipe)}
    return {**own, **(option_fields() if recipe.SCENES else {})}


def option_names(families) -> set[str]:
    """The option names of these scene families (names, or the registry itself)."""
    return {f.name for n in families for f in scenes.options(scenes.SCENES[n])}


def defaults(recipe) -> dict:
    """Every setting of the recipe at its default (the recipe's own defaults over the fields'),
    with the values the recipe fixes itself; scene options None (each family's default)."""
    values = {config.flag_name(f): f.default for f in flag_fields(recipe)}
    if recipe.SCENES:
        values.update(dict.fromkeys(["scene", *option_names(scenes.SCENES)]))  # None: defaults
    return {**values, **recipe.DEFAULTS, **recipe.FIXED}


def values(recipe, **given) -> dict:
    """defaults(recipe) with `given` over them (a name no setting has is a KeyError)."""
    out = defaults(recipe)
    unknown = sorted(set(given) - set(out))
    if unknown:
        raise KeyError(f"{recipe.NAME} has no setting {unknown[0]!r}; it has {sorted(out)}")
    return {**out, **given}


def scene(v: dict, name: str | None = None, among: tuple[str, ...] = ()) -> scenes.Scene:
    """The scene family `name` (default v["scene"], else rect) with the options the values give
    it: an option left None takes the family's default; one given for a family not among
    (name, *among) only is refused (ConfigError naming it)."""
    name = name or v.get("scene") or "rect"
    if name not in scenes.SCENES:
        raise config.ConfigError("scene", "scene", name, f"one of {sorted(scenes.SCENES)}")
    allowed = {f.name for n in (name, *among) for f in scenes.options(scenes.SCENES[n])}
    said = f"--scenes={','.join(among)}" if among else f"--scene={name}"
    for other in scenes.SCENES.values():
        for f in scenes.options(other):
            if f.name not in allowed and v.get(f.name) is not None:
                having = [n for n, c in sorted(scenes.SCENES.items())
                          if f.name in {g.name for g in scenes.options(c)}]  # fmt: skip
                raise config.ConfigError(
                    "scene",
                    f.name,
                    v[f.name],
                    f"unset with {said} (an option of {', '.join(having)})",
                )
    given = {f.name: v.get(f.name) for f in scenes.options(scenes.SCENES[name])}
    return scenes.scene(name, **{k: x for k, x in given.items() if x is not None})


def scene_names(v: dict) -> list[str]:
    """The families a recipe's values name (the study's --scenes, else --scene)."""
    return list(v.get("scenes") or ()) or [v.get("scene") or "rect"]


def run_config(task_cls, v: dict, *, num_examples=None, info=None, **task_given) -> RunConfig:
    """The RunConfig of a training recipe: its task (`task_cls` from the values, with
    `task_given`), the model and training configs, checked together. `num_examples`: the
    training set's size for epochs (default: the task's own; 0: fresh every step)."""
    length = config.build(Length, v)
    task = config.build(task_cls, v, mask=MaskSpec(1), **task_given)
    mask = config.build(MaskSpec, v, count=length.mask_count_for(task.seq_len))
    task = dataclasses.replace(task, mask=mask)
    model = model_config(v, task)
    examples = task.num_examples if num_examples is None else num_examples
    steps = length.steps(examples, task.presentations, v["batch_size"])
    devices = jax.device_count()  # a command trains on every device (train() checks its mesh)
    if v["batch_size"] % devices:
        allowed = f"a multiple of the {devices} devices (the global batch is split evenly)"
        raise config.error(TrainConfig, "batch_size", allowed)
    train = config.build(
        TrainConfig, v, num_steps=steps, eval_batch_size=min(512, task.eval_examples)
    )
    return RunConfig(task, model, train, info or {})


def model_config(v: dict, task) -> ModelConfig:
    """The model from the values, sized for the task (its vocabulary, lattice and canvas)."""
    if v["attention_impl"] == "cudnn" and jax.default_backend() != "gpu":
        allowed = f"xla or auto on {jax.default_backend()} (cuDNN: GPU only)"
        raise config.error(ModelConfig, "attention_impl", allowed)
    return config.build(
        ModelConfig,
        v,
        num_tokens=task.num_tokens,
        num_positions=task.seq_len,
        extent=task.extent,
        unit=task.unit,
        fourier_seed=task.seed,
        dtype=resolve_dtype(v["dtype"]),
        aux_dim=shapes.GRID**2 if v["aux_weight"] > 0 else 0,
    )
