"""Which choices make the sparse model generalise? Regimes x position embeddings x attention.

python -m experiments.sparse_study [--num_steps=2000]   -> <workdir>/study.md, study.jsonl
Each row is a full run in <workdir>/<row>/ (resumable); the table compares final held-out
accuracy, training-shape accuracy and their gap, beside the two baselines.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
from absl import flags

from experiments import common, sparse
from rectbert import model as model_lib
from rectbert import positions, train, workdir
from rectbert.scene_tasks import SparseTask

REGIMES = {  # name -> (num_train, fixed_points)
    "fixed100_fixedpoints": (100, True),  # the write-up's failure
    "fixed100_freshpoints": (100, False),
    "fresh": (0, False),
}


def define_flags(fv) -> None:
    flags.DEFINE_list("regimes", list(REGIMES), f"Regimes, of {list(REGIMES)}.", flag_values=fv)
    flags.DEFINE_list("positions", positions.continuous(), "Position embeddings.", flag_values=fv)
    flags.DEFINE_list("attentions", list(model_lib.ATTENTIONS), "Attentions.", flag_values=fv)
    common.define_scene_flags(fv)
    common.define_codebook_flags(fv)
    common.define_point_flags(fv)
    common.define_train_flags(fv, "sparse_study", **{**sparse.DEFAULTS, "num_steps": 2000})


def build(fv):
    """(the fresh-shapes task every row varies, model config, training config)."""
    for name, allowed in (
        ("regimes", list(REGIMES)),
        ("positions", positions.continuous()),
        ("attentions", list(model_lib.ATTENTIONS)),
    ):
        bad = [v for v in fv[name].value if v not in allowed]
        if bad or not fv[name].value:
            raise common.error(fv, name, f"a non-empty subset of {allowed}")
    if fv.num_steps < 1:
        raise common.error(fv, "num_steps", "an explicit count >= 1")
    base = common.task(SparseTask, fv, scene=common.scene(fv), num_train=0, fixed_points=False)
    return (base, *common.configs(fv, base, num_examples=0))


def main(fv) -> None:
    base, model_cfg, train_cfg = build(fv)
    with common.start(fv, base, model_cfg, train_cfg, codebook=True) as base:  # one codebook
        results = []
        for regime in fv.regimes:
            n, fixed_points = REGIMES[regime]
            task = dataclasses.replace(base, num_train=n, fixed_points=fixed_points)
            for position in fv.positions:
                for attention in fv.attentions:
                    name = f"{regime}-{position}-{attention}"
                    print(f"== {name}", flush=True)
                    cfg = dataclasses.replace(model_cfg, position=position, attention=attention)
                    run_dir = os.path.join(fv.workdir, name)
                    _, m = train.train(task, cfg, train_cfg, run_dir, run_info={"regime": regime})
                    shown = {k: v for k, v in m.items() if "/token_accuracy/" not in k}
                    results.append(
                        {"regime": regime, "position": position, "attention": attention, **shown}
                    )
        if jax.process_index() == 0:
            write_table(fv, results)


def write_table(fv, rows) -> None:
    table = "".join(json.dumps(r) + "\n" for r in rows)
    workdir.write_atomic(os.path.join(fv.workdir, "study.jsonl"), table)
    lines = [
        f"Sparse study: {fv.num_steps} steps x batch {fv.batch_size}, model "
        f"{fv.embed_dim}/{fv.mlp_dim}/{fv.num_layers} layers, "
        f"{fv.eval_examples} held-out shapes (same for every row).",
        "",
        "| regime | position | attention | held-out acc | train-rect acc | gap | nearest "
        "| majority |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["eval/masked_accuracy"]):
        lines.append(
            f"| {r['regime']} | {r['position']} | {r['attention']} | "
            f"{r['eval/masked_accuracy']:.3f} | {r['eval/train_masked_accuracy']:.3f} | "
            f"{r['eval/gap']:+.3f} | {r['eval/nearest_accuracy']:.3f} | "
            f"{r['eval/majority_accuracy']:.3f} |"
        )
    workdir.write_atomic(os.path.join(fv.workdir, "study.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    common.run(define_flags, main)
