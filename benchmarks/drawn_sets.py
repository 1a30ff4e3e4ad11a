"""What a drawn set costs as it grows, in one run on one machine: the quick sparse model's train
step on the 30 default kanji, KanjiVG's 1,602 kanji of at most 8 strokes and Tabler's 4,577
icons (and the 26 capitals, for reference).

python -m benchmarks.drawn_sets [--sets=glyph,kanji,kanji_1602,icons --steps=20 --rounds=3]

For each set: the seconds to build its drawings (the libraries' caches emptied first), its
distinct drawings, their boundary segments (median, largest), the bytes of its arrays; the
train step of the quick flagfiles' model (3 layers, width 64, batch 64, 24 points), compiled
once, then timed --steps steps at a time, the sets in turn, --rounds times over (a machine
whose speed drifts slows them alike): the median ms a step and steps/s; XLA's temporary
memory for the step; and one coverage call of the step's size (64 shapes x 24 points) with
each drawing's own segment count vs padded to the set's largest (the ratio: what the counts
save). The process's peak resident memory last.
"""

from __future__ import annotations

import resource
import statistics
import time

import jax
import numpy as np
from absl import flags

from benchmarks import usage
from rectbert import scenes
from rectbert.geometry import shapes
from rectbert.recipes import common, sparse
from rectbert.scenes import glyph, icon, kanji
from rectbert.scenes.exact import boundary_coverage
from rectbert.training import engine

FLAGS = flags.FLAGS
SETS = {  # name -> the scene's settings
    "glyph": {"scene": "glyph"},
    "kanji": {"scene": "kanji"},
    "kanji_1602": {"scene": "kanji", "kanji": "strokes:1-8"},
    "icons": {"scene": "icon", "icons": ("all",)},
}
QUICK = dict(  # the quick flagfiles' model and batch (sparse_*_unseen_quick.flags)
    num_train_rects=0,
    num_points=24,
    mask_ratio=0.2,
    position="sincos",
    attention="context",
    batch_size=64,
    learning_rate=2e-3,
    embed_dim=64,
    mlp_dim=128,
    num_heads=4,
    num_layers=3,
)


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_list("sets", list(SETS), f"Drawn sets to time: of {list(SETS)}.")
    flags.DEFINE_integer("steps", 20, "Timed steps a round and set.")
    flags.DEFINE_integer("rounds", 3, "Rounds over the sets; medians are reported.")


def build(settings: dict):
    """(task with its codebook, its train step compiled, the initial state, seconds to build
    the drawings)."""
    for cache in (kanji._kanji_library, icon._icon_library, glyph._hershey_library):
        cache.cache_clear()
    start = time.perf_counter()
    scenes.scene(settings["scene"], **{k: v for k, v in settings.items() if k != "scene"})
    built = time.perf_counter() - start
    run = sparse.build(common.values(sparse, **QUICK, **settings)).run
    task = run.task.with_codebook(run.task.fit_codebook()[0])
    state, step_fn = engine.build(task, run.model, run.train)
    compiled = step_fn.lower(state, np.int32(0)).compile()
    state = jax.block_until_ready(compiled(state, np.int32(0))[0])
    return task, compiled, state, built


def coverage_ms(scene, repeats: int = 5) -> tuple[float, float]:
    """(ms of one 64 x 24 coverage call with each drawing's own segments, ms padded)."""
    params = scene.sample(jax.random.key(0), 64)
    points = jax.random.uniform(jax.random.key(1), (64, 24, 2)) * scene.size
    c, g = shapes.CELL, shapes.GRID
    own = jax.jit(lambda p, x: scene._coverage(p, x, c, g))
    padded = jax.jit(lambda p, x: boundary_coverage(*scene.placed(p), x, c, g))
    out = []
    for fn in (own, padded):
        fn(params, points).block_until_ready()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(params, points).block_until_ready()
            times.append(time.perf_counter() - t)
        out.append(1e3 * statistics.median(times))
    return out[0], out[1]


def main(argv) -> None:
    del argv  # none (usage.run)
    names = usage.names("sets", FLAGS.sets, SETS)
    usage.integer("steps", FLAGS.steps, 1, 10_000)
    usage.integer("rounds", FLAGS.rounds, 1, 100)
    runs = {}
    for name in names:
        task, compiled, state, built = build(SETS[name])
        lib = task.scene.library
        size = sum(a.nbytes for a in (lib.a, lib.b, lib.weight, lib.vertices))
        temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
        own, padded = coverage_ms(task.scene)
        print(
            f"{name}: {len(lib.names)} drawings built in {built:.1f} s; segments median "
            f"{int(np.median(lib.counts))}, largest {lib.a.shape[1]}; arrays {size / 2**20:.1f} "
            f"MiB; step's XLA temp {temp:.1f} MiB; coverage {own:.1f} ms own counts vs "
            f"{padded:.1f} ms padded ({padded / own:.1f}x)",
            flush=True,
        )
        runs[name] = [compiled, state, []]
    for r in range(FLAGS.rounds):
        for run in runs.values():
            compiled, state, times = run
            for i in range(FLAGS.steps):
                t = time.perf_counter()
                state, metrics = compiled(state, np.int32(1 + r * FLAGS.steps + i))
                jax.block_until_ready(metrics)
                times.append(time.perf_counter() - t)
            run[1] = state
    for name, (_, _, times) in runs.items():
        ms = 1e3 * statistics.median(times)
        print(f"{name}: {ms:.1f} ms a step ({1e3 / ms:.1f} steps/s), median of {len(times)}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"peak resident memory of the process: {peak:.2f} GiB")


if __name__ == "__main__":
    define_flags()
    usage.run(main)
