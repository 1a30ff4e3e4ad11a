"""The oracle's speed and its likelihood's values, this tree against a git revision, in one run.

python -m benchmarks.oracle_speed [--against=0625b10] [--scenes=rect,rotated,rects,junction,
    glyph,kanji,rects-1-4] [--examples=6] [--junction_examples=2] [--drawn_examples=4]
    [--visible=4,19]

For each scene and visible count: the same held-out examples (made here, passed to both)
through oracle.posterior one example a call (the first call compiles and is not timed),
examples/s and the median / minimum measured ESS of each tree, and their ratio; how far the
two trees' answers are apart (the mean total variation of the hidden tokens' predictive and
of p(component | visible), each a Monte Carlo estimate: they agree to within the samplers'
noise, not exactly); and the scene's coverage of 256 prior shapes at 24 points each, both
trees: the largest difference and the share of equal tokens (the exact likelihood must not
change a value), and the time of one compiled coverage of 64 shapes x 24 points. The
revision runs in a `git worktree` in a subprocess, with only the API both trees share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SCENES = {  # what --scenes names -> options (the family: the name, up to a "-")
    "rect": {},
    "rotated": {},
    "rects": {"num_rects": 2},
    "rects-1-4": {"num_rects": 4, "min_rects": 1},  # a mixture of 4 components
    "junction": {},
    "glyph": {},  # the 26 futural capitals: 26 components
    "kanji": {},  # the 30 default kanji: 30 components
}
DRAWN = ("glyph", "kanji")  # slow at the revisions before the screening: fewer examples
POINTS = 24  # points of each held-out example (the sparse task's default) and prior shape


def measure(folder: str) -> None:
    """In whichever tree is first on sys.path: per scene and visible count, the coverage and
    the timed examples (folder/spec.json says which), written to folder/<tag>.json."""

    import rectbert

    spec = json.load(open(os.path.join(folder, "spec.json")))
    out = {"rectbert": os.path.dirname(rectbert.__file__)}
    for name, opts in spec["scenes"].items():
        scene = rectbert.scene(name.split("-")[0], **opts)
        d = np.load(os.path.join(folder, f"{name}.npz"))
        out[name] = {"coverage_ms": _coverage(folder, spec["tag"], name, scene, d)}
        for v in spec["visible"]:
            out[name][str(v)] = _timed(spec, name, scene, np.load(_path(folder, name, v)), v)
    json.dump(out, open(os.path.join(folder, f"{spec['tag']}.json"), "w"))


def _path(folder: str, name: str, visible: int) -> str:
    return os.path.join(folder, f"{name}_{visible}.npz")


def _coverage(folder: str, tag: str, name: str, scene, d) -> float:
    """Saves the scene's coverage of the prior shapes; the ms of one of 64 x 24 points."""
    import jax

    cov = np.asarray(scene.coverage(d["shapes"], d["shape_points"]))
    small = (d["shapes"][:64], d["shape_points"][:64])
    jax.block_until_ready(scene.coverage(*small))  # compiled for this size
    t = time.perf_counter()
    for _ in range(10):
        jax.block_until_ready(scene.coverage(*small))
    coverage_ms = (time.perf_counter() - t) / 10 * 1e3
    np.save(os.path.join(folder, f"{name}_{tag}_coverage.npy"), cov)
    return coverage_ms


def _timed(spec, name: str, scene, d, visible: int) -> dict:
    """Each example through oracle.posterior, one a call, the first (it compiles) untimed:
    seconds, ESS, and the answers (saved for the comparison of the trees)."""
    import jax

    from rectbert.analysis import oracle

    times, ess, probs, parts = [], [], [], []
    n = spec["examples"][name] + 1  # the first call compiles
    for e in range(n):
        t = time.perf_counter()
        args = (d["points"][e : e + 1], d["tokens"][e : e + 1], d["visible"][e : e + 1])
        post = oracle.posterior(jax.random.key(e), *args, d["centroids"], scene)
        times.append(time.perf_counter() - t)  # numpy outputs: the call has finished
        ess.append(float(post.ess[0]))
        probs.append(post.probs[0])
        parts.append(post.components[0])
        print(f"  {spec['tag']} {name} at {visible}: example {e} {times[-1]:.1f} s", flush=True)
    folder = spec["folder"]
    np.savez(
        os.path.join(folder, f"{name}_{visible}_{spec['tag']}_answers.npz"),
        probs=np.stack(probs[1:]),
        components=np.stack(parts[1:]),
    )
    return {"per_example_s": times[1:], "ess": ess[1:]}


def prepare(folder: str, names, examples: int, visible, junction: int, drawn: int) -> dict:
    """The scenes' held-out examples at each visible count (folder/<scene>_<visible>.npz),
    codebooks and prior shapes (folder/<scene>.npz); the examples timed per scene."""
    import jax

    import rectbert
    from rectbert.analysis import oracle_curve
    from rectbert.data import tasks
    from rectbert.data.sparse_task import SparseTask

    counts = {}
    for name in names:
        scene = rectbert.scene(name.split("-")[0], **SCENES[name])
        counts[name] = junction if name == "junction" else drawn if name in DRAWN else examples
        n = counts[name] + 1  # the first compiles
        task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=n, seed=1)
        task = task.with_codebook(task.fit_codebook()[0])
        for v in visible:
            b = oracle_curve.held_out(task, v, n)
            np.savez(
                _path(folder, name, v),
                points=np.asarray(b.points),
                tokens=np.asarray(b.tokens),
                visible=~np.asarray(b.mask),
                centroids=np.asarray(task.codebook),
            )
        shapes = np.asarray(scene.sample(jax.random.key(3), 256))
        pts = np.asarray(jax.random.uniform(jax.random.key(4), (256, POINTS, 2)) * scene.size)
        np.savez(
            os.path.join(folder, f"{name}.npz"),
            shapes=shapes,
            shape_points=pts.astype(np.float32),
        )
    return counts


def check(scenes, examples: int, junction_examples: int, visible, against: str, drawn: int = 4):
    """(the scenes, the visible counts, this repository's root) from the flags' values, or a
    usage.Error naming the flag (before any compute)."""
    from benchmarks import usage

    names = usage.names("scenes", scenes, SCENES)
    usage.integer("examples", examples, 1, 1000)
    usage.integer("junction_examples", junction_examples, 1, 1000)
    usage.integer("drawn_examples", drawn, 1, 1000)
    visible = [visible] if isinstance(visible, int) else visible
    said = f" (of {POINTS} points: one hidden at least, or there is nothing to predict)"
    counts = usage.integers("visible", [str(v) for v in visible], 1)
    counts = tuple(usage.integer("visible", v, 1, POINTS - 1, said) for v in counts)
    git = dict(capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], **git).stdout.strip()
    rev = ["git", "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}"]
    if not root or subprocess.run(rev, **git).returncode:
        raise usage.refuse("against", against, "a git revision of this repository")
    return names, counts, root


def main(argv) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    del argv  # none (usage.run)
    f = FLAGS
    names, counts, root = check(
        f.scenes, f.examples, f.junction_examples, f.visible, f.against, f.drawn_examples
    )
    sizes = (f.examples, f.junction_examples, f.drawn_examples)
    compare(root, f.against, names, counts, sizes)


def compare(root: str, against: str, names, visible, sizes) -> None:
    """Both trees measured and reported, in a temporary folder removed whatever happens (an
    error, an interrupt), the revision's worktree in it. sizes: examples timed per scene,
    for junction and for the drawn scenes."""
    with tempfile.TemporaryDirectory(prefix="oracle_speed_") as folder:
        tree = os.path.join(folder, "tree")
        try:
            add = ["git", "worktree", "add", "--detach", "-q", tree, against]
            subprocess.run(add, cwd=root, check=True)
            counts = prepare(folder, names, sizes[0], visible, sizes[1], sizes[2])
            for tag, path in (("ours", root), ("ref", tree)):
                spec = {"scenes": {n: SCENES[n] for n in names}, "examples": counts, "tag": tag}
                spec.update(visible=list(visible), folder=folder)
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


def _apart(folder: str, name: str, visible: int) -> tuple[float, float]:
    """The two trees' mean total variation: of the hidden tokens' predictive, and of
    p(component | visible) (0 for a scene of one component)."""
    d = np.load(_path(folder, name, visible))
    ans = [np.load(os.path.join(folder, f"{name}_{visible}_{t}_answers.npz")) for t in TAGS]
    hidden = ~d["visible"][1 : 1 + len(ans[0]["probs"])]
    tv = 0.5 * np.abs(ans[0]["probs"] - ans[1]["probs"]).sum(-1)
    parts = 0.5 * np.abs(ans[0]["components"] - ans[1]["components"]).sum(-1)
    return float(tv[hidden].mean()), float(parts.mean())


TAGS = ("ours", "ref")


def report(folder: str, names, against: str, visible) -> None:
    from rectbert.geometry import codebook

    ours, ref = (json.load(open(os.path.join(folder, f"{t}.json"))) for t in TAGS)
    assert ours["rectbert"] != ref["rectbert"], "both runs imported the same tree"
    print(
        f"oracle per example (compile excluded); ours (this working tree) vs {against}; every "
        "example of ours first, then the revision's"
    )
    for name in names:
        cov = [np.load(os.path.join(folder, f"{name}_{t}_coverage.npy")) for t in TAGS]
        cents = np.load(_path(folder, name, visible[0]))["centroids"]
        tok = [np.asarray(codebook.quantise(c, cents)) for c in cov]
        print(
            f"SUMMARY {name} coverage of 64 x 24 points {ours[name]['coverage_ms']:.2f} vs "
            f"{ref[name]['coverage_ms']:.2f} ms, max |diff| {np.abs(cov[0] - cov[1]).max():.1e}, "
            f"tokens equal {np.mean(tok[0] == tok[1]):.4f}"
        )
        for v in visible:
            a, b = ours[name][str(v)], ref[name][str(v)]
            speed_a, speed_b = 1 / np.mean(a["per_example_s"]), 1 / np.mean(b["per_example_s"])
            tv, parts = _apart(folder, name, v)
            print(
                f"SUMMARY {name} at {v} visible: {speed_a:.2f} vs {speed_b:.2f} examples/s "
                f"({speed_a / speed_b:.2f}x, {np.mean(a['per_example_s']):.1f} vs "
                f"{np.mean(b['per_example_s']):.1f} s an example, {len(a['ess'])} examples); "
                f"ESS median {np.median(a['ess']):.0f} vs {np.median(b['ess']):.0f}, min "
                f"{min(a['ess']):.0f} vs {min(b['ess']):.0f}; apart: predictive TV {tv:.3f}, "
                f"p(component) TV {parts:.3f}"
            )


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    from absl import flags

    flags.DEFINE_string("against", "0625b10", "The git revision to time against.")
    flags.DEFINE_list("scenes", list(SCENES), f"Scenes of {list(SCENES)}.")
    flags.DEFINE_integer("examples", 6, "Held-out examples timed per scene (one a call).")
    flags.DEFINE_integer("junction_examples", 2, "The same for junction (slow at the ref).")
    flags.DEFINE_integer("drawn_examples", 4, f"The same for {' and '.join(DRAWN)}.")
    flags.DEFINE_list(
        "visible", ["4", "19"], f"Visible points of each example (of {POINTS}), 'a,b'."
    )


if __name__ == "__main__":
    from benchmarks import usage

    define_flags()
    usage.run(main)
