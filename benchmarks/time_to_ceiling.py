"""Time to the ceiling: how long a sparse configuration trains to reach 95, 98, 99 and 99.5 %
of the Bayes-optimal oracle's accuracy.

python -m benchmarks.time_to_ceiling [--configs=default,before] [--setting=embed_dim=96 ...]
                                     [--validation_examples=2048] [--eval_every=250] [--json=F]

Each configuration is a dict of the sparse recipe's settings (CONFIGS, or --setting as the
configuration "custom"), built exactly as `python -m experiments.sparse` builds it. It
trains from scratch; every --eval_every steps the clock stops and the model is scored on a
*validation* set drawn from its own key (keys purpose "validation": never the held-out set,
never a training batch). The first evaluation at or above a fraction of the oracle's
validation accuracy gives that fraction's time (the first crossing: with ~0.3 points of
evaluation noise, the 99 and 99.5 % crossings are early by about that much), with
compilation of the train step included and excluded; evaluation time, the codebook fit and
building the sets are outside the clock, so an experiment's wall is longer by those. The
held-out set (the experiments' 512 examples) is scored only at the end: its numbers are
reported, never used to choose; its oracle is a draw of its own (key fold 7), so it differs
from `--eval_oracle`'s by up to its standard error (0.9047 here against 0.9062 ± 0.006).
Any-count tasks (--mask_schedule=anycount) are scored at each of --visible; a fraction is
reached when every count has reached it (the held-out numbers are at the task's own count
only).

Also per configuration: the train step's FLOPs (XLA's cost analysis of the compiled step),
its achieved FLOP/s against this device's measured matmul peak, and the share of a step that
is dispatch (an empty jitted call on the same state). The oracle's predictions are cached
in --cache_dir (they cost a minute per thousand examples on a CPU and never change).
The last line is one summary per configuration.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import numpy as np
from absl import flags

from benchmarks import ceiling_sets, usage
from benchmarks.ceiling_configs import CONFIGS
from benchmarks.peak import matmul_peak_tflops
from rectbert import config
from rectbert.geometry import shapes
from rectbert.model import losses
from rectbert.recipes import common, sparse
from rectbert.training import engine, evaluation

FRACTIONS = (0.95, 0.98, 0.99, 0.995)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_list("configs", ["default"], f"Configurations to time: {', '.join(CONFIGS)}.")
    flags.DEFINE_multi_string(
        "setting", [], "name=value: also time the sparse recipe with these settings, as 'custom'."
    )
    flags.DEFINE_integer("validation_examples", 2048, "Validation examples (own key).")
    flags.DEFINE_integer("eval_every", 250, "Steps between validation evaluations.")
    flags.DEFINE_list("visible", ["2", "8", "19"], "Visible counts scored for any-count tasks.")
    flags.DEFINE_string("cache_dir", "runs/time_to_ceiling", "Where the oracle's predictions go.")
    flags.DEFINE_string("json", "", "Also write every measurement to this JSON file.")
    flags.DEFINE_integer(
        "interleaved_rounds", 5, "Rounds of the configurations' steps timed in turn (0: none)."
    )


def build(settings: dict, codebook: bool = True):
    """(task, model config, train config) as the sparse experiment builds them from these
    settings (a ConfigError for a bad one, before any compute); the task with its codebook
    when asked."""
    run = sparse.build(common.values(sparse, **settings)).run
    task = (
        run.task.with_codebook(ceiling_sets.codebook(run.task, FLAGS.cache_dir))
        if codebook
        else run.task
    )
    return task, run.model, run.train


def parse_settings(items: list[str]) -> dict:
    """name=value pairs as the sparse recipe's settings, each read as its field says."""
    known, out = common.fields(sparse), {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in known:
            raise usage.refuse("setting", item, "name=value, a setting of the sparse recipe")
        try:
            out[name] = config.from_text(known[name], text)
        except (ValueError, OverflowError):
            raise usage.refuse("setting", item, f"{name} must be {_kind(known[name])}") from None
    return out


def _kind(f) -> str:
    """What a setting's text must be (config.from_text's kinds), as a flag's error says it."""
    kind = f.metadata.get("kind")
    lists = {"counts": "whole numbers 'a,b,...'", "range": "two numbers 'lo,hi', or empty"}
    if kind in lists:
        return lists[kind]
    if isinstance(f.default, bool):
        return "true or false"
    return "an integer" if kind == "int" or isinstance(f.default, int) else "a number"


def check(configs, settings, visible, validation_examples, eval_every, rounds):
    """(the configurations to time, the visible counts) from the flags' values, or a
    usage.Error naming the flag, before any compute: every configuration is built (with the
    oracle's checks) as the sparse experiment would."""
    allowed = f"names from {list(CONFIGS)} (at least one, or a --setting)"
    if any(c not in CONFIGS for c in configs) or not (configs or settings):
        raise usage.refuse("configs", configs, allowed)
    usage.integer("validation_examples", validation_examples, 64, 2**20)
    usage.integer("eval_every", eval_every, 1)
    usage.integer("interleaved_rounds", rounds, 0, 10**4)
    counts = usage.integers("visible", visible, 1)
    todo = {c: CONFIGS[c] for c in configs}
    if settings:
        todo["custom"] = parse_settings(settings)
    for name, values in todo.items():
        try:
            task = build({**values, "eval_oracle": True}, codebook=False)[0]
        except (ValueError, KeyError) as e:  # a ConfigError names its field's flag
            said = f"--{e.flag} must be {e.allowed}" if isinstance(e, config.ConfigError) else e
            if name != "custom":
                raise usage.Error(f"configuration {name}: {said}") from None
            raise usage.refuse("setting", settings, str(said)) from None
        if task.mask.schedule != "fixed" and not all(v < task.seq_len for v in counts):
            allowed = f"counts in [1, {task.seq_len - 1}] ({name} is any-count)"
            raise usage.refuse("visible", visible, allowed)
    return todo, counts


def dispatch_seconds(state, calls: int = 200) -> float:
    """Median wall time of an empty jitted call that takes and returns the whole state."""
    f = jax.jit(lambda s, i: (s, i + 1), donate_argnums=0)
    state, _ = f(state, np.int32(0))
    times = []
    for i in range(calls):
        t = time.perf_counter()
        state, r = f(state, np.int32(i))
        jax.block_until_ready(r)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_step_ms(todo: dict, rounds: int, steps: int = 20) -> dict:
    """name -> median ms of a train step, each configuration timed in turn for `steps` steps,
    `rounds` times over: a machine whose speed drifts over minutes (this VM's does, by up to
    2x) slows them all alike, so these ratios hold where sequential runs' walls do not."""
    runs = {}
    for name, settings in todo.items():
        task, model_cfg, cfg = build(settings)
        state, step_fn = engine.build(task, model_cfg, cfg)
        compiled = step_fn.lower(state, np.int32(0)).compile()
        runs[name] = [compiled, jax.block_until_ready(compiled(state, np.int32(0))[0])]
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            compiled, state = run
            t = time.perf_counter()
            for i in range(steps):
                state, _ = compiled(state, np.int32(i))
            run[1] = jax.block_until_ready(state)
            times[name].append((time.perf_counter() - t) / steps)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


def _said(settings: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items()) or "(defaults)"


def time_config(name: str, settings: dict, peak_flops: float) -> dict:
    task, model_cfg, cfg = build(settings)
    visible = tuple(map(int, FLAGS.visible))
    sets = ceiling_sets.validation_sets(task, FLAGS.validation_examples, visible)

    def oracle_right(n, batch):  # cached: a run a timeout stops still leaves it there
        pred = ceiling_sets.oracle_predictions(task, n, batch, FLAGS.cache_dir)
        return ceiling_sets.right(pred, batch)

    def model_right(params, batch):
        return ceiling_sets.right(evaluation.evaluate(predict, params, batch, 512)[1], batch)

    oracle_acc = {n: float(oracle_right(n, b).mean()) for n, b in sets.items()}
    held_out = jax.jit(task.eval_set)()
    oracle_held_out = oracle_right("held_out", held_out)  # before training (see above)
    predict = evaluation.make_predict(model_cfg)
    print(
        f"{name}: {_said(settings)}; {cfg.num_steps} steps of batch "
        f"{cfg.batch_size}; oracle " + ", ".join(f"{n} {a:.4f}" for n, a in oracle_acc.items()),
        flush=True,
    )
    state, compiled, compile_s, flops = _compiled(task, model_cfg, cfg)

    def accuracies(params) -> dict:
        return {n: float(model_right(params, b).mean()) for n, b in sets.items()}

    accuracies(state.params)  # compile the evaluation outside the clock
    state, curve, reached, train_s = _train(compiled, state, cfg, accuracies, oracle_acc, compile_s)
    step_s = train_s / cfg.num_steps
    held = model_right(state.params, held_out)
    diff, diff_se = losses.paired_difference(held, oracle_held_out)
    row = {
        "name": name,
        "settings": settings,
        "steps": cfg.num_steps,
        "batch": cfg.batch_size,
        "compile_s": compile_s,
        "train_s": train_s,
        "step_ms": 1e3 * step_s,
        "dispatch_share": dispatch_seconds(state) / step_s,  # donates the state: last
        "step_flops": flops,
        "flops_per_s": flops / step_s,
        "of_peak": flops / step_s / peak_flops,
        "oracle_validation": oracle_acc,
        "reached": {str(f): r for f, r in reached["all"].items()},
        "reached_by_set": {n: {str(f): r for f, r in v.items()} for n, v in reached.items()},
        "held_out": float(held.mean()),
        "oracle_held_out": float(oracle_held_out.mean()),
        "held_out_ratio": float(held.mean() / oracle_held_out.mean()),
        "held_out_minus_oracle": diff,
        "held_out_minus_oracle_stderr": diff_se,
        # per hidden held-out token, 1 right: rows of one run compare paired (paired())
        "held_out_right": "".join(str(int(r)) for r in held),
        "curve": curve,
        "edge": edge_split(held, oracle_held_out, held_out, model_cfg),
    }
    report(row)
    return row


def report(row: dict) -> None:
    """A finished configuration's lines: per set where there are several, the held-out
    split by distance to the edge, the summary."""
    sets, counts = row["reached_by_set"], row["oracle_validation"]
    for n in counts if len(counts) > 1 else ():
        when = ", ".join(f"{100 * f:g}% {_when(sets.get(n, {}), f)}" for f in FRACTIONS)
        print(f"  {n}: {when}", flush=True)
    e = row["edge"]
    print(
        f"  held-out within a lattice unit of the points' region's edge ({e['near_tokens']} "
        f"tokens): model / oracle {e['near_ratio']:.4f}; inside ({e['far_tokens']}): "
        f"{e['far_ratio']:.4f}",
        flush=True,
    )
    print(f"  {summary(row)}", flush=True)


def edge_split(model_right_N, oracle_right_N, batch, model_cfg) -> dict:
    """Model / oracle for the held-out hidden tokens whose point lies within one lattice unit
    of the points' region's edge (there its window reaches the canvas's edge), and for the
    others: where the canvas shapes the prior (a shape lies inside it), a model without
    absolute positions cannot see it."""
    lo, hi = shapes.point_bounds()
    points = np.asarray(batch.points)[np.asarray(batch.mask)]  # the order right() uses
    to_edge = np.minimum(points - lo, hi - points).min(-1)
    near = to_edge < model_cfg.unit
    out = {}
    for name, where in (("near", near), ("far", ~near)):
        n = int(where.sum())
        m, o = model_right_N[where].mean(), oracle_right_N[where].mean()
        out |= {f"{name}_tokens": n, f"{name}_ratio": float(m / o) if n and o else float("nan")}
    return out


def _compiled(task, model_cfg, cfg):
    """(initial state, the compiled train step, its compile seconds, its FLOPs per step)."""
    t0 = time.perf_counter()
    state, step_fn = engine.build(task, model_cfg, cfg)
    compiled = step_fn.lower(state, np.int32(0)).compile()
    jax.block_until_ready(state)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return state, compiled, time.perf_counter() - t0, float(cost.get("flops", float("nan")))


def _train(compiled, state, cfg, accuracies, oracle_acc: dict, compile_s: float):
    """(state, curve, first crossings per set and "all", training seconds): the clock runs
    for the steps only, stopped at each --eval_every evaluation."""
    curve, reached, train_s = [], {"all": {}}, 0.0
    t = time.perf_counter()
    for step in range(cfg.num_steps):
        state, _ = compiled(state, np.int32(step))
        done = step + 1
        if done % FLAGS.eval_every and done != cfg.num_steps:
            continue
        jax.block_until_ready(state)
        train_s += time.perf_counter() - t
        acc = accuracies(state.params)
        ratios = {n: acc[n] / oracle_acc[n] for n in acc}
        ratio = min(ratios.values())
        curve.append({"step": done, "train_s": train_s, "accuracy": acc, "ratio": ratio})
        for n, r in [*ratios.items(), ("all", ratio)]:  # "all": every set (count) there
            for f in FRACTIONS:
                if r >= f and f not in reached.setdefault(n, {}):
                    reached[n][f] = {"step": done, "s_excl": train_s, "s_incl": train_s + compile_s}
        shown = "  ".join(f"{n} {a:.4f}" for n, a in acc.items())
        print(f"  step {done}  {train_s:6.1f} s  {shown}  model/oracle {ratio:.4f}", flush=True)
        t = time.perf_counter()
    return state, curve, reached, train_s


def _when(reached: dict, f: float) -> str:
    r = reached.get(str(f))
    return f"{r['s_incl']:.0f}/{r['s_excl']:.0f} s" if r else "not reached"


def summary(row: dict) -> str:
    interleaved = ""
    if "step_ms_interleaved" in row:
        interleaved = (
            f"; timed in turn: step {row['step_ms_interleaved']:.1f} ms, so "
            + ", ".join(f"{100 * float(f):g}% {t:.0f} s" for f, t in row["interleaved_s"].items())
            + " incl. compile"
        )
    return (
        f"{row['name']}: "
        + ", ".join(f"{100 * f:g}% {_when(row['reached'], f)}" for f in FRACTIONS)
        + f" (incl./excl. compile {row['compile_s']:.1f} s); trained {row['train_s']:.0f} s, "
        f"held-out {row['held_out']:.4f} vs oracle {row['oracle_held_out']:.4f} = "
        f"{row['held_out_ratio']:.4f} (paired {100 * row['held_out_minus_oracle']:+.2f} +- "
        f"{100 * row['held_out_minus_oracle_stderr']:.2f} pt); step {row['step_ms']:.1f} ms, "
        f"{row['flops_per_s'] / 1e9:.1f} GFLOP/s = {row['of_peak']:.1%} of peak, dispatch "
        f"{row['dispatch_share']:.1%} of a step{interleaved}"
    )


def write_json(device: str, peak: float, rows: list[dict]) -> None:
    if FLAGS.json:
        tmp = f"{FLAGS.json}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"device": device, "peak_flops": peak, "rows": rows}, f, indent=1)
        os.replace(tmp, FLAGS.json)


def main(argv):
    del argv  # none (usage.run)
    todo, _ = check(
        FLAGS.configs,
        FLAGS.setting,
        FLAGS.visible,
        FLAGS.validation_examples,
        FLAGS.eval_every,
        FLAGS.interleaved_rounds,
    )
    usage.folder("cache_dir", FLAGS.cache_dir)
    usage.output("json", FLAGS.json)
    peak = 1e12 * max(matmul_peak_tflops(d) for d in ("float32", "bfloat16"))
    device = jax.devices()[0].device_kind
    print(f"{device} ({jax.default_backend()}), matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for name, settings in todo.items():
        rows.append(time_config(name, settings, peak))
        write_json(device, peak, rows)  # after each: a run stopped later keeps these
    if FLAGS.interleaved_rounds and len(rows) > 1:
        step_ms = interleaved_step_ms(todo, FLAGS.interleaved_rounds)
        for row in rows:  # the walls the steps to each fraction would take at these speeds
            row["step_ms_interleaved"] = ms = step_ms[row["name"]]
            row["interleaved_s"] = {
                f: row["compile_s"] + r["step"] * ms / 1e3 for f, r in row["reached"].items()
            }
    write_json(device, peak, rows)
    for row in rows:
        print(f"summary: {summary(row)}", flush=True)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
