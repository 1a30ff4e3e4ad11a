"""Which choices make the sparse model generalise? Regimes x position embeddings x attention.

python -m experiments.sparse_study [--num_steps=2000]   -> <workdir>/study.md, study.jsonl
Each row is a full run in <workdir>/<row>/ (resumable); the table compares final held-out
accuracy, training-rectangle accuracy and their gap, beside the two baselines.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import flags

from experiments import common
from rectbert import model as model_lib
from rectbert import tasks, train

REGIMES = {
    "fixed100_fixedpoints": (100, True),  # the write-up's failure
    "fixed100_freshpoints": (100, False),
    "fresh": (0, False),
}
flags.DEFINE_list("regimes", list(REGIMES), f"Regimes, of {list(REGIMES)}.")
flags.DEFINE_list("positions", list(model_lib.CONTINUOUS_POSITIONS), "Position embeddings.")
flags.DEFINE_list("attentions", list(model_lib.ATTENTIONS), "Attention choices.")
common.define_rect_flags()
common.define_train_flags(
    "sparse_study",
    position="sincos",
    attention="context",
    embed_dim=64,
    mlp_dim=128,
    num_layers=3,
    num_steps=2000,
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    prior = common.rect_prior()
    common.check_codebook()
    common.check_train_flags(24)
    for name, allowed in (
        ("regimes", list(REGIMES)),
        ("positions", list(model_lib.CONTINUOUS_POSITIONS)),
        ("attentions", list(model_lib.ATTENTIONS)),
    ):
        bad = [v for v in FLAGS[name].value if v not in allowed]
        if bad or not FLAGS[name].value:
            common.fail(name, ",".join(FLAGS[name].value), f"a non-empty subset of {allowed}")
    if FLAGS.num_steps < 1:
        common.fail("num_steps", FLAGS.num_steps, "an explicit count >= 1")
    workdir = common.prepare_workdir()
    centroids, train_rects = common.codebook_and_train_rects(workdir, prior, 100)
    rows = []
    for regime in FLAGS.regimes:
        n, fixed_points = REGIMES[regime]
        task = tasks.SparseTask(
            mask=common.mask_spec(24),
            centroids=centroids,
            prior=prior,
            train_rects=train_rects if n else None,
            fixed_points=fixed_points,
            eval_examples=FLAGS.eval_examples,
        )
        for position in FLAGS.positions:
            for attention in FLAGS.attentions:
                name = f"{regime}-{position}-{attention}"
                print(f"== {name}", flush=True)
                model_cfg = dataclasses.replace(
                    common.model_config(task), position=position, attention=attention
                )
                _, m = train.train(
                    task,
                    model_cfg,
                    common.train_config(FLAGS.num_steps),
                    os.path.join(workdir, name),
                    run_info={"regime": regime},
                )
                rows.append(
                    {
                        "regime": regime,
                        "position": position,
                        "attention": attention,
                        **{k: m[k] for k in m if "/token_accuracy/" not in k},
                    }
                )
    if not common.is_main_process():
        return
    with open(os.path.join(workdir, "study.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    lines = [
        f"Sparse study: {FLAGS.num_steps} steps x batch {FLAGS.batch_size}, model "
        f"{FLAGS.embed_dim}/{FLAGS.mlp_dim}/{FLAGS.num_layers} layers, "
        f"{FLAGS.eval_examples} held-out rectangles (same for every row).",
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
    with open(os.path.join(workdir, "study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    common.run(main)
