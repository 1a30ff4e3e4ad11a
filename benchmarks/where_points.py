"""Where the points fall, measured: one quick flagfile trained and evaluated with each point
sampler (or as it is), over seeds, and the table of held-out and unseen accuracy beside the
baselines computed on the same points.

python -m benchmarks.where_points \
    --flagfile_run=experiments/flags/sparse_glyph_junctions_quick.flags \
    [--samplers=uniform,near,strokes,junctions] [--seeds=0,1,2] [--root=runs/where_points]

Each (sampler, seed) is `python -m experiments.sparse --flagfile=<it> --point_sampler=<sampler>
--seed=<seed> --workdir=<root>/<flagfile>/<sampler>/seed<seed>` (--samplers= empty: the
flagfile's own sampler, e.g. an occlusion run; --query_points=<q>: every run's hidden points
from q, so the rows differ only in where the model sees the drawing). The command runs each
time: a killed run resumes, a finished one is evaluated again, and one made with other
settings is refused by it. The samplers are checked against the flagfile's scene first,
before any run. Then one row per
sampler: held-out masked accuracy, the nearest-visible and majority baselines on the same
points, the unseen set's accuracy and nearest baseline where the scene holds drawings out,
each mean +- sd over the seeds; model - nearest, unseen - held-out and (after the first
sampler) the unseen accuracy's difference from the first sampler's, paired by seed: mean +-
its standard error. --figure=<png>: one held-out drawing of the first run seen by each
sampler, its junctions ringed (docs/figures/kanji_samplers.png).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from absl import flags

from benchmarks import usage
from rectbert.training import metrics

FLAGS = flags.FLAGS
KEYS = {  # column -> metric (the last evaluation's)
    "held-out": "eval/masked_accuracy",
    "nearest": "eval/nearest_accuracy",
    "majority": "eval/majority_accuracy",
    "unseen": "eval/unseen_masked_accuracy",
    "unseen nearest": "eval/unseen_nearest_accuracy",
}


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_string("flagfile_run", "", "The quick flagfile each run starts from.")
    flags.DEFINE_list("samplers", ["uniform", "near", "strokes", "junctions"], "Point samplers.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, one run each.")
    flags.DEFINE_string("root", "runs/where_points", "Where the runs' workdirs go.")
    flags.DEFINE_string(
        "query_points", "", "The hidden points' sampler of every run ('': each its own)."
    )
    flags.DEFINE_string(
        "figure", "", "Also draw one held-out drawing seen by each sampler, as this PNG."
    )


def flagfile_values(path: str) -> dict[str, str]:
    """The flagfile's --name=value lines, as text."""
    out = {}
    for line in open(path, encoding="utf-8").read().splitlines():
        if line.startswith("--") and "=" in line:
            name, value = line[2:].split("=", 1)
            out[name] = value
    return out


def check(flagfile: str, samplers, seeds, query: str = ""):
    """(samplers, seeds) from the flags, or a usage.Error naming the flag, before any run: the
    samplers must be ones the flagfile's scene serves (none beside its --occlude)."""
    from rectbert import config, scenes
    from rectbert.data import points

    if not flagfile or not os.path.isfile(flagfile):
        raise usage.refuse("flagfile_run", flagfile, "a flagfile of experiments.sparse")
    text = flagfile_values(flagfile)
    name = text.get("scene", "rect")
    try:
        opts = {
            f.name: config.from_text(f, text[f.name])
            for f in scenes.options(scenes.SCENES[name])
            if f.name in text
        }
        scene = scenes.scene(name, **opts)
    except (KeyError, ValueError) as e:
        raise usage.refuse(
            "flagfile_run", flagfile, f"a flagfile whose scene is made ({e})"
        ) from None
    served = [n for n, x in points.SAMPLERS.items() if x.supports(scene)]
    bad = [x for x in samplers if x not in served]
    if bad or len(set(samplers)) != len(samplers):
        raise usage.refuse("samplers", samplers, f"distinct names of {served} ({name} serves)")
    if samplers and text.get("occlude"):
        raise usage.refuse("samplers", samplers, "empty with the flagfile's --occlude")
    if query and query not in served:
        raise usage.refuse("query_points", query, f"one of {served}, or empty")
    got = usage.integers("seeds", seeds, 0)
    if len(set(got)) != len(got):
        raise usage.refuse("seeds", seeds, "distinct seeds (one run each)")
    return tuple(samplers) or ("",), got


def last_eval(workdir: str) -> dict | None:
    """The last row holding an evaluation, when the run reached its last step; else None."""
    try:
        rows = metrics.read(workdir)
    except Exception:  # noqa: BLE001 (no run yet, or a torn one: run it again)
        return None
    evals = [r for r in rows if "eval/masked_accuracy" in r]
    steps = [int(r["step"]) for r in rows]
    return evals[-1] if evals and steps and int(evals[-1]["step"]) == max(steps) else None


def run_one(flagfile: str, sampler: str, seed: int, workdir: str, query: str = "") -> dict:
    """The run's last evaluation. The command runs every time: it trains, resumes a killed
    run, or re-evaluates a finished one, and refuses a workdir made with other settings."""
    cmd = [sys.executable, "-m", "experiments.sparse", f"--flagfile={flagfile}"]
    cmd += [f"--seed={seed}", f"--workdir={workdir}"]
    cmd += [f"--point_sampler={sampler}"] if sampler else []
    cmd += [f"--query_points={query}"] if query else []
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode:
        raise usage.Error(f"{' '.join(cmd[2:])} failed (its error above)")
    return last_eval(workdir)


def mean_sd(x) -> str:
    """The mean ± sd over seeds (the mean alone for one)."""
    x = np.asarray(x, np.float64)
    return f"{x.mean():.3f}" + (f" ± {x.std(ddof=1):.3f}" if x.size > 1 else "")


def paired(a, b) -> str:
    """The mean of the per-seed differences ± its standard error (the mean alone for one)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    se = f" ± {d.std(ddof=1) / np.sqrt(d.size):.3f}" if d.size > 1 else ""
    return f"{d.mean():+.3f}{se}"


def table(results: dict) -> str:
    """Markdown: one row per sampler, results[sampler] a list of last-eval rows (one a seed).
    Differences are paired by seed: model − nearest on the same points, unseen − held-out
    (the same run), unseen − the first row's unseen (the same seeds' shapes)."""
    first = next(iter(results.values()))
    cols = [c for c, k in KEYS.items() if all(k in r for r in first)]
    unseen = "unseen" in cols
    head = ["points", *cols, "model − nearest"]
    head += ["unseen − held-out"] if unseen else []
    head += ["unseen − first"] if unseen and len(results) > 1 else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in results.items():
        got = {c: [r[KEYS[c]] for r in rows] for c in cols}
        cells = [name or "(the flagfile's)", *(mean_sd(got[c]) for c in cols)]
        cells.append(paired(got["held-out"], got["nearest"]))
        if unseen:
            cells.append(paired(got["unseen"], got["held-out"]))
        if unseen and len(results) > 1:
            base = [r[KEYS["unseen"]] for r in first]
            cells.append("—" if rows is first else paired(got["unseen"], base))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(workdir: str, samplers, path: str) -> str:
    """A held-out shape of a finished run's task (of the first 16, the one with the most
    junctions, where it has them), its points from each sampler (the run's junction
    settings) over its image, its junctions ringed."""
    import jax

    import rectbert
    from rectbert.data import points
    from rectbert.viz import panels

    task = rectbert.load_run(workdir).task()
    scene, shape = task.scene, task.eval_params[:1]
    if points.get("junctions").supports(scene):  # of the first 16, the one with the most
        valid = scene.junction_points(task.eval_params[:16], task.corner_angle)[1]
        e = int(np.argmax(np.asarray(valid).sum(-1)))
        shape = task.eval_params[e : e + 1]
    key = jax.random.key(task.seed)
    columns = [
        (name, np.asarray(points.sample(name, key, scene, shape, task.num_points, opts))[0])
        for name, opts in [(s, task.point_options) for s in samplers]
    ]
    junctions = np.zeros((0, 2))
    if points.get("junctions").supports(scene):
        pts, valid = scene.junction_points(shape, task.corner_angle)
        junctions = np.asarray(pts)[0][np.asarray(valid)[0]]
    image = np.asarray(scene.rasterise(shape))[0]
    title = f"{scene.name}: {task.num_points} points from each sampler, junctions ringed"
    return panels.point_samplers(image, junctions, columns, path, title=title)


def study(flagfile: str, samplers, seeds, root: str, query: str = "", figure_path: str = ""):
    """Every (sampler, seed) run, then the table (and the figure); returns the table."""
    samplers, seeds = check(flagfile, samplers, seeds, query)
    name = os.path.splitext(os.path.basename(flagfile))[0]
    name += f"_query_{query}" if query else ""
    results = {
        s: [
            run_one(flagfile, s, k, os.path.join(root, name, s or "own", f"seed{k}"), query)
            for k in seeds
        ]
        for s in samplers
    }
    text = table(results)
    print(f"\n{name}, seeds {', '.join(map(str, seeds))}:\n\n{text}", flush=True)
    if figure_path and samplers != ("",):
        first = os.path.join(root, name, samplers[0], f"seed{seeds[0]}")
        print(f"\n{figure(first, samplers, figure_path)}")
    return text


def main(argv):
    del argv
    study(
        FLAGS.flagfile_run, FLAGS.samplers, FLAGS.seeds, FLAGS.root, FLAGS.query_points,
        FLAGS.figure,
    )  # fmt: skip


if __name__ == "__main__":
    define_flags()
    usage.run(main)
