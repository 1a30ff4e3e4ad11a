"""The sparse experiment (the write-up's open problem): hidden tokens predicted at continuous
points of shapes, from the visible points' tokens; then, on request, the model against the
Bayes-optimal oracle (--eval_oracle, --oracle_curve) and its joint samples (--samples)."""

from __future__ import annotations

import dataclasses

from rectbert import config
from rectbert.analysis import oracle_curve, report
from rectbert.analysis.oracle_curve import CurveConfig
from rectbert.analysis.samples import figure as samples_figure
from rectbert.analysis.samples.settings import ScoreConfig
from rectbert.data.sparse_task import SparseTask
from rectbert.recipes import common
from rectbert.training import evaluation, train
from rectbert.training.engine import RunConfig
from rectbert.warn import warn

NAME = "sparse"
SCENES = True
SETTINGS = (*common.TRAINING, SparseTask, report.SparseReport, CurveConfig, ScoreConfig)
DEFAULTS = {  # a CPU-sized run that generalises (docs: experiments); the fields' for the rest
    **common.TRAINING_DEFAULTS,
    "workdir": "runs/sparse",
    "position": "sincos",
    "attention": "context",
    "embed_dim": 64,
    "mlp_dim": 128,
    "num_layers": 3,
    "num_steps": 6000,
    "learning_rate": 3e-3,  # benchmarks/time_to_ceiling.py: the fastest to the oracle here
    "eval_every": 1000,
}
FIXED: dict = {}


@dataclasses.dataclass(frozen=True)
class Plan:
    run: RunConfig
    workdir: str
    profile: tuple[int, int] | None
    report: report.SparseReport
    curve: CurveConfig
    samples: ScoreConfig


def regime(num_train: int, fixed_points: bool) -> str:
    if not num_train:
        return "fresh shapes every step"
    return f"{num_train} fixed shapes" + (", fixed points" if fixed_points else "")


def build(v: dict) -> Plan:
    output = config.build(common.OutputSettings, v)
    info = {"regime": regime(v["num_train_rects"], v["fixed_points"])}
    run = common.run_config(SparseTask, v, scene=common.scene(v), info=info)
    rep, curve = config.build(report.SparseReport, v), config.build(CurveConfig, v)
    samples = config.build(ScoreConfig, v)
    rep.check(run.task)
    # an analysis's settings are checked when it runs, and when given even if it does not
    if rep.oracle_curve or curve != CurveConfig():
        curve.counts(run.task, oracle_needed=rep.oracle_curve)
    if rep.samples or samples != ScoreConfig():
        samples.counts(run.task, scoring=rep.samples)
    return Plan(run, output.workdir, output.window(run.train.num_steps), rep, curve, samples)


def main(plan: Plan, files: dict | None = None) -> None:
    task, model = plan.run.task, plan.run.model
    title = (
        f"sparse: {task.scene.name}, {plan.run.info['regime']}, {task.sampler} points, "
        f"{model.position} positions, {model.attention} attention"
    )
    predict = evaluation.make_predict(model)

    def on_eval(ev: train.Evaluation) -> None:
        if not ev.final:
            return
        args = (ev.task, predict, ev.params, ev.batch, ev.preds)
        report.sparse_figures(plan.workdir, *args, title, plan.report.dense_spacing)
        if plan.report.eval_oracle:
            compare_with_oracle(plan.workdir, ev)
        if plan.report.oracle_curve:
            oracle_curve.run(ev.task, predict, ev.params, ev.step, plan.workdir, plan.curve)
        if plan.report.samples:
            samples_figure.run(ev.task, predict, ev.params, ev.step, plan.workdir, plan.samples)

    train.train(plan.run, plan.workdir, files=files, on_eval=on_eval, profile_steps=plan.profile)


def compare_with_oracle(workdir: str, ev) -> None:
    accuracy = ev.metrics["eval/masked_accuracy"]
    m = report.oracle_comparison(workdir, ev.task, ev.batch, ev.preds, accuracy, ev.step)
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()), flush=True)
    if m["eval/model_minus_oracle"] > 2 * m["eval/model_minus_oracle_stderr"]:
        warn("the model beats the oracle beyond its uncertainty: the oracle is wrong here")
