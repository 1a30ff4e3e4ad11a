"""Where one oracle example's time goes: a `jax.profiler` trace of oracle.posterior, its XLA
operations summed by kind and by the source operation they were compiled from.

python -m benchmarks.oracle_profile [--scene=junction] [--visible=19] [--top=8]

One held-out example of the scene's sparse task (anycount masks, its own codebook, seed 1)
at --visible visible points: a first call compiles (not traced), then the second example is
timed untraced, then traced with the same key (where operations were traced, the last line
sets their seconds against the untraced call's: the trace's seconds are not the call's, and
its shares are unverified).
Counted: the operations of the oracle's own program (the trace's other programs,
such as the key splits, left out), less those nesting others (while, cond, call: their time
is their children's). Prints their count and time, how many took under 10 us and their
time, and by time with their shares the --top kinds (the operation's name less its number:
fusions, copies, sorts) and the --top source operations: each operation's op_name in the
very program traced (calls.compiled's, read from its text), less the jit, loop-body and
call wrappers. A few large fusions holding most of the time means the arithmetic sets it;
many small ones holding it, their count.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax
import numpy as np
from absl import flags

import rectbert
from benchmarks import usage

FLAGS = flags.FLAGS
SCENES = ("rect", "rotated", "rects", "junction", "glyph", "kanji")
NESTING = ("while", "cond", "call")  # operations whose time is their children's
SMALL_US = 10.0
MODULE = "jit__posterior"  # the oracle's program, as the trace names it
WRAPPERS = re.compile(r"^(jit\(_posterior\)|while|body|closed_call)$")


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_enum("scene", "junction", list(SCENES), "The scene, at its defaults.")
    flags.DEFINE_integer("visible", 19, "Visible points of the example's 24.")
    flags.DEFINE_integer("top", 8, "Kinds and source operations printed.")


def check(visible: int, top: int) -> None:
    """A usage.Error naming the flag, before any compute."""
    usage.integer("visible", visible, 1, 23)
    usage.integer("top", top, 1, 1000)


def example(name: str, visible: int):
    """(scene, [2, P, 2] points, [2, P] tokens, [2, P] visible, centroids): two held-out
    examples of the scene's task."""
    from rectbert.analysis import oracle_curve
    from rectbert.data import tasks
    from rectbert.data.sparse_task import SparseTask

    scene = rectbert.scene(name)
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=2, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    b = oracle_curve.held_out(task, visible, 2)
    return scene, np.asarray(b.points), np.asarray(b.tokens), ~np.asarray(b.mask), task.codebook


def source_ops(compiled_text: str) -> dict[str, str]:
    """{operation name: its op_name less the WRAPPERS} from a compiled program's text (an
    operation without metadata is left out: it is named by its own name)."""
    out = {}
    for m in re.finditer(r"%([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"", compiled_text):
        out[m.group(1)] = "/".join(p for p in m.group(2).split("/") if not WRAPPERS.match(p))
    return out


def summary(events, names: dict[str, str], top: int, untraced: float | None = None) -> list[str]:
    """The lines printed, from the trace's complete events; with `untraced`, the seconds
    the same call took without the profiler, a last line setting the operations' seconds
    against it (they differ: on junction at 19 visible, 1.5 s of operations in a traced call
    of 5.9 s, 3.2 s untraced)."""
    ops = [e for e in events if e.get("args", {}).get("hlo_module") == MODULE]
    leaf = [e for e in ops if not e["args"].get("hlo_op", "").startswith(NESTING)]
    if not leaf or not sum(e.get("dur", 0.0) for e in leaf):
        return [f"no operation of {MODULE} was traced"]
    dur = np.array([e.get("dur", 0.0) for e in leaf], float)  # microseconds
    span = max(e["ts"] + e.get("dur", 0.0) for e in ops) - min(e["ts"] for e in ops)
    small = dur < SMALL_US
    lines = [
        f"{len(leaf):,} operations, {dur.sum() / 1e6:.2f} s of operation time over a "
        f"{span / 1e6:.2f} s span; {small.sum():,} under {SMALL_US:g} us: "
        f"{dur[small].sum() / 1e6:.2f} s ({dur[small].sum() / dur.sum():.0%})"
    ]
    kinds, sources, calls = collections.Counter(), collections.Counter(), collections.Counter()
    for e, d in zip(leaf, dur, strict=True):
        op = e["args"].get("hlo_op", e["name"])
        kinds[re.sub(r"[.\d]+$", "", op)] += d
        sources[names.get(op, op)] += d
        calls[names.get(op, op)] += 1
    total = dur.sum()
    lines.append("by kind:")
    lines += [f"  {t / 1e6:7.2f} s {t / total:4.0%}  {k}" for k, t in kinds.most_common(top)]
    unnamed = sum(1 for e in leaf if e["args"].get("hlo_op") not in names)
    lines.append(f"by source operation (calls; {unnamed:,} operations had no op_name):")
    lines += [
        f"  {t / 1e6:7.2f} s {t / total:4.0%}  {s} ({calls[s]:,})"
        for s, t in sources.most_common(top)
    ]
    if untraced is not None:
        lines.append(
            f"operations {total / 1e6:.2f} s traced, the call {untraced:.2f} s untraced "
            f"({total / 1e6 / untraced:.0%}): the trace's seconds are not the call's, and its "
            "shares are unverified"
        )
    return lines


def main(argv) -> None:
    del argv  # none (usage.run)
    check(FLAGS.visible, FLAGS.top)
    from rectbert.analysis import calls, oracle

    scene, pts, tok, vis, centroids = example(FLAGS.scene, FLAGS.visible)
    oracle.posterior(jax.random.key(0), pts[:1], tok[:1], vis[:1], centroids, scene)  # compiled
    start = time.perf_counter()  # the traced call's very work, untraced first
    oracle.posterior(jax.random.key(1), pts[1:], tok[1:], vis[1:], centroids, scene)
    untraced = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            start = time.perf_counter()
            oracle.posterior(jax.random.key(1), pts[1:], tok[1:], vis[1:], centroids, scene)
            took = time.perf_counter() - start
        found = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)
        if not found:
            raise SystemExit(f"error: jax.profiler wrote no trace under {folder}")
        with gzip.open(found[0]) as f:
            trace = json.load(f)
    # the very program traced: calls.compiled's (its key starts with the jitted function)
    traced = [p for k, p in calls._COMPILED.items() if k[0] is oracle._posterior]
    names = source_ops(traced[-1].as_text())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    events = [e for e in events if e.get("ph") == "X"]
    print(
        f"{FLAGS.scene}, {FLAGS.visible} visible: one example in {took:.1f} s traced, "
        f"{untraced:.1f} s untraced"
    )
    for line in summary(events, names, FLAGS.top, untraced):
        print(line)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
