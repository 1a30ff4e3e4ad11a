"""The oracle with its tempering capped while nothing is on the posterior (OracleConfig's
tied_step, 1 by default) against another cap (40: none, the ESS alone), paired in one run.

python -m benchmarks.oracle_tempering [--scene=junction] [--visible=8,19] [--examples=12]
    [--against=40]

For each visible count: the scene's first `examples` held-out examples (the sparse task's,
seed 1), each run by both configs with its own key, the two interleaved example by example
(which goes first alternates) so the machine's drift falls on both; the first call of each
compiles and is not timed. Prints seconds an example of each, the speed-up as the geometric
mean of the paired ratios with its standard error, the median ESS, the median relative
disagreement of the two replicas' evidences, and how many examples reach ESS >= 100; a
progress line after each example (examples/s, ETA).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from absl import flags

from benchmarks import usage
from benchmarks.oracle_speed import speedup

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_string("scene", "junction", "A registered scene the oracle serves.")
    flags.DEFINE_list("visible", ["8", "19"], "Visible counts, each in [1, 23].")
    flags.DEFINE_integer("examples", 12, "Held-out examples per count (>= 2).")
    flags.DEFINE_float("against", 40.0, "The other config's tied_step, in (0, 40] (40: no cap).")


def check(scene: str, visible, examples: int, against: float):
    """(scene, counts) or usage.Error naming the flag, before any compute."""
    import rectbert
    from rectbert.analysis import oracle

    def _refused(name):
        return rectbert.scene(name).oracle_unsupported()

    if scene not in rectbert.scenes.SCENES or _refused(scene):
        served = [n for n in sorted(rectbert.scenes.SCENES) if not _refused(n)]
        raise usage.refuse("scene", scene, f"a scene the oracle serves, one of {served}")
    counts = usage.integers("visible", visible, 1, 23)
    usage.integer("examples", examples, 2, 512)
    if not 0 < against <= 40 or against == oracle.OracleConfig().tied_step:
        raise usage.refuse("against", against, "a number in (0, 40] but the default's 1 (40: none)")
    return scene, counts


def main(argv) -> None:
    del argv  # none (usage.run)
    scene_name, counts = check(FLAGS.scene, FLAGS.visible, FLAGS.examples, FLAGS.against)
    import jax

    import rectbert
    from rectbert.analysis import oracle, oracle_curve
    from rectbert.data import tasks
    from rectbert.data.sparse_task import SparseTask

    n = FLAGS.examples
    scene = rectbert.scene(scene_name)
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=n, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    cfgs = {"default": oracle.OracleConfig()}
    cfgs["against"] = dataclasses.replace(cfgs["default"], tied_step=FLAGS.against)
    steps = (cfgs["default"].tied_step, FLAGS.against)
    print(f"{scene_name}: tied_step {steps[0]:g} (default) against {steps[1]:g}, {n} examples")
    print("| visible | s an example | speed-up | median ESS | disagreement | ESS >= 100 |")
    print("|---|---|---|---|---|---|")
    for v in counts:
        b = oracle_curve.held_out(task, v, n)
        arrays = (np.asarray(b.points), np.asarray(b.tokens), ~np.asarray(b.mask))

        def example(e, arrays=arrays):
            return [a[e : e + 1] for a in arrays]

        def one(cfg, ex, key):
            start = time.perf_counter()
            post = oracle.posterior(key, *ex, task.codebook, scene, cfg)
            return time.perf_counter() - start, post.ess[0], post.evidence_error[0]

        for name in cfgs:  # compiled, not timed
            one(cfgs[name], example(0), jax.random.key(0))
        got, began = {name: [] for name in cfgs}, time.perf_counter()
        for e in range(n):
            for name in list(cfgs)[:: 1 if e % 2 == 0 else -1]:
                got[name].append(one(cfgs[name], example(e), jax.random.key(100 + e)))
            took = time.perf_counter() - began
            rate = (e + 1) / took
            print(
                f"  {v} visible: {e + 1}/{n} examples, {rate:.2f} examples/s (both configs), "
                f"ETA {(n - e - 1) / rate:.0f} s",
                flush=True,
            )
        d, a = (np.asarray(got[k], np.float64) for k in ("default", "against"))
        speed, se = speedup(d[:, 0], a[:, 0])
        print(
            f"| {v} | {d[:, 0].mean():.2f} / {a[:, 0].mean():.2f} | {speed:.2f}x ± {se:.2f} "
            f"| {np.median(d[:, 1]):.0f} / {np.median(a[:, 1]):.0f} "
            f"| {np.median(d[:, 2]):.2f} / {np.median(a[:, 2]):.2f} "
            f"| {int((d[:, 1] >= 100).sum())} / {int((a[:, 1] >= 100).sum())} of {n} |",
            flush=True,
        )


if __name__ == "__main__":
    define_flags()
    usage.run(main)
