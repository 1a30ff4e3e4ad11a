"""The oracle's speed and stability: held-out sparse examples through oracle.evaluate.

python -m benchmarks.oracle [--examples=1000]
Prints examples/s, the oracle accuracy with its standard error, the unreliable count, and
the same accuracy with twice the samples (the convergence check), in one run.
"""

from __future__ import annotations

import dataclasses
import time

import jax
from absl import flags

from benchmarks import usage
from rectbert import config, scenes
from rectbert.analysis import oracle
from rectbert.data import tasks
from rectbert.data.sparse_task import SparseTask

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_integer("examples", 1000, "Held-out examples.")
    flags.DEFINE_bool("double", True, "Also run with twice the samples and chains.")


def check(examples: int) -> SparseTask:
    """The benchmark's task, or a usage.Error naming --examples (before any compute)."""
    try:
        return SparseTask(scenes.scene("rect"), tasks.MaskSpec(5), eval_examples=examples)
    except config.ConfigError as e:
        raise usage.refuse("examples", examples, e.allowed) from None


def main(argv):
    del argv  # none (usage.run)
    task = check(FLAGS.examples)
    scene = task.scene
    task = task.with_codebook(task.fit_codebook()[0])
    centroids = task.codebook
    batch = jax.block_until_ready(task.eval_set())
    base = task.eval_extra(batch.tokens, batch)
    cfg = oracle.OracleConfig()
    small = jax.tree.map(lambda a: a[:8], batch)
    oracle.evaluate(jax.random.key(2), small, centroids, scene, cfg)  # compile
    t = time.perf_counter()
    m, _, _ = oracle.evaluate(jax.random.key(3), batch, centroids, scene, cfg)
    dt = time.perf_counter() - t
    print(
        f"{FLAGS.examples} examples in {dt:.1f} s ({FLAGS.examples / dt:.1f} examples/s), "
        f"{jax.devices()[0].device_kind}"
    )
    print(
        f"oracle accuracy {m['eval/oracle_accuracy']:.4f} +- "
        f"{m['eval/oracle_accuracy_stderr']:.4f}, unreliable {m['eval/oracle_unreliable']}, "
        f"median ESS {m['eval/oracle_median_ess']:.0f}; baselines nearest "
        f"{float(base['eval/nearest_accuracy']):.4f}, majority "
        f"{float(base['eval/majority_accuracy']):.4f}"
    )
    line = (
        f"SUMMARY oracle {FLAGS.examples} examples {dt:.1f} s acc {m['eval/oracle_accuracy']:.4f}"
    )
    if FLAGS.double:
        big = dataclasses.replace(cfg, num_samples=2 * cfg.num_samples, chains=2 * cfg.chains)
        oracle.evaluate(jax.random.key(2), small, centroids, scene, big)
        m2, _, _ = oracle.evaluate(jax.random.key(4), batch, centroids, scene, big)
        delta = m2["eval/oracle_accuracy"] - m["eval/oracle_accuracy"]
        print(
            f"doubled samples: accuracy {m2['eval/oracle_accuracy']:.4f} ({100 * delta:+.2f} "
            f"points), unreliable {m2['eval/oracle_unreliable']}"
        )
        line += f", doubled {m2['eval/oracle_accuracy']:.4f} ({100 * delta:+.2f} points)"
    print(line)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
