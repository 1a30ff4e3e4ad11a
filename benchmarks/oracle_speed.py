"""The oracle's speed and its likelihood's values, this tree against a git revision, in one run.

python -m benchmarks.oracle_speed [--against=0625b10] [--scenes=rect,rotated,rects,junction,
    glyph,kanji,rects-1-4] [--examples=6] [--junction_examples=2] [--drawn_examples=4]
    [--visible=4,19]

For each scene and visible count: the same held-out examples (made here, passed to both)
through oracle.posterior one example a call (the first call compiles and is not timed), the
two trees alternating example by example (which goes first alternates too: with an odd count
of examples the revision goes first once more), so the machine's drift, which moves this
CPU's speed by up to 2.5x within a run, falls on both; examples/s and the median / minimum
measured ESS of each tree, and their ratio; how far the two trees' answers are apart (the
mean total variation of the hidden tokens' predictive and of p(component | visible), each a
Monte Carlo estimate: they agree to within the samplers' noise, not exactly); and the
scene's coverage of 256 prior shapes at 24 points each, both trees: the largest difference
and the share of equal tokens (the exact likelihood must not change a value), and the time
of one compiled coverage of 64 shapes x 24 points (the trees alternating, ten calls each).
Each tree runs in its own subprocess (the revision in a `git worktree`), with only the API
both trees share, and waits for its turn; a progress line after each example (examples/s,
ETA).
"""

from __future__ import annotations

import json
import os
import signal
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


def serve(folder: str) -> None:
    """In whichever tree is first on sys.path: a loop that reads one request a line on stdin
    (JSON: a scene's coverage timed, or one example through the oracle) and answers it in
    one JSON line on stdout; "quit" or the end of stdin ends it. Between requests it waits,
    using no CPU. The answers go to stdout as it was; anything else written there (a
    library's print, a progress line) goes to stderr instead, so it cannot break a line of
    the answers. It ignores an interrupt: the parent's, which kills it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the parent's: it kills us
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import rectbert

    spec = json.load(open(os.path.join(folder, "spec.json")))
    scenes = {n: rectbert.scene(n.split("-")[0], **opts) for n, opts in spec["scenes"].items()}
    say(answers, os.path.dirname(rectbert.__file__))
    for line in sys.stdin:
        ask = json.loads(line)
        if ask["do"] == "quit":
            return
        name = ask["name"]
        if ask["do"] == "coverage":
            d = np.load(os.path.join(folder, f"{name}.npz"))
            say(answers, _coverage(folder, ask["tag"], name, scenes[name], d, ask["repeats"]))
        else:
            d = np.load(_path(folder, name, ask["visible"]))
            say(answers, _one(scenes[name], d, ask["example"]))


def say(answers, answer) -> None:
    answers.write(json.dumps(answer) + "\n")
    answers.flush()


def _path(folder: str, name: str, visible: int) -> str:
    return os.path.join(folder, f"{name}_{visible}.npz")


def _coverage(folder: str, tag: str, name: str, scene, d, repeats: int) -> float:
    """The ms of one compiled coverage of 64 x 24 points (repeats calls); where repeats is
    0, the coverage of every prior shape saved (and this size compiled) instead."""
    import jax

    small = (d["shapes"][:64], d["shape_points"][:64])
    if not repeats:
        cov = np.asarray(scene.coverage(d["shapes"], d["shape_points"]))
        np.save(os.path.join(folder, f"{name}_{tag}_coverage.npy"), cov)
        jax.block_until_ready(scene.coverage(*small))  # compiled for this size
        return 0.0
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(scene.coverage(*small))
    return (time.perf_counter() - t) / repeats * 1e3


def _one(scene, d, e: int) -> dict:
    """Example e through oracle.posterior: seconds, ESS, the predictive and p(component)."""
    import jax

    from rectbert.analysis import oracle

    t = time.perf_counter()
    args = (d["points"][e : e + 1], d["tokens"][e : e + 1], d["visible"][e : e + 1])
    post = oracle.posterior(jax.random.key(e), *args, d["centroids"], scene)
    took = time.perf_counter() - t  # numpy outputs: the call has finished
    parts = np.asarray(post.components[0]).tolist()
    return dict(s=took, ess=float(post.ess[0]), probs=post.probs[0].tolist(), components=parts)


class Tree:
    """One tree's serve() loop in a subprocess: start() reads its package's path, ask()
    sends a request and waits for its answer, close() kills it (at once: it holds nothing
    to save, and a request in flight may take minutes)."""

    def __init__(self, tag: str, path: str, folder: str):
        env = dict(os.environ, PYTHONPATH=path)
        code = f"import sys; sys.path.insert(0, {path!r}); " + (
            f"sys.path.insert(1, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import oracle_speed; oracle_speed.serve({folder!r})"
        )
        self.tag, self.root = tag, None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=path,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def start(self) -> None:
        self.root = self._read()

    def ask(self, **request):
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._read()  # it ended: says how
        return self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the {self.tag} tree's process ended (exit code {code})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def measure(folder: str, trees, names, visible, counts) -> dict:
    """Both trees, alternating: each scene's coverage (saved, then ten calls timed each,
    turn by turn), then each visible count's examples (the first, compiling, untimed, then
    one example of each tree in turn, which goes first alternating). {tag: results}."""
    out = {t.tag: {"rectbert": t.root} for t in trees}
    total = sum(counts[n] for n in names) * len(visible)
    done, began = 0, time.perf_counter()
    for name in names:
        for t in trees:
            t.ask(do="coverage", name=name, tag=t.tag, repeats=0)
            out[t.tag][name] = {"coverage_ms": []}
        for _ in range(10):
            for t in trees:
                ms = t.ask(do="coverage", name=name, tag=t.tag, repeats=1)
                out[t.tag][name]["coverage_ms"].append(ms)
        for t in trees:
            out[t.tag][name]["coverage_ms"] = float(np.mean(out[t.tag][name]["coverage_ms"]))
        for v in visible:
            got = {t.tag: [] for t in trees}
            for e in range(counts[name] + 1):  # the first compiles
                for t in trees[:: 1 if e % 2 == 0 else -1]:
                    got[t.tag].append(t.ask(do="example", name=name, visible=v, example=e))
                if e:
                    done += 1
                    rate = done / (time.perf_counter() - began)
                    print(
                        f"  {name} at {v}: example {e}/{counts[name]}, "
                        + ", ".join(f"{t.tag} {got[t.tag][-1]['s']:.1f} s" for t in trees)
                        + f"; {done}/{total} examples, {rate:.2f} examples/s (both trees), "
                        f"ETA {(total - done) / rate:.0f} s",
                        flush=True,
                    )
            for tag, rows in got.items():
                _save(folder, name, v, tag, rows[1:])
                out[tag][name][str(v)] = {
                    "per_example_s": [r["s"] for r in rows[1:]],
                    "ess": [r["ess"] for r in rows[1:]],
                }
    return out


def _save(folder: str, name: str, visible: int, tag: str, rows) -> None:
    np.savez(
        os.path.join(folder, f"{name}_{visible}_{tag}_answers.npz"),
        probs=np.asarray([r["probs"] for r in rows]),
        components=np.asarray([r["components"] for r in rows]),
    )


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
        tree, trees = os.path.join(folder, "tree"), []
        try:
            add = ["git", "worktree", "add", "--detach", "-q", tree, against]
            subprocess.run(add, cwd=root, check=True)
            counts = prepare(folder, names, sizes[0], visible, sizes[1], sizes[2])
            spec = {"scenes": {n: SCENES[n] for n in names}}
            json.dump(spec, open(os.path.join(folder, "spec.json"), "w"))
            for tag, path in (("ours", root), ("ref", tree)):
                trees.append(Tree(tag, path, folder))
                trees[-1].start()
            got = measure(folder, trees, names, visible, counts)
            for tag, results in got.items():
                json.dump(results, open(os.path.join(folder, f"{tag}.json"), "w"))
            report(folder, names, against, visible)
        finally:
            try:
                for t in trees:
                    t.close()
            finally:  # even if a second interrupt cuts the closing short
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


def speedup(ours_s, ref_s) -> tuple[float, float]:
    """(the speed-up, ref's time over ours, as the geometric mean of the examples' paired
    ratios; its standard error, NaN under two examples)."""
    log_ratio = np.log(np.asarray(ref_s, np.float64) / np.asarray(ours_s, np.float64))
    speed = float(np.exp(log_ratio.mean()))
    if len(log_ratio) < 2:
        return speed, float("nan")
    return speed, speed * float(log_ratio.std(ddof=1)) / float(np.sqrt(len(log_ratio)))


def _paired(ours_s, ref_s) -> str:
    speed, se = speedup(ours_s, ref_s)
    return f"{speed:.2f}x" if np.isnan(se) else f"{speed:.2f}x ± {se:.2f} paired"


def report(folder: str, names, against: str, visible) -> None:
    from rectbert.geometry import codebook

    ours, ref = (json.load(open(os.path.join(folder, f"{t}.json"))) for t in TAGS)
    assert ours["rectbert"] != ref["rectbert"], "both runs imported the same tree"
    print(
        f"oracle per example (compile excluded); ours (this working tree) vs {against}, the "
        "two alternating example by example"
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
                f"({_paired(a['per_example_s'], b['per_example_s'])}, "
                f"{np.mean(a['per_example_s']):.1f} vs "
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
