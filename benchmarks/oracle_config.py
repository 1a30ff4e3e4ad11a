"""The oracle at its default config against another (OracleConfig fields set otherwise),
paired in one run: what a knob buys in speed and what it costs in convergence.

python -m benchmarks.oracle_config [--scene=junction] [--visible=8,19] [--examples=12]
    [--against=tied_step=40] (e.g. --against=anneal_steps=8,shrinks=2)

For each visible count: the scene's first `examples` held-out examples (the sparse task's,
seed 1), each run by both configs with the same key, the two interleaved example by example
(which goes first alternates) so the machine's drift falls on both; the first call of each
compiles and is not timed. Prints seconds an example of each, the other config's speed-up
(default s / other s: above 1, the other is faster) as the geometric mean of the paired
ratios with its standard error, the median ESS (capped at each config's chains), the median relative
disagreement of the two replicas' evidences, how many examples reach ESS >= 100, each
config's accuracy on the hidden tokens (its predictive's mode), and the mean total variation
between the two predictives (the samplers' noise and the config's difference together); a
progress line after each example (examples/s, ETA).
"""

from __future__ import annotations

import dataclasses
import math
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
    flags.DEFINE_list(
        "against", ["tied_step=40"], "The other config: OracleConfig fields 'name=value,...'."
    )


SAMPLING = (  # OracleConfig's fields that change what the sampler does (min_ess: a report's)
    "num_samples",
    "rounds",
    "keep",
    "defensive",
    "margin",
    "chains",
    "anneal_steps",
    "mcmc_steps",
    "shrinks",
    "screen",
    "tied_step",
    "ensemble_moves",
)


def other_config(against, scene):
    """The OracleConfig `against` names ('field=value' each, a field of SAMPLING at most
    once, the whole differing from the default on `scene`), or usage.Error naming the item
    and what it allows."""
    from rectbert.analysis import oracle

    default = oracle.OracleConfig()
    allowed = f"'field=value,...' of the sampler's fields {list(SAMPLING)}"
    changes = {}
    for item in against:
        name, _, text = item.partition("=")
        if name not in SAMPLING:
            raise usage.refuse("against", against, f"{name!r} is not one of {allowed}")
        if name in changes:
            raise usage.refuse("against", against, f"{name} is given twice")
        changes[name] = _value(name, text, getattr(default, name), against)
    try:
        other = dataclasses.replace(default, **changes)
    except ValueError as e:  # OracleConfig's own check: one line naming the field
        raise usage.refuse("against", against, str(e)) from None

    def resolved(cfg):  # ensemble_moves None is the scene's own count: the same sampler
        moves = scene.ensemble_moves if cfg.ensemble_moves is None else cfg.ensemble_moves
        return dataclasses.replace(cfg, ensemble_moves=moves)

    if resolved(other) == resolved(default):
        raise usage.refuse("against", against, f"the default sampler on {scene.name}: {allowed}")
    return other


def _value(name: str, text: str, default, against):
    """A field's value written as text, of the default's kind (a None default: an integer)."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise usage.refuse("against", against, f"{name} is true or false")
        return text.lower() == "true"
    if not isinstance(default, float):
        if not text.isdigit() or int(text) > usage.INT32_MAX:
            raise usage.refuse("against", against, f"{name} is an integer in [0, 2^31 - 1]")
        return int(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or "_" in text:
        raise usage.refuse("against", against, f"{name} is a finite number")
    return number


def check(scene: str, visible, examples: int, against):
    """(scene, counts, the other config) or usage.Error naming the flag, before any compute."""
    import rectbert
    from rectbert import scenes

    def _refused(name):
        return rectbert.scene(name).oracle_unsupported()

    if scene not in scenes.SCENES or _refused(scene):
        served = [n for n in sorted(scenes.SCENES) if not _refused(n)]
        raise usage.refuse("scene", scene, f"a scene the oracle serves, one of {served}")
    counts = usage.integers("visible", visible, 1, 23)
    usage.integer("examples", examples, 2, 512)
    return scene, counts, other_config(against, rectbert.scene(scene))


def main(argv) -> None:
    del argv  # none (usage.run)
    scene_name, counts, other = check(FLAGS.scene, FLAGS.visible, FLAGS.examples, FLAGS.against)
    import jax

    import rectbert
    from rectbert.analysis import oracle, oracle_curve
    from rectbert.data import tasks
    from rectbert.data.sparse_task import SparseTask

    n = FLAGS.examples
    scene = rectbert.scene(scene_name)
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=n, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    cfgs = {"default": oracle.OracleConfig(), "against": other}
    print(f"{scene_name}: the default config against {','.join(FLAGS.against)}, {n} examples")
    if other.chains != cfgs["default"].chains:  # the ESS is measured up to the chains
        print(f"(the ESS's cap: {cfgs['default'].chains} / {other.chains} chains)")
    print(
        "| visible | s an example | speed-up (default s / other s) | median ESS | disagreement "
        "| ESS >= 100 | accuracy | TV apart |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for v in counts:
        b = oracle_curve.held_out(task, v, n)
        arrays = (np.asarray(b.points), np.asarray(b.tokens), ~np.asarray(b.mask))

        def example(e, arrays=arrays):
            return [a[e : e + 1] for a in arrays]

        def one(cfg, ex, key):
            start = time.perf_counter()
            post = oracle.posterior(key, *ex, task.codebook, scene, cfg)
            return time.perf_counter() - start, post

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
        print(_row(v, got["default"], got["against"], arrays, n), flush=True)


def _row(v: int, default, against, arrays, n: int) -> str:
    """One count's table row from each config's (seconds, Posterior) per example."""
    hidden, tokens = ~arrays[2], arrays[1]
    s = [np.asarray([t for t, _ in runs], np.float64) for runs in (default, against)]
    ess = [np.asarray([p.ess[0] for _, p in runs]) for runs in (default, against)]
    err = [np.asarray([p.evidence_error[0] for _, p in runs]) for runs in (default, against)]
    probs = [np.stack([np.asarray(p.probs[0]) for _, p in runs]) for runs in (default, against)]
    acc = [float(np.mean((p.argmax(-1) == tokens)[hidden])) for p in probs]
    tv = float(np.mean((0.5 * np.abs(probs[0] - probs[1]).sum(-1))[hidden]))
    speed, se = speedup(s[1], s[0])  # what the other config buys: default s / its s
    return (
        f"| {v} | {s[0].mean():.2f} / {s[1].mean():.2f} | {speed:.2f}x ± {se:.2f} "
        f"| {np.median(ess[0]):.0f} / {np.median(ess[1]):.0f} "
        f"| {np.median(err[0]):.2f} / {np.median(err[1]):.2f} "
        f"| {int((ess[0] >= 100).sum())} / {int((ess[1] >= 100).sum())} of {n} "
        f"| {acc[0]:.3f} / {acc[1]:.3f} | {tv:.3f} |"
    )


if __name__ == "__main__":
    define_flags()
    usage.run(main)
