"""Inpaint shapes on the 16x16 grid of 169 overlapping 4x4 patch tokens (k-means codebook).

python -m experiments.grid --flagfile=experiments/flags/grid_quick.flags
"""

from __future__ import annotations

from absl import flags

from experiments import common, sample
from rectbert.analysis import report
from rectbert.data.scene_tasks import GridTask
from rectbert.training import evaluation

DEFAULTS = dict()  # the engine's defaults (common.define_train_flags) hold for the grid


def define_flags(fv) -> None:
    common.define_scene_flags(fv)
    common.define_codebook_flags(fv)
    flags.DEFINE_integer(
        "num_train_rects", 100, "Fixed training shapes; 0: fresh every step.", flag_values=fv
    )
    sample.define_experiment_flags(fv)
    common.define_train_flags(fv, "grid", **DEFAULTS)


def build(fv):
    """(task, model config, training config) from the flags: validation only."""
    task = common.task(GridTask, fv, scene=common.scene(fv))
    if fv.samples:
        sample.sample_counts(fv, task)
    return (task, *common.configs(fv, task, num_examples=task.num_train))


def main(fv) -> None:
    task, model_cfg, train_cfg = build(fv)
    with common.start(fv, task, model_cfg, train_cfg, codebook=True) as task:
        n = task.num_train
        regime = f"{n} fixed shapes" if n else "fresh shapes every step"
        title = f"grid: {task.scene.name}, {regime}, {task.mask.count} of 169 tokens masked"

        def on_eval(state, batch, preds, metrics, final):
            if not final:
                return
            report.grid_figures(fv.workdir, task, batch, preds, title)
            if fv.samples:
                counts = sample.sample_counts(fv, task)
                predict = evaluation.make_predict(model_cfg)
                sample.run_samples(
                    fv, task, predict, state.params, int(state.step), fv.workdir, counts
                )

        common.train_run(fv, task, model_cfg, train_cfg, on_eval=on_eval)


if __name__ == "__main__":
    common.run(define_flags, main)
