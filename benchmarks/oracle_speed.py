"""The oracle's speed and its likelihood's values, this tree against a git revision, in one run.

python -m benchmarks.oracle_speed [--against=510c607] [--scenes=rect,rotated,rects,junction]
    [--examples=6] [--visible=19]

For each scene: the same held-out examples (made here, passed to both) through
oracle.posterior_predictive one example a call (the first call compiles and is not timed),
examples/s and the median / minimum measured ESS of each tree, and their ratio; and the
scene's coverage of 256 prior shapes at 24 points each, both trees: the largest difference
and the share of equal tokens (the exact likelihood must not change a value), and the time of
one compiled coverage of 64 shapes x 24 points. The revision
runs in a `git worktree` in a subprocess, with only the API both trees share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SCENES = {  # name -> options; rects with 1-4 rectangles is a mixture here, 2 fixed at the ref
    "rect": {},
    "rotated": {},
    "rects": {"num_rects": 2},
    "junction": {},
}


def measure(folder: str) -> None:
    """In whichever tree is first on sys.path: read folder/in.npz per scene, write out.json."""
    import jax

    import rectbert
    from rectbert.analysis import oracle

    spec = json.load(open(os.path.join(folder, "spec.json")))
    out = {"rectbert": os.path.dirname(rectbert.__file__)}
    for name, opts in spec["scenes"].items():
        scene = rectbert.scene(name, **opts)
        d = np.load(os.path.join(folder, f"{name}.npz"))
        cov = np.asarray(scene.coverage(d["shapes"], d["shape_points"]))
        small = (d["shapes"][:64], d["shape_points"][:64])
        jax.block_until_ready(scene.coverage(*small))  # compiled for this size
        t = time.perf_counter()
        for _ in range(10):
            jax.block_until_ready(scene.coverage(*small))
        coverage_ms = (time.perf_counter() - t) / 10 * 1e3
        np.save(os.path.join(folder, f"{name}_{spec['tag']}_coverage.npy"), cov)
        times, ess = [], []
        n = spec["examples"][name] + 1  # the first call compiles
        for e in range(n):
            t = time.perf_counter()
            args = (d["points"][e : e + 1], d["tokens"][e : e + 1], d["visible"][e : e + 1])
            try:
                _, s = oracle.posterior_predictive(
                    jax.random.key(e), *args, d["centroids"], scene, oracle.OracleConfig()
                )
            except ValueError:  # refused there (junction at 510c607): its sampler, called as is
                refused = out.setdefault("refused", [])
                refused += [] if name in refused else [name]
                keys = jax.random.split(jax.random.key(e), 1)
                cfg = oracle.OracleConfig()
                s = oracle._posterior(keys, *args, d["centroids"], scene, cfg)[1]
            ess.append(float(np.asarray(s)[0]))  # waits for the result (async dispatch)
            times.append(time.perf_counter() - t)
            print(f"  {spec['tag']} {name}: example {e} {times[-1]:.1f} s", flush=True)
        out[name] = {"per_example_s": times[1:], "ess": ess[1:], "coverage_ms": coverage_ms}
    json.dump(out, open(os.path.join(folder, f"{spec['tag']}.json"), "w"))


def prepare(folder: str, examples: int, visible: int, junction_examples: int) -> dict:
    import jax

    import rectbert
    from rectbert.analysis import oracle_curve
    from rectbert.data import tasks
    from rectbert.data.scene_tasks import SparseTask

    counts = {}
    for name, opts in SCENES.items():
        scene = rectbert.scene(name, **opts)
        n = examples + 1  # the first compiles
        task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=n, seed=1)
        task = task.with_codebook(task.fit_codebook()[0])
        b = oracle_curve.held_out(task, visible, n)
        shapes = np.asarray(scene.sample(jax.random.key(3), 256))
        pts = np.asarray(jax.random.uniform(jax.random.key(4), (256, 24, 2)) * scene.size)
        np.savez(
            os.path.join(folder, f"{name}.npz"),
            points=np.asarray(b.points),
            tokens=np.asarray(b.tokens),
            visible=~np.asarray(b.mask),
            centroids=np.asarray(task.codebook),
            shapes=shapes,
            shape_points=pts.astype(np.float32),
        )
        counts[name] = junction_examples if name == "junction" else examples
    return counts


def main(argv) -> None:
    from absl import flags

    from benchmarks import usage

    FLAGS = flags.FLAGS
    del argv  # none (usage.run)
    names = usage.names("scenes", FLAGS.scenes, SCENES)
    usage.integer("examples", FLAGS.examples, 1, 1000)
    usage.integer("junction_examples", FLAGS.junction_examples, 1, 1000)
    usage.integer("visible", FLAGS.visible, 1, 24)
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()
    rev = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{FLAGS.against}^{{commit}}"],
        capture_output=True,
        text=True,
        cwd=root,
    )
    if rev.returncode:
        raise usage.refuse("against", FLAGS.against, "a git revision of this repository")
    folder = tempfile.mkdtemp(prefix="oracle_speed_")
    tree = os.path.join(folder, "tree")
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", tree, FLAGS.against], cwd=root, check=True
    )
    try:
        counts = prepare(folder, FLAGS.examples, FLAGS.visible, FLAGS.junction_examples)
        for tag, path in (("ours", root), ("ref", tree)):
            spec = {"scenes": {n: SCENES[n] for n in names}, "examples": counts, "tag": tag}
            json.dump(spec, open(os.path.join(folder, "spec.json"), "w"))
            env = dict(os.environ, PYTHONPATH=path)
            code = f"import sys; sys.path.insert(0, {path!r}); " + (
                f"sys.path.insert(1, {os.path.dirname(__file__)!r}); "
                f"import oracle_speed; oracle_speed.measure({folder!r})"
            )
            subprocess.run([sys.executable, "-c", code], env=env, cwd=path, check=True)
        report(folder, names, FLAGS.against, FLAGS.visible)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=root, check=False)


def report(folder: str, names, against: str, visible: int) -> None:
    from rectbert.geometry import codebook

    ours, ref = (json.load(open(os.path.join(folder, f"{t}.json"))) for t in ("ours", "ref"))
    assert ours["rectbert"] != ref["rectbert"], "both runs imported the same tree"
    print(f"oracle at {visible} visible, per example (compile excluded); ours vs {against}")
    for name in names:
        a, b = ours[name], ref[name]
        speed_a, speed_b = 1 / np.mean(a["per_example_s"]), 1 / np.mean(b["per_example_s"])
        cov = [np.load(os.path.join(folder, f"{name}_{t}_coverage.npy")) for t in ("ours", "ref")]
        cents = np.load(os.path.join(folder, f"{name}.npz"))["centroids"]
        tok = [np.asarray(codebook.quantise(c, cents)) for c in cov]
        print(
            f"SUMMARY {name}: {speed_a:.2f} vs {speed_b:.2f} examples/s ({speed_a / speed_b:.2f}x,"
            f" {len(a['ess'])} / {len(b['ess'])} examples); ESS median {np.median(a['ess']):.0f}"
            f" vs {np.median(b['ess']):.0f}, min {min(a['ess']):.0f} vs {min(b['ess']):.0f}; "
            f"coverage of 64 x 24 points {a['coverage_ms']:.2f} vs {b['coverage_ms']:.2f} ms, "
            f"max |diff| {np.abs(cov[0] - cov[1]).max():.1e}, tokens equal "
            f"{np.mean(tok[0] == tok[1]):.4f}"
            + (
                f" ({against} refuses {name}: its sampler called directly)"
                if name in ref.get("refused", [])
                else ""
            )
        )


if __name__ == "__main__":
    from absl import flags

    from benchmarks import usage

    flags.DEFINE_string("against", "510c607", "The git revision to time against.")
    flags.DEFINE_list("scenes", list(SCENES), f"Scenes of {list(SCENES)}.")
    flags.DEFINE_integer("examples", 6, "Held-out examples timed per scene (one a call).")
    flags.DEFINE_integer("junction_examples", 2, "The same for junction (slow at the ref).")
    flags.DEFINE_integer("visible", 19, "Visible points of each example (of 24).")
    usage.run(main)
