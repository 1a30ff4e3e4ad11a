"""Data parallelism: 8 host devices vs 1, two jax.distributed processes, launch.sh commands.

Each case needs a fresh process (the device count and jax.distributed are fixed at start-up),
so they run as subprocesses, kept small (the slow tier: several processes).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import rectbert
from rectbert import scenes
from rectbert.data import tasks
from rectbert.data.scene_tasks import GridTask
from rectbert.training import metrics
from tests.conftest import ROOT, TINY, TINY_CODEBOOK

EIGHT = {  # beside the suite's own XLA flags (conftest.py)
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8",
    "JAX_PLATFORMS": "cpu",
}

# a few steps of the real grid train step on a mesh of 1 device and of 8 devices, replicated
# and fsdp-sharded; prints losses, shardings and the final parameters' checksums as JSON. Then
# a short fsdp run on 8 devices, whose predictions on a fixed batch (from the sharded params
# in memory) are saved for a 1-device process to compare with load_run's; and the grid
# experiment's one-line error for a batch the 8 devices do not divide.
MESH_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, os, sys, jax, jax.numpy as jnp, numpy as np
    from experiments import cli
    from rectbert.recipes import grid
    from rectbert.training import evaluation
    from rectbert.training import metrics
    from rectbert.model import encoder
    from rectbert import scenes
    from rectbert.data import tasks
    from rectbert.training import engine
    from rectbert.training import train
    from rectbert.training.engine import RunConfig
    from rectbert.data.scene_tasks import GridTask
    assert jax.device_count() == 8
    centroids = jax.random.uniform(jax.random.key(0), (8, 16))
    task = GridTask(scenes.scene("rect"), tasks.MaskSpec(count=34), num_train=20, num_clusters=8,
                    presentations=2, eval_examples=8).with_codebook(centroids)
    cfg_m = encoder.ModelConfig(num_tokens=8, num_positions=169, embed_dim=32, mlp_dim=64,
                              num_heads=4, num_layers=1)
    out = {}
    for name, devices in [("one", jax.devices()[:1]), ("eight", jax.devices())]:
        cfg = engine.TrainConfig(num_steps=4, batch_size=16, learning_rate=3e-3)
        state, step = engine.build(task, cfg_m, cfg, engine.make_mesh(devices))
        losses = []
        for i in range(4):
            state, m = step(state, np.int32(i))
            losses.append(float(m["train/loss"]))
        out[name] = dict(losses=losses, kernel=state.params["block0"]["mlp_in"]["kernel"])
    # the same 4 steps with fsdp through train() itself, which writes a checkpoint for a
    # 1-device process to load; and the predictions of its sharded parameters on a fixed batch
    fsdp = engine.TrainConfig(num_steps=4, batch_size=16, learning_rate=3e-3, log_every=1,
                             eval_every=4, param_sharding="fsdp", eval_batch_size=8)
    state, _ = train.train(RunConfig(task, cfg_m, fsdp), sys.argv[1])
    losses = [r["train/loss"] for r in metrics.read(sys.argv[1]) if "train/loss" in r]
    out["eight_fsdp"] = dict(losses=losses, kernel=state.params["block0"]["mlp_in"]["kernel"])
    for v in out.values():
        kernel = v.pop("kernel")
        v.update(kernel_devices=len(kernel.sharding.device_set),
                 kernel_replicated=kernel.sharding.is_fully_replicated,
                 kernel_sum=float(jnp.abs(kernel).sum()))
    batch = task.eval_set()
    logits = evaluation.make_predict(cfg_m)(state.params, batch)
    np.save(sys.argv[1] + "/probs.npy", np.asarray(jax.nn.softmax(logits, -1)))
    try:  # refused by train() before it writes anything
        cli.run(grid, "--batch_size=12", "--workdir=" + sys.argv[1] + "_indivisible")
    except cli.Error as e:
        out["indivisible"] = str(e)
    assert not os.path.exists(sys.argv[1] + "_indivisible")
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_eight_devices_train_as_one_for_the_same_global_batch(tmp_path):
    env = {**os.environ, **EIGHT}
    done = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT, str(tmp_path / "fsdp")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    one, eight, fsdp = out["one"], out["eight"], out["eight_fsdp"]
    assert one["kernel_devices"] == 1 and eight["kernel_devices"] == 8
    assert eight["kernel_replicated"] and not fsdp["kernel_replicated"]
    assert one["losses"][0] > one["losses"][-1]  # it trains
    for other in (eight, fsdp):  # same batch, same maths: only summation order differs
        assert abs(other["kernel_sum"] - one["kernel_sum"]) < 1e-4 * one["kernel_sum"]
        for a, b in zip(one["losses"], other["losses"], strict=True):
            assert abs(a - b) < 1e-5 * abs(a), (one["losses"], other["losses"])
    line = out["indivisible"]
    assert line.startswith("--batch_size=12") and "8 devices" in line and "\n" not in line
    # this process has one device: load_run restores the 8-device fsdp checkpoint onto it and
    # predicts what the 8-device process predicted from its sharded parameters
    run = rectbert.load_run(str(tmp_path / "fsdp"))
    assert run.step == 4
    want = np.load(tmp_path / "fsdp" / "probs.npy")
    config = json.loads((tmp_path / "fsdp" / "config.json").read_text())
    assert config["task"]["name"] == "grid"
    task = GridTask(
        scenes.scene("rect"),
        tasks.MaskSpec(count=34),
        num_train=20,
        num_clusters=8,
        presentations=2,
        eval_examples=8,
    ).with_codebook(jax.random.uniform(jax.random.key(0), (8, 16)))
    batch = task.eval_set()  # the same held-out batch: a function of the seed alone
    got = np.asarray(run.predict(batch.points, batch.tokens, ~batch.mask))
    np.testing.assert_allclose(got, want, atol=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together_stop_together_and_agree(tmp_path):
    # Ctrl-C (SIGINT) to one process only: handed to jax's preemption service as a SIGTERM,
    # which makes both stop at one step (none waits alone in a collective), with one
    # checkpoint and one metrics.jsonl, both reporting the same training loss
    workdir = tmp_path / "grid"
    args = [
        f"--workdir={workdir}",
        "--num_steps=300",
        "--num_train_rects=20",
        *TINY_CODEBOOK,
        *TINY,
        "--log_every=10",  # after TINY: these win
        "--eval_every=1000",
        "--checkpoint_every=1000",
        "--distributed",
        f"--coordinator_address=127.0.0.1:{free_port()}",
        "--num_processes=2",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.grid", *args, f"--process_id={i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    seen = []
    try:  # a hang (a process stopping alone) fails in 2 minutes and leaves no process behind
        for line in procs[0].stdout:
            seen.append(line)
            if line.startswith("step 20/"):
                procs[1].send_signal(signal.SIGINT)
                break
        outs = [
            "".join(seen) + procs[0].communicate(timeout=120)[0],
            procs[1].communicate(timeout=60)[0],
        ]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [143, 130], outs[0][-2000:] + outs[1][-2000:]
    ends = [
        re.findall(rf"process {i}/2: step (\d+), train/loss (\S+)", o) for i, o in enumerate(outs)
    ]
    assert len(ends[0]) == len(ends[1]) == 1 and ends[0] == ends[1], ends  # same step, loss
    step = int(ends[0][0][0])
    assert 20 < step < 300 and f"stopped by signal 2 at step {step}" in outs[1]
    assert f"stopped by signal 15 at step {step}" in outs[0]
    assert "step 20/300" in outs[0] and "step 20/300" not in outs[1]  # only process 0 reports
    rows = metrics.read(workdir)
    assert [r["step"] for r in rows] == list(range(10, step + 1, 10))  # written once
    assert sorted(os.listdir(workdir / "ckpt")) == [str(step)]  # both saved one checkpoint


@pytest.mark.slow
def test_launch_dry_run_prints_the_worker_all_commands():
    done = subprocess.run(
        [
            "bash",
            "launch.sh",
            "--dry-run",
            "my-tpu",
            "us-central2-b",
            "experiments.grid",
            "--flagfile=experiments/flags/grid_seed.flags",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    scp = [ln for ln in lines if "tpu-vm scp" in ln]
    ssh = [ln for ln in lines if "tpu-vm ssh" in ln]
    assert len(scp) == 1 and "--worker=all" in scp[0] and "my-tpu:" in scp[0]
    assert len(ssh) == 2 and all(
        "--worker=all" in ln and "--zone=us-central2-b" in ln for ln in ssh
    )
    assert "pip install" in ssh[0] and "tpu" in ssh[0]
    run = ssh[1]
    assert "python -m experiments.grid --distributed" in run and "grid_seed.flags" in run
    bad = subprocess.run(["bash", "launch.sh", "my-tpu"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "usage" in bad.stderr.lower()
