"""Data-parallel scaling on paper for the write-up's model: memory, bytes all-reduced, compute.

python -m benchmarks.scaling [--global_batch=1024 --chips=1,8,64 --peak_tflops=197 --mfu=0.5
                              --allreduce_gbps=100]
Parameter and optimiser bytes are counted exactly; activation memory per device is XLA's own
buffer assignment for the compiled train step at the per-device batch (compiled here, on this
machine's backend: an estimate for another chip); times assume the stated chip peak, MFU and
all-reduce bandwidth (defaults: TPU v5e, 197 bf16 TFLOP/s, 400 GB/s bidirectional ICI per chip).
"""

from __future__ import annotations

import jax
import numpy as np
from absl import flags

from benchmarks import usage
from benchmarks.train_throughput import SEQ_LEN, SIZES, grid_task, model_flops
from rectbert import config
from rectbert.model import encoder
from rectbert.training import engine

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_integer("global_batch", 1024, "Global batch (fixed: strong scaling).")
    flags.DEFINE_list("chips", ["1", "8", "64"], "Device counts to tabulate.")
    flags.DEFINE_float(
        "peak_tflops", 197.0, "Per-chip bf16 peak (TPU v5e: 197; H200: ~800 measured)."
    )
    flags.DEFINE_float("mfu", 0.5, "Assumed fraction of the peak the step reaches.")
    flags.DEFINE_float("allreduce_gbps", 100.0, "Assumed all-reduce bandwidth per chip, GB/s.")


def activation_bytes(task, model_cfg, batch: int) -> int:
    """XLA's temporary buffers for one train step at `batch` on one device."""
    cfg = engine.TrainConfig(num_steps=1, batch_size=batch, schedule="constant")
    mesh = engine.make_mesh(jax.devices()[:1])
    state, step = engine.build(task, model_cfg, cfg, mesh)
    compiled = step.lower(state, np.int32(0)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def check(global_batch: int, chips, peak_tflops: float, mfu: float, gbps: float) -> tuple:
    """The device counts from the flags' values, or a usage.Error naming the flag (before
    any compute)."""
    try:  # the train step's own bounds
        engine.TrainConfig(num_steps=1, batch_size=global_batch)
    except config.ConfigError as e:
        raise usage.refuse("global_batch", global_batch, e.allowed) from None
    counts = usage.integers("chips", chips, 1, global_batch)
    if any(global_batch % c for c in counts):
        raise usage.refuse("chips", chips, f"counts that divide --global_batch={global_batch}")
    usage.positive("peak_tflops", peak_tflops)
    usage.positive("mfu", mfu, 1.0)
    usage.positive("allreduce_gbps", gbps)
    return counts


def main(argv):
    del argv  # none (usage.run)
    chips = check(
        FLAGS.global_batch, FLAGS.chips, FLAGS.peak_tflops, FLAGS.mfu, FLAGS.allreduce_gbps
    )
    size = SIZES["seed"]
    task = grid_task("fixed")
    model_cfg = encoder.ModelConfig(
        num_tokens=task.num_tokens,
        num_positions=SEQ_LEN,
        norm="post",
        dtype="bfloat16",
        **{k: v for k, v in size.items() if k != "batch_size"},
    )
    cfg = engine.TrainConfig(1, schedule="constant")
    params = encoder.count_params(engine.build(task, model_cfg, cfg)[0].params)
    state_bytes = 4 * params * 4  # float32 params, gradients, Adam mu and nu
    grad_bytes = 4 * params
    print(
        f"seed model: {params:,} parameters; params + grads + Adam state {state_bytes / 1e6:.0f} "
        f"MB per replica; gradients all-reduced per step {grad_bytes / 1e6:.0f} MB (float32); "
        f"global batch {FLAGS.global_batch}; assumed {FLAGS.peak_tflops:g} TFLOP/s x MFU "
        f"{FLAGS.mfu:g}, all-reduce {FLAGS.allreduce_gbps:g} GB/s per chip "
        f"(activations: XLA buffer assignment on {jax.default_backend()})"
    )
    print(
        "| chips | batch / chip | memory / chip | all-reduce bytes / chip / step | "
        "compute / chip / step | compute time | all-reduce time | efficiency |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in chips:
        per = FLAGS.global_batch // n
        flops = model_flops(params, size["num_layers"], per, size["embed_dim"])
        compute_s = flops / (FLAGS.peak_tflops * 1e12 * FLAGS.mfu)
        sent = 2 * (n - 1) / n * grad_bytes  # ring all-reduce: each chip sends and receives
        comm_s = sent / (FLAGS.allreduce_gbps * 1e9)
        efficiency = compute_s / (compute_s + comm_s)  # no overlap of backward and all-reduce
        memory = state_bytes + activation_bytes(task, model_cfg, per)
        print(
            f"| {n} | {per} | {memory / 1e9:.2f} GB | {sent / 1e6:.0f} MB | "
            f"{flops / 1e12:.2f} TFLOP | {compute_s * 1e3:.1f} ms | {comm_s * 1e3:.2f} ms | "
            f"{efficiency:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    define_flags()
    usage.run(main)
