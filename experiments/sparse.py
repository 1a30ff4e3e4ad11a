"""Predict hidden tokens at continuous points of shapes (the write-up's open problem).

python -m experiments.sparse                      # CPU-sized run that generalises
python -m experiments.sparse --flagfile=experiments/flags/sparse_memorise_quick.flags
"""

from __future__ import annotations

from absl import flags

from experiments import common, oracle_curve, sample
from rectbert.analysis import report
from rectbert.data import points
from rectbert.data.scene_tasks import SparseTask
from rectbert.training import evaluation

DEFAULTS = dict(  # a CPU-sized run that generalises (README); the engine's for the rest
    position="sincos",
    attention="context",
    embed_dim=64,
    mlp_dim=128,
    num_layers=3,
    num_steps=6000,
    learning_rate=3e-3,  # benchmarks/time_to_ceiling.py: the fastest to the oracle here
    eval_every=1000,
)


def define_flags(fv) -> None:
    common.define_scene_flags(fv)
    common.define_codebook_flags(fv)
    common.define_point_flags(fv)
    flags.DEFINE_integer(
        "num_train_rects", 0, "Fixed training shapes (write-up: 100); 0: fresh.", flag_values=fv
    )
    flags.DEFINE_bool(
        "fixed_points", False, "Fixed set: draw each shape's points only once.", flag_values=fv
    )
    flags.DEFINE_integer(
        "extra_targets",
        0,
        "More hidden points per training example, targets only (context attention): more "
        "supervision per step, the evaluated task unchanged.",
        flag_values=fv,
    )
    flags.DEFINE_float(
        "dense_spacing", 8.0, "Lattice spacing (px) of the dense-rendering figure.", flag_values=fv
    )
    flags.DEFINE_bool(
        "eval_oracle",
        False,
        "At the final evaluation (also of a finished workdir) score the Bayes-optimal oracle "
        "on the same held-out examples.",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "oracle_curve",
        False,
        "At the final evaluation (also of a finished workdir) score model and oracle at every "
        "visible count of --curve_visible: oracle_curve.json, figures/oracle_curve.png.",
        flag_values=fv,
    )
    oracle_curve.define_curve_flags(fv)
    sample.define_experiment_flags(fv)
    common.define_train_flags(fv, "sparse", **DEFAULTS)


def build(fv):
    """(task, model config, training config) from the flags: validation only."""
    task = common.task(SparseTask, fv, scene=common.scene(fv))
    for flag in ("eval_oracle", "oracle_curve"):  # what the oracle needs
        if not fv[flag].value:
            continue
        if not points.get(task.sampler).uniform:
            raise common.error(fv, flag, "with uniform points: the oracle's likelihood")
        why = task.scene.oracle_unsupported()
        if why:
            raise common.error(fv, flag, f"false: the oracle does not support {why}")
    if fv.oracle_curve:
        oracle_curve.visible_counts(fv, task)
    if fv.samples:
        sample.sample_counts(fv, task)
    if not 1 <= fv.dense_spacing <= 192:  # finer than a pixel renders nothing new
        raise common.error(fv, "dense_spacing", "a spacing in [1, 192] canvas pixels")
    return (task, *common.configs(fv, task, num_examples=task.num_train))


def main(fv) -> None:
    task, model_cfg, train_cfg = build(fv)
    n = task.num_train
    regime = (
        f"{n} fixed shapes" + (", fixed points" if task.fixed_points else "")
        if n
        else "fresh shapes every step"
    )
    run_info = {"regime": regime}
    with common.start(fv, task, model_cfg, train_cfg, run_info=run_info, codebook=True) as task:
        title = (
            f"sparse: {task.scene.name}, {regime}, {task.sampler} points, {model_cfg.position} "
            f"positions, {model_cfg.attention} attention"
        )
        predict = evaluation.make_predict(model_cfg)

        def on_eval(state, batch, preds, metrics, final):
            if not final:
                return
            report.sparse_figures(
                fv.workdir, task, predict, state.params, batch, preds, title, fv.dense_spacing
            )
            if fv.eval_oracle:
                accuracy = metrics["eval/masked_accuracy"]
                m = report.oracle_comparison(
                    fv.workdir, task, batch, preds, accuracy, int(state.step)
                )
                print("  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()), flush=True)
                if m["eval/model_minus_oracle"] > 2 * m["eval/model_minus_oracle_stderr"]:
                    print(
                        "WARNING: the model beats the oracle beyond its uncertainty: the oracle "
                        "is wrong for this configuration",
                        flush=True,
                    )
            if fv.oracle_curve:
                counts = oracle_curve.visible_counts(fv, task)
                oracle_curve.run_curve(
                    fv, task, predict, state.params, int(state.step), fv.workdir, counts
                )
            if fv.samples:
                counts = sample.sample_counts(fv, task)
                sample.run_samples(
                    fv, task, predict, state.params, int(state.step), fv.workdir, counts
                )

        common.train_run(fv, task, model_cfg, train_cfg, run_info=run_info, on_eval=on_eval)


if __name__ == "__main__":
    common.run(define_flags, main)
