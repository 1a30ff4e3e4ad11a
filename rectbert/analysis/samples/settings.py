"""What the sampling scores draw: the methods (the model's samplers and the oracle's two
references), from which visible counts, of how many held-out examples, at which temperature."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.samples import sampler
from rectbert.config import setting

VISIBLE = (2, 4, 8, 16)


@dataclasses.dataclass(frozen=True)
class Method:
    """One row kind of samples.json: a sampler of the model's, or a reference from the oracle."""

    label: str  # in logs and figures, e.g. "joint (random)"
    method: str  # samples.json's "method": argmax, independent, joint, oracle, oracle_marginals
    order: str | None = None  # joint sampling's order
    cfg: sampler.SampleConfig | None = None  # None: from the oracle's posterior
    key: int = 0  # fold_in index of its draws

    @property
    def sampled(self) -> bool:
        """Drawn from the model at a temperature (not argmax, not the oracle)."""
        return self.cfg is not None and self.cfg.method != "argmax"


def default_visible(task) -> tuple[int, ...]:
    """VISIBLE's counts below the sequence length (grid: the task's own visible count)."""
    if task.name != "sparse":
        return (task.seq_len - task.mask.count,)
    return tuple(v for v in VISIBLE if v < task.seq_len) or (task.seq_len - 1,)


def samples_setting():
    """The --samples switch of the experiments that train (sparse, grid)."""
    return setting(
        False,
        "At the final evaluation (also of a finished workdir) draw completions (argmax, "
        "independent, every joint sampler) and score them against the prior: samples.json, "
        "figures/samples.png, figures/samples_by_count.png.",
    )


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Which completions are drawn and scored: from which visible counts, of how many
    held-out examples, how many per example and method, at which temperature. (How one
    completion is drawn is sampler.SampleConfig.)"""

    visible: tuple[int, ...] = setting(
        (),
        "Visible counts the completions start from; empty: 2,4,8,16 (sparse, those below the "
        "point count), the task's own visible count (grid).",
        flag="sample_visible",
        kind="counts",
    )
    examples: int = setting(
        32, "Held-out examples completed at each count.", flag="sample_examples"
    )
    per_example: int = setting(8, "Completions per example and method.", flag="samples_per_example")
    temperature: float = setting(
        1.0,
        "The model's logits are divided by it for independent and joint sampling (1: its own "
        "distribution; below 1: sharper).",
        flag="sample_temperature",
    )

    samplers: tuple[str, ...] = setting(
        (),
        "The joint samplers scored, a comma list of "
        f"{','.join(sampler.SAMPLERS)}; empty: every one.",
        flag="joint_samplers",
        kind="names",
    )
    sampler_rounds: int = setting(
        sampler.SampleConfig.rounds,
        "The remask and repair samplers' rounds of hiding and redrawing after the first draw.",
    )
    remask_share: float = setting(
        sampler.SampleConfig.remask,
        "The share of the drawn tokens the remask sampler hides a round.",
    )
    repair_threshold: float = setting(
        sampler.SampleConfig.threshold,
        "The repair sampler redraws a drawn token the model gives less than this given all "
        "the others.",
    )

    def __post_init__(self):
        t = self.temperature
        number = isinstance(t, int | float) and not isinstance(t, bool)
        allowed = "a finite number > 0 (argmax is its own row)"
        names = isinstance(self.samplers, tuple) and all(
            n in sampler.SAMPLERS for n in self.samplers
        )
        config.validate(
            self,
            [
                (number and t > 0, "temperature", allowed),
                (names, "samplers", f"names from {','.join(sampler.SAMPLERS)} (empty: all)"),
            ],
        )
        try:  # the remask knobs, refused as SampleConfig refuses them, under their own names
            self.sample_config()
        except config.ConfigError as e:
            field = {"rounds": "sampler_rounds", "remask": "remask_share"}
            field = field.get(e.field, "repair_threshold")
            raise config.error(self, field, e.allowed) from None

    def sample_config(self) -> sampler.SampleConfig:
        """How each joint completion is drawn (its order set per method)."""
        return sampler.SampleConfig(
            temperature=self.temperature,
            rounds=self.sampler_rounds,
            remask=self.remask_share,
            threshold=self.repair_threshold,
        )

    def counts(self, task, *, scoring: bool = True) -> tuple[int, ...]:
        """The sorted counts for this task, or a ConfigError naming the field, before any
        compute; with `scoring`, also the task's sampler (the posterior needs uniform points)."""
        if task.name not in ("sparse", "grid"):
            raise ValueError(f"samples are scored for sparse and grid runs; this is {task.name}")
        if oracle_curve.unnested(task):
            raise config.error(
                self, "visible", f"unset for this run ({oracle_curve.unnested(task)})"
            )
        counts = oracle_curve.visible_counts(self.visible or default_visible(task), task.seq_len)
        if counts is None:
            raise config.error(self, "visible", oracle_curve.counts_allowed(task.seq_len))
        if not oracle_curve.examples_allowed(self.examples, task.eval_examples):
            raise config.error(self, "examples", f"an integer in [2, {task.eval_examples}]")
        # each set of posterior samples comes from one replica's chains: no more than those
        most = oracle.OracleConfig().chains // 2
        if not oracle_curve.examples_allowed(self.per_example, most):
            raise config.error(self, "per_example", f"an integer in [2, {most}]")
        if scoring and scored(task) and oracle.unsupported(task):  # supported, but its points
            raise config.error(task, "sampler", "uniform: the posterior's likelihood assumes it")
        return counts


def methods(cfg: ScoreConfig) -> list[Method]:
    """The model's samplers (the joint ones cfg.samplers names, all where empty), then the
    oracle's two references (module doc). Each keeps its fold_in index whatever is chosen."""
    one = cfg.sample_config()
    joint = [
        Method(f"joint ({o})", "joint", o, dataclasses.replace(one, order=o), key=2 + i)
        for i, o in enumerate(sampler.SAMPLERS)
        if not cfg.samplers or o in cfg.samplers
    ]
    return [
        Method("argmax", "argmax", cfg=sampler.SampleConfig(method="argmax"), key=0),
        Method(
            "independent", "independent", cfg=dataclasses.replace(one, method="independent"), key=1
        ),
        *joint,
        Method("oracle", "oracle"),
        Method("oracle_marginals", "oracle_marginals"),
    ]


def scored(task) -> bool:
    """Whether the oracle scores this task's completions (consistency and MMD): its scene's
    posterior is one the oracle samples."""
    return task.scene.oracle_unsupported() is None
