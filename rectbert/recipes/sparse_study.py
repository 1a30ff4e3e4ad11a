"""The sparse study: which choices make the sparse model generalise? Regimes x position
embeddings x attention, and with --scenes, x scene families; one full run per row (resumable),
then a table of final held-out accuracy, training-shape accuracy and their gap beside the two
baselines: <workdir>/study.md and study.jsonl. With --scenes each scene has its own codebook
and rows: <workdir>/<scene>/codebook.npy, <workdir>/<scene>/<row>/."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time

import jax
import numpy as np

from rectbert import config, files, scenes
from rectbert.analysis import calls, oracle
from rectbert.config import setting
from rectbert.data import keys
from rectbert.data.sparse_task import SparseTask
from rectbert.files import write_atomic
from rectbert.model import encoder, positions
from rectbert.recipes import common, sparse
from rectbert.training import train, workdir
from rectbert.training.engine import RunConfig

REGIMES = {  # name -> (num_train, fixed_points)
    "fixed100_fixedpoints": (100, True),  # the write-up's failure
    "fixed100_freshpoints": (100, False),
    "fresh": (0, False),
}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The study's axes: every combination of them is one row."""

    regimes: tuple[str, ...] = setting(
        tuple(REGIMES), f"Regimes, of {list(REGIMES)}.", kind="names"
    )
    positions: tuple[str, ...] = setting(
        tuple(p for p in positions.continuous() if p != "none"),
        "Position embeddings (none: the ablation, on request).",
        kind="names",
    )
    attentions: tuple[str, ...] = setting(encoder.ATTENTIONS, "Attentions.", kind="names")
    scenes: tuple[str, ...] = setting(
        (),
        f"Scene families to compare, of {sorted(scenes.SCENES)} (each with its family's "
        "options from the flags); empty: --scene alone.",
        kind="names",
    )
    oracle_examples: int = setting(
        128,
        "Held-out shapes of each scene the oracle scores for the table's ceiling column (the "
        "first of the rows' held-out set, at most --eval_examples; 0: no column).",
    )

    def __post_init__(self):
        for name, allowed in (
            ("regimes", list(REGIMES)),
            ("positions", positions.continuous()),
            ("attentions", list(encoder.ATTENTIONS)),
        ):
            chosen = getattr(self, name)
            if not chosen or any(c not in allowed for c in chosen):
                raise config.error(self, name, f"a non-empty subset of {allowed}")
        if not (isinstance(self.oracle_examples, int) and self.oracle_examples >= 0):
            raise config.error(self, "oracle_examples", "an integer >= 0")
        known = sorted(scenes.SCENES)
        if any(n not in known for n in self.scenes) or len(set(self.scenes)) != len(self.scenes):
            raise config.error(self, "scenes", f"distinct names of {known}, or empty")


NAME = "sparse_study"
SCENES = True
SETTINGS = (*common.TRAINING, SparseTask, StudyConfig)
# the study's tables were measured at the rate and cadence before time_to_ceiling
DEFAULTS = {
    **sparse.DEFAULTS,
    "workdir": "runs/sparse_study",
    "num_steps": 2000,
    "learning_rate": 1e-3,
    "eval_every": 500,
}
# each regime sets num_train and fixed_points for its rows; --positions, --attentions theirs
FIXED = {"num_train_rects": 0, "fixed_points": False, "position": "sincos", "attention": "context"}
AXES = {"position": "positions", "attention": "attentions", "num_train": "regimes"}


@dataclasses.dataclass(frozen=True)
class Row:
    scene: str
    regime: str
    position: str
    attention: str
    run: RunConfig  # its task without a codebook: the scene's is given when it trains
    workdir: str


@dataclasses.dataclass(frozen=True)
class Plan:
    base: RunConfig  # the first scene's fresh-shapes run: what the study's workdir records
    several: bool  # rows and codebooks go to <workdir>/<scene>/
    rows: tuple[Row, ...]
    workdir: str
    profile: tuple[int, int] | None
    oracle_examples: int  # held-out shapes per scene for the table's ceiling column


def build(v: dict) -> Plan:
    study, output = config.build(StudyConfig, v), config.build(common.OutputSettings, v)
    if study.scenes and v.get("scene") is not None:
        raise config.ConfigError(
            "scene", "scene", v["scene"], "unset with --scenes (it names the scenes)"
        )
    v = {**v, "position": study.positions[0]}  # each row sets its own
    names, several = common.scene_names(v), bool(study.scenes)
    try:
        bases = [
            common.run_config(SparseTask, v, num_examples=0, scene=common.scene(v, n, study.scenes))
            for n in names
        ]
    except config.ConfigError as e:  # e.g. --relative=te with an absolute position
        raise on_axes(e, f"with --positions={study.positions[0]}") from None
    rows = []
    for base in bases:
        root = os.path.join(output.workdir, base.task.scene.name) if several else output.workdir
        for axes in itertools.product(study.regimes, study.positions, study.attentions):
            rows.append(row(base, *axes, root))
    info = {"scenes": [b.task.scene.record() for b in bases]} if several else {}
    head = dataclasses.replace(bases[0], info=info)
    return Plan(
        head,
        several,
        tuple(rows),
        output.workdir,
        output.window(head.train.num_steps),
        min(study.oracle_examples, head.task.eval_examples),
    )


def on_axes(e: config.ConfigError, where: str) -> config.ConfigError:
    """`e` against the study's axis flag (--regimes, --positions, --attentions) where its field
    is one, saying where it arose."""
    flag = AXES.get(e.field, "regimes" if e.field == "fixed_points" else e.flag)
    return config.ConfigError(e.owner, e.field, e.value, f"{e.allowed} ({where})", flag)


def row(base: RunConfig, regime: str, position: str, attention: str, root: str) -> Row:
    """One row of the study, checked: a ConfigError names the axis that made it (--regimes,
    --positions, --attentions) or the setting the row's choice conflicts with."""
    n, fixed_points = REGIMES[regime]
    name = f"{regime}-{position}-{attention}"
    try:
        task = dataclasses.replace(base.task, num_train=n, fixed_points=fixed_points)
        model = dataclasses.replace(base.model, position=position, attention=attention)
        run = RunConfig(task, model, base.train, {"regime": regime})
    except config.ConfigError as e:
        raise on_axes(e, f"row {name}") from None
    return Row(task.scene.name, regime, position, attention, run, os.path.join(root, name))


def main(plan: Plan, files: dict | None = None) -> None:
    main_process = jax.process_index() == 0
    results, books, ceilings = [], {}, {}
    record, declared = plan.base.record(), config.defaults(plan.base)
    with workdir.claim(plan.workdir, record, declared=declared, main=main_process, files=files):
        for row in plan.rows:
            if row.scene not in books:  # the scene's codebook: fitted once, then read
                root = os.path.dirname(row.workdir)
                books[row.scene] = row.run.task.prepare(root, main=main_process).codebook
            task = row.run.task.with_codebook(books[row.scene])
            if row.scene not in ceilings:
                root = os.path.dirname(row.workdir)
                ceilings[row.scene] = ceiling(task, root, plan.oracle_examples, main_process)
            print(f"== {os.path.relpath(row.workdir, plan.workdir)}", flush=True)
            run = dataclasses.replace(row.run, task=task)
            _, m = train.train(run, row.workdir, profile_steps=plan.profile)
            shown = {k: x for k, x in m.items() if "/token_accuracy/" not in k}
            results.append(
                {
                    "scene": row.scene,
                    "regime": row.regime,
                    "position": row.position,
                    "attention": row.attention,
                    **shown,
                    **ceilings[row.scene],
                }
            )
        if main_process:
            write_table(plan, results)


def ceiling(task, root: str, examples: int, main: bool) -> dict:
    """The oracle on the scene's first `examples` held-out shapes (the same for every row):
    {"oracle/accuracy", "oracle/accuracy_stderr", "oracle/examples", ...}, read from
    <root>/oracle.json when made for this task and count (a resumed study reuses it); {} when
    off or where the oracle cannot score the task (it says why)."""
    if not examples:
        return {}
    why = oracle.unsupported(task)
    if why:
        print(f"note: no oracle column for {task.scene.name}: {why}", flush=True)
        return {}
    path = os.path.join(root, "oracle.json")
    rows_vary = ("num_train", "presentations", "fixed_points")  # not the held-out shapes
    made_for = {k: v for k, v in task.record().items() if k not in rows_vary}
    book = hashlib.sha256(np.asarray(task.codebook, np.float32).tobytes()).hexdigest()
    made_for.update(examples=examples, codebook_sha256=book, oracle=repr(oracle.OracleConfig()))
    held, why = files.kept(path, made_for)  # torn, foreign or another sampler's: made again
    if held is not None and "scores" in held:
        return held["scores"]
    if why != "absent":
        print(f"note: {path} is {why}: measured again", flush=True)
    print(f"oracle: {examples} held-out {task.scene.name} shapes (the ceiling column)", flush=True)
    start = time.time()
    batch = jax.tree.map(lambda a: a[:examples], jax.jit(task.eval_set)())
    key = keys.key(task.seed, "oracle")
    m, _, _ = oracle.evaluate(key, batch, task.codebook, task.scene, say=calls.SAY)
    scores = {f"oracle/{k[len('eval/oracle_') :]}": v for k, v in m.items()}
    scores["oracle/examples"] = examples
    print(
        f"oracle accuracy {scores['oracle/accuracy']:.4f} +- "
        f"{scores['oracle/accuracy_stderr']:.4f} [{time.time() - start:.0f} s]",
        flush=True,
    )
    if main:
        files.keep(path, made_for, {"scores": scores})
    return scores


def _ceiling(r: dict) -> str:
    if "oracle/accuracy" not in r:
        return "-"
    acc, se, n = r["oracle/accuracy"], r["oracle/accuracy_stderr"], r["oracle/examples"]
    return f"{acc:.3f} +- {se:.3f} (n={n})"


def write_table(plan: Plan, rows: list[dict]) -> None:
    write_atomic(
        os.path.join(plan.workdir, "study.jsonl"), "".join(json.dumps(r) + "\n" for r in rows)
    )
    task, model, cfg = plan.base.task, plan.base.model, plan.base.train
    lines = [
        f"Sparse study: {cfg.num_steps} steps x batch {cfg.batch_size}, model "
        f"{model.embed_dim}/{model.mlp_dim}/{model.num_layers} layers, "
        f"{task.eval_examples} held-out shapes (same for every row of a scene).",
        "",
        "| scene | regime | position | attention | held-out acc | train-shape acc | gap | nearest "
        "| majority | oracle |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {r["scene"]: i for i, r in reversed(list(enumerate(rows)))}
    for r in sorted(rows, key=lambda r: (order[r["scene"]], -r["eval/masked_accuracy"])):
        lines.append(
            f"| {r['scene']} | {r['regime']} | {r['position']} | {r['attention']} | "
            f"{r['eval/masked_accuracy']:.3f} | {r['eval/train_masked_accuracy']:.3f} | "
            f"{r['eval/gap']:+.3f} | {r['eval/nearest_accuracy']:.3f} | "
            f"{r['eval/majority_accuracy']:.3f} | {_ceiling(r)} |"
        )
    if any("oracle/accuracy" in r for r in rows):
        lines += [
            "",
            "oracle: the Bayes-optimal accuracy (the scene's exact posterior, sampled) on the "
            "first n held-out shapes of the scene, +- its standard error; the same for every row.",
        ]
    write_atomic(os.path.join(plan.workdir, "study.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
