"""Which choices make the sparse model generalise? Regimes x position embeddings x attention,
and with --scenes, x scene families.

python -m experiments.sparse_study [--num_steps=2000]   -> <workdir>/study.md, study.jsonl
Each row is a full run in <workdir>/<row>/ (resumable); the table compares final held-out
accuracy, training-shape accuracy and their gap, beside the two baselines. With --scenes,
each scene has its own codebook and rows: <workdir>/<scene>/codebook.npy, <workdir>/<scene>/<row>/.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os

import jax
from absl import flags

from experiments import common, sparse
from rectbert import scenes
from rectbert.data.scene_tasks import SparseTask
from rectbert.model import encoder, positions
from rectbert.training import workdir

REGIMES = {  # name -> (num_train, fixed_points)
    "fixed100_fixedpoints": (100, True),  # the write-up's failure
    "fixed100_freshpoints": (100, False),
    "fresh": (0, False),
}


def define_flags(fv) -> None:
    flags.DEFINE_list("regimes", list(REGIMES), f"Regimes, of {list(REGIMES)}.", flag_values=fv)
    flags.DEFINE_list("positions", positions.continuous(), "Position embeddings.", flag_values=fv)
    flags.DEFINE_list("attentions", list(encoder.ATTENTIONS), "Attentions.", flag_values=fv)
    flags.DEFINE_list(
        "scenes",
        [],
        f"Scene families to compare, of {sorted(scenes.SCENES)} (each with its family's "
        "options from the flags); empty: --scene alone.",
        flag_values=fv,
    )
    common.define_scene_flags(fv)
    common.define_codebook_flags(fv)
    common.define_point_flags(fv)
    # the study's tables were measured at the rate and cadence before time_to_ceiling
    study = {"num_steps": 2000, "learning_rate": 1e-3, "eval_every": 500}
    common.define_train_flags(fv, "sparse_study", **{**sparse.DEFAULTS, **study})


def build(fv):
    """(the fresh-shapes task of each scene, model config, training config)."""
    for name, allowed in (
        ("regimes", list(REGIMES)),
        ("positions", positions.continuous()),
        ("attentions", list(encoder.ATTENTIONS)),
    ):
        bad = [v for v in fv[name].value if v not in allowed]
        if bad or not fv[name].value:
            raise common.error(fv, name, f"a non-empty subset of {allowed}")
    names = fv.scenes
    if any(n not in scenes.SCENES for n in names) or len(set(names)) != len(names):
        raise common.error(fv, "scenes", f"distinct names of {sorted(scenes.SCENES)}, or empty")
    if names and fv["scene"].present:
        raise common.error(fv, "scene", "unset with --scenes (it names the scenes)")
    if fv.num_steps < 1:
        raise common.error(fv, "num_steps", "an explicit count >= 1")
    among = tuple(names)
    each = [common.scene(fv, n, among=among) for n in names] or [common.scene(fv)]
    tasks = [
        common.task(SparseTask, fv, scene=scene, num_train=0, fixed_points=False) for scene in each
    ]
    return (tasks, *common.configs(fv, tasks[0], num_examples=0))


def main(fv) -> None:
    bases, model_cfg, train_cfg = build(fv)
    several = bool(fv.scenes)  # rows and codebooks go to <workdir>/<scene>/
    info = {"scenes": [t.scene.record() for t in bases]} if several else None
    with common.start(fv, bases[0], model_cfg, train_cfg, run_info=info, codebook=not several) as t:
        results = []
        for base in bases if several else [t]:
            root = os.path.join(fv.workdir, base.scene.name) if several else fv.workdir
            if several:
                base = base.with_codebook(codebook(fv, root, base))
            for regime, position, attention in itertools.product(
                fv.regimes, fv.positions, fv.attentions
            ):
                n, fixed_points = REGIMES[regime]
                task = dataclasses.replace(base, num_train=n, fixed_points=fixed_points)
                run_dir = os.path.join(root, f"{regime}-{position}-{attention}")
                print(f"== {os.path.relpath(run_dir, fv.workdir)}", flush=True)
                cfg = dataclasses.replace(model_cfg, position=position, attention=attention)
                _, m = common.train_run(
                    fv, task, cfg, train_cfg, run_dir, run_info={"regime": regime}
                )
                shown = {k: v for k, v in m.items() if "/token_accuracy/" not in k}
                row = dict(scene=base.scene.name, regime=regime, position=position)
                results.append({**row, "attention": attention, **shown})
        if jax.process_index() == 0:
            write_table(fv, results)


def codebook(fv, root: str, task):
    """The scene's codebook in root/codebook.npy (fitted and written the first time)."""
    try:
        if jax.process_index() == 0:
            os.makedirs(root, exist_ok=True)
        return workdir.codebook(root, task, main=jax.process_index() == 0)
    except (OSError, workdir.WorkdirError) as e:
        raise common.error(fv, "workdir", f"{root}: {e}") from None


def write_table(fv, rows) -> None:
    table = "".join(json.dumps(r) + "\n" for r in rows)
    workdir.write_atomic(os.path.join(fv.workdir, "study.jsonl"), table)
    lines = [
        f"Sparse study: {fv.num_steps} steps x batch {fv.batch_size}, model "
        f"{fv.embed_dim}/{fv.mlp_dim}/{fv.num_layers} layers, "
        f"{fv.eval_examples} held-out shapes (same for every row of a scene).",
        "",
        "| scene | regime | position | attention | held-out acc | train-shape acc | gap | nearest "
        "| majority |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {r["scene"]: i for i, r in reversed(list(enumerate(rows)))}
    for r in sorted(rows, key=lambda r: (order[r["scene"]], -r["eval/masked_accuracy"])):
        lines.append(
            f"| {r['scene']} | {r['regime']} | {r['position']} | {r['attention']} | "
            f"{r['eval/masked_accuracy']:.3f} | {r['eval/train_masked_accuracy']:.3f} | "
            f"{r['eval/gap']:+.3f} | {r['eval/nearest_accuracy']:.3f} | "
            f"{r['eval/majority_accuracy']:.3f} |"
        )
    workdir.write_atomic(os.path.join(fv.workdir, "study.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    common.run(define_flags, main)
