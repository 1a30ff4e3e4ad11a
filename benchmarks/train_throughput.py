"""Train-step throughput: rectbert's real grid train step vs Hugging Face BertForMaskedLM.

python -m benchmarks.train_throughput [--size=seed|small --batch_size=N --steps=30 --nopeer]
Model FLOPs per step = 6 * params * tokens + 12 * layers * batch * L^2 * d (L = 169 real
tokens, padding not counted); MFU is against a matmul peak measured in this process. Both
sides are timed the same way: median of per-step times, each step synchronised with the device,
compilation excluded. The last line is one summary: ours, peer, ratio, MFU.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import usage
from benchmarks.peak import matmul_peak_tflops
from rectbert import config, scenes
from rectbert.data import tasks
from rectbert.data.scene_tasks import GridTask
from rectbert.model import encoder, losses, relative
from rectbert.training import engine, signals

SIZES = {  # the write-up's model, and one this CPU times in seconds
    "seed": dict(embed_dim=640, mlp_dim=1600, num_heads=8, num_layers=6, batch_size=1024),
    "small": dict(embed_dim=128, mlp_dim=320, num_heads=4, num_layers=2, batch_size=64),
}
# variant -> (dtype, attention_impl, pad_to, relative); "fast" is what the experiments run by
# default; fast_<relative>: the same with that relative geometry in attention (--relative)
VARIANTS = {
    "plain": ("float32", "xla", 1, "none"),
    "bf16": ("bfloat16", "xla", 1, "none"),
    "bf16_pad": ("bfloat16", "xla", 8, "none"),
    "fast": (None, "auto", 0, "none"),
    **{f"fast_{r}": (None, "auto", 0, r) for r in relative.RELATIVES if r != "none"},
}

FLAGS = flags.FLAGS
SEQ_LEN, NUM_TOKENS, MASK_COUNT = 169, 20, 34


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_enum(
        "size", "small", list(SIZES), "seed: the write-up's 22.3 M model; small: CPU."
    )
    flags.DEFINE_integer("batch_size", 0, "Global batch; 0: the size's default (seed 1024).")
    flags.DEFINE_integer("steps", 30, "Timed steps per measurement (median reported), >= 20.")
    flags.DEFINE_bool("peer", True, "Also time BertForMaskedLM (torch) when importable.")
    flags.DEFINE_bool("peer_compile", True, "Also time the peer under torch.compile.")
    flags.DEFINE_list("variants", ["fast"], f"rectbert variants to time: {', '.join(VARIANTS)}.")
    flags.DEFINE_enum(
        "dtype",
        "auto",
        ["auto", "float32", "bfloat16"],
        "auto: bfloat16 on GPU/TPU, float32 on CPU.",
    )
    flags.DEFINE_enum("data", "fixed", ["fixed", "fresh"], "100 fixed rectangles, or fresh ones.")
    flags.DEFINE_string("json", "", "Also write the measurements to this JSON file.")
    flags.DEFINE_bool(
        "peer_only",
        False,
        "Internal: time only the peer and write its rows to --json (the child process that "
        "main starts before JAX claims the accelerator's memory).",
    )
    flags.DEFINE_bool(
        "check_fast_path",
        False,
        "First compare the fast variant's loss and gradients with float32.",
    )


def median_step_seconds(step, steps: int, warmup: int = 3) -> float:
    """Median wall time of one `step()` (which must block until the device is done)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def model_flops(params: int, layers: int, batch: int, d: int) -> float:
    return 6.0 * params * batch * SEQ_LEN + 12.0 * layers * batch * SEQ_LEN**2 * d


def grid_task(data: str):
    """experiments.grid's task: the default rectangle scene, 100 fixed shapes or fresh ones."""
    task = GridTask(
        scenes.scene("rect"),
        tasks.MaskSpec(count=MASK_COUNT),
        num_train=100 if data == "fixed" else 0,
        num_clusters=NUM_TOKENS,
    )
    return task.with_codebook(task.fit_codebook()[0])


def variant_config(task, size: dict, variant: str, dtype: str) -> encoder.ModelConfig:
    v_dtype, impl, pad_to, rel = VARIANTS[variant]
    return encoder.ModelConfig(
        relative=rel,
        # an entry that sees no absolute position (te) gets none
        position="learned" if relative.RELATIVES[rel].absolute else "none",
        num_tokens=task.num_tokens,
        num_positions=SEQ_LEN,
        embed_dim=size["embed_dim"],
        mlp_dim=size["mlp_dim"],
        num_heads=size["num_heads"],
        num_layers=size["num_layers"],
        norm="post",
        dtype=v_dtype or dtype,
        attention_impl=impl,
        pad_to=pad_to,
    )


def check_fast_path(task, size: dict, dtype: str, batch: int) -> str:
    """The fast variant's masked loss and gradients against plain float32, one real batch."""
    cfg = engine.TrainConfig(num_steps=1, batch_size=batch, schedule="constant")
    params = engine.build(task, variant_config(task, size, "plain", dtype), cfg)[0].params
    data = task.train_batch(0, batch)

    def loss_and_grads(variant):
        model = encoder.Encoder(variant_config(task, size, variant, dtype))

        def loss(p):
            out = model.apply({"params": p}, data.model_inputs(task.num_tokens), data.points)
            return losses.masked_cross_entropy(out.logits, data)

        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        return float(value), jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)])

    (l32, g32), (lf, gf) = loss_and_grads("plain"), loss_and_grads("fast")
    cosine = float(g32 @ gf / jnp.linalg.norm(g32) / jnp.linalg.norm(gf))
    return (
        f"fast path check ({variant_config(task, size, 'fast', dtype).dtype}, "
        f"{encoder.resolve_attention(variant_config(task, size, 'fast', dtype))[0]} attention)"
        f": loss {lf:.5f} vs float32 {l32:.5f} (relative {abs(lf - l32) / l32:.2e}), "
        f"gradient cosine {cosine:.5f}"
    )


def time_ours(task, size: dict, batch: int, variant: str, dtype: str, steps: int) -> dict:
    """The train step experiments.grid runs (engine.make_train_step), at this size."""
    model_cfg = variant_config(task, size, variant, dtype)
    cfg = engine.TrainConfig(num_steps=10**6, batch_size=batch, learning_rate=1e-5)
    state, step_fn = engine.build(task, model_cfg, cfg)
    box = [state, 0]

    def one():
        box[0], metrics = step_fn(box[0], np.int32(box[1]))
        box[1] += 1
        jax.block_until_ready(metrics)

    t = time.perf_counter()
    one()
    compile_s = time.perf_counter() - t
    seconds = median_step_seconds(one, steps)
    make = jax.jit(lambda s: task.train_batch(s, batch))
    jax.block_until_ready(make(0))
    data_s = median_step_seconds(lambda: jax.block_until_ready(make(jnp.int32(1))), steps)
    params = encoder.count_params(box[0].params)
    impl_used, pad_used = encoder.resolve_attention(model_cfg)
    return dict(
        name=f"rectbert {variant} ({model_cfg.dtype}, {impl_used} attention, "
        f"L {SEQ_LEN}->{-(-SEQ_LEN // pad_used) * pad_used})",
        params=params,
        step_s=seconds,
        compile_s=compile_s,
        data_s=data_s,
    )


def time_peer(size: dict, batch: int, dtype: str, steps: int, compiled: bool) -> dict:
    """BertForMaskedLM at identical shapes: bf16 autocast (when bf16), fused AdamW, SDPA;
    tokens and masks drawn on the device inside the step, like ours."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=NUM_TOKENS + 1,
        hidden_size=size["embed_dim"],
        intermediate_size=size["mlp_dim"],
        num_attention_heads=size["num_heads"],
        num_hidden_layers=size["num_layers"],
        max_position_embeddings=SEQ_LEN,
        type_vocab_size=1,
        hidden_act="gelu_new",  # tanh approximation, as flax's nn.gelu
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="sdpa",
    )
    model = BertForMaskedLM(config).to(dev).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, fused=dev == "cuda")
    forward = torch.compile(model) if compiled else model
    autocast = dtype == "bfloat16"

    def one():
        tokens = torch.randint(0, NUM_TOKENS, (batch, SEQ_LEN), device=dev)
        hide = torch.rand(batch, SEQ_LEN, device=dev).argsort(-1)[:, :MASK_COUNT]
        labels = torch.full_like(tokens, -100).scatter(1, hide, tokens.gather(1, hide))
        inputs = tokens.scatter(1, hide, NUM_TOKENS)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
            loss = forward(input_ids=inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    one()
    compile_s = time.perf_counter() - t
    seconds = median_step_seconds(one, steps)
    mode = "torch.compile" if compiled else "eager"
    return dict(
        name=f"peer BertForMaskedLM {mode} ({dtype}, sdpa, torch {torch.__version__})",
        mode=mode,
        params=params,
        step_s=seconds,
        compile_s=compile_s,
        data_s=None,
    )


def time_peers(size: dict, batch: int, dtype: str) -> list[dict]:
    """The peer eager and (with --peer_compile) compiled; a failing mode is reported, skipped."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"peer skipped: {e}", flush=True)
        return []
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    rows = []
    for compiled in (False, True) if FLAGS.peer_compile else (False,):
        try:
            rows.append(time_peer(size, batch, dtype, FLAGS.steps, compiled))
        except signals.Interrupted:  # a stop is not a failure to report and pass by
            raise
        except Exception as e:  # noqa: BLE001  (torch.compile may lack a compiler)
            print(f"peer (compile={compiled}) failed: {type(e).__name__}: {str(e)[:300]}")
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def run_peer_child(batch: int) -> list[dict]:
    """Time the peer in a child process (same flags) and return its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "peer.json")
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.train_throughput",
            "--peer_only",
            f"--size={FLAGS.size}",
            f"--batch_size={batch}",
            f"--steps={FLAGS.steps}",
            f"--dtype={FLAGS.dtype}",
            f"--peer_compile={FLAGS.peer_compile}",
            f"--json={out}",
        ]
        env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
        rc = subprocess.run(cmd, env=env).returncode
        if rc != 0 or not os.path.exists(out):
            print(f"peer child process failed (exit {rc})", flush=True)
            return []
        with open(out) as f:
            return json.load(f)


def check(steps: int, variants, size: str, batch_size: int, json_path="", peer_only=False) -> int:
    """The global batch from the flags' values, or a usage.Error naming the flag (before any
    compute)."""
    usage.integer("steps", steps, 20, 10**6)
    usage.names("variants", variants, VARIANTS)
    if peer_only and not json_path:
        raise usage.refuse("peer_only", peer_only, "true only with --json (its rows go there)")
    batch = batch_size or SIZES[size]["batch_size"]
    try:  # the train step's own bounds
        engine.TrainConfig(num_steps=1, batch_size=batch)
    except config.ConfigError as e:
        raise usage.refuse("batch_size", batch_size, f"0 (the size's) or {e.allowed}") from None
    usage.output("json", json_path)  # last: it makes the folder
    return batch


def main(argv):
    del argv  # none (usage.run)
    batch = check(
        FLAGS.steps, FLAGS.variants, FLAGS.size, FLAGS.batch_size, FLAGS.json, FLAGS.peer_only
    )
    size = SIZES[FLAGS.size]
    if FLAGS.peer_only:  # the child: never touches JAX's backend
        json.dump(time_peers(SIZES[FLAGS.size], batch, FLAGS.dtype), open(FLAGS.json, "w"))
        return
    # The peer runs first, in a child process that exits before this process's JAX backend
    # preallocates most of the accelerator's memory (in one process torch ran out of memory).
    peers = run_peer_child(batch) if FLAGS.peer else []
    dtype = FLAGS.dtype
    if dtype == "auto":
        dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    device = jax.devices()[0].device_kind
    peaks = {d: matmul_peak_tflops(d) for d in ("bfloat16", "float32")}
    peak = max(peaks.values())
    print(
        f"{device} ({jax.default_backend()}), jax {jax.__version__}; matmul peak "
        + ", ".join(f"{d} {p:.1f}" for d, p in peaks.items())
        + f" TFLOP/s; size {FLAGS.size}, batch {batch}, L {SEQ_LEN}, {FLAGS.data} data",
        flush=True,
    )
    task = grid_task(FLAGS.data)
    rows = []
    if FLAGS.check_fast_path:
        print(check_fast_path(task, size, dtype, min(batch, 64)), flush=True)
    for variant in FLAGS.variants:
        try:  # e.g. out of memory for float32 at a large batch: report it and go on
            rows.append(time_ours(task, size, batch, variant, dtype, FLAGS.steps))
        except signals.Interrupted:  # a stop is not a failure to report and pass by
            raise
        except Exception as e:  # noqa: BLE001
            print(f"rectbert {variant} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
            continue
        report(rows[-1], size, batch, peak)
    if not rows:
        raise SystemExit("error: every rectbert variant failed")
    ours = min(rows, key=lambda r: r["step_s"])
    for row in peers:
        report(row, size, batch, peak, ours_params=ours["params"])
    summary = summarise(device, size, batch, ours, peers, peak)
    if FLAGS.json:
        measured = dict(device=device, size=FLAGS.size, batch=batch, peaks=peaks)
        with open(FLAGS.json, "w") as f:
            json.dump({**measured, "ours": rows, "peers": peers, "summary": summary}, f, indent=1)
    print(summary, flush=True)


def summarise(device: str, size: dict, batch: int, ours: dict, peers: list, peak: float) -> str:
    """The last line: our best variant's TFLOP/s, the best peer's, their ratio, our MFU."""
    flops = model_flops(ours["params"], size["num_layers"], batch, size["embed_dim"])
    tflops = flops / ours["step_s"] / 1e12
    summary = f"summary: {device}, size {FLAGS.size}, batch {batch}: ours {tflops:.3g} TFLOP/s"
    if peers:
        peer = min(peers, key=lambda r: r["step_s"])
        summary += (
            f", peer {flops / peer['step_s'] / 1e12:.3g} TFLOP/s ({peer['mode']}), "
            f"ratio {peer['step_s'] / ours['step_s']:.2f}x"
        )
    return summary + f", MFU {tflops / peak:.1%} of {peak:.3g}"


def report(row: dict, size: dict, batch: int, peak: float, ours_params: int | None = None):
    """One line per measurement; the peer is credited with our model's FLOPs (same work)."""
    params = ours_params or row["params"]
    flops = model_flops(params, size["num_layers"], batch, size["embed_dim"])
    tflops = flops / row["step_s"] / 1e12
    data = f", batch generation {row['data_s'] * 1e3:.2f} ms" if row["data_s"] else ""
    print(
        f"{row['name']}: {row['params']:,} params, step {row['step_s'] * 1e3:.2f} ms "
        f"(compile {row['compile_s']:.1f} s){data}, {batch * SEQ_LEN / row['step_s']:,.0f} "
        f"tokens/s, {tflops:.3g} TFLOP/s, MFU {tflops / peak:.1%}",
        flush=True,
    )


if __name__ == "__main__":
    define_flags()
    usage.run(main)
