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
POINTS = 24  # points of each held-out example (the sparse task's default) and prior shape


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


def prepare(folder: str, names, examples: int, visible: int, junction_examples: int) -> dict:
    """The scenes' held-out examples, codebooks and prior shapes, in folder/<scene>.npz."""
    import jax

    import rectbert
    from rectbert.analysis import oracle_curve
    from rectbert.data import tasks
    from rectbert.data.sparse_task import SparseTask

    counts = {}
    for name in names:
        scene = rectbert.scene(name, **SCENES[name])
        n = examples + 1  # the first compiles
        task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=n, seed=1)
        task = task.with_codebook(task.fit_codebook()[0])
        b = oracle_curve.held_out(task, visible, n)
        shapes = np.asarray(scene.sample(jax.random.key(3), 256))
        pts = np.asarray(jax.random.uniform(jax.random.key(4), (256, POINTS, 2)) * scene.size)
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


def check(scenes, examples: int, junction_examples: int, visible: int, against: str):
    """(the scenes, this repository's root) from the flags' values, or a usage.Error naming
    the flag (before any compute)."""
    from benchmarks import usage

    names = usage.names("scenes", scenes, SCENES)
    usage.integer("examples", examples, 1, 1000)
    usage.integer("junction_examples", junction_examples, 1, 1000)
    said = f" (of {POINTS} points: one hidden at least, or there is nothing to predict)"
    usage.integer("visible", visible, 1, POINTS - 1, said)
    git = dict(capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], **git).stdout.strip()
    rev = ["git", "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}"]
    if not root or subprocess.run(rev, **git).returncode:
        raise usage.refuse("against", against, "a git revision of this repository")
    return names, root


def main(argv) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    del argv  # none (usage.run)
    names, root = check(
        FLAGS.scenes, FLAGS.examples, FLAGS.junction_examples, FLAGS.visible, FLAGS.against
    )
    compare(root, FLAGS.against, names, FLAGS.examples, FLAGS.visible, FLAGS.junction_examples)


def compare(root: str, against: str, names, examples: int, visible: int, junction: int) -> None:
    """Both trees measured and reported, in a temporary folder removed whatever happens (an
    error, an interrupt), the revision's worktree in it."""
    with tempfile.TemporaryDirectory(prefix="oracle_speed_") as folder:
        tree = os.path.join(folder, "tree")
        try:
            add = ["git", "worktree", "add", "--detach", "-q", tree, against]
            subprocess.run(add, cwd=root, check=True)
            counts = prepare(folder, names, examples, visible, junction)
            for tag, path in (("ours", root), ("ref", tree)):
                spec = {"scenes": {n: SCENES[n] for n in names}, "examples": counts, "tag": tag}
                json.dump(spec, open(os.path.join(folder, "spec.json"), "w"))
                env = dict(os.environ, PYTHONPATH=path)
                code = f"import sys; sys.path.insert(0, {path!r}); " + (
                    f"sys.path.insert(1, {os.path.dirname(__file__)!r}); "
                    f"import oracle_speed; oracle_speed.measure({folder!r})"
                )
                subprocess.run([sys.executable, "-c", code], env=env, cwd=path, check=True)
            report(folder, names, against, visible)
        finally:
            remove = ["git", "worktree", "remove", "--force", tree]
            subprocess.run(remove, cwd=root, capture_output=True)


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


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    from absl import flags

    flags.DEFINE_string("against", "510c607", "The git revision to time against.")
    flags.DEFINE_list("scenes", list(SCENES), f"Scenes of {list(SCENES)}.")
    flags.DEFINE_integer("examples", 6, "Held-out examples timed per scene (one a call).")
    flags.DEFINE_integer("junction_examples", 2, "The same for junction (slow at the ref).")
    flags.DEFINE_integer("visible", 19, f"Visible points of each example (of {POINTS}).")


if __name__ == "__main__":
    from benchmarks import usage

    define_flags()
    usage.run(main)
