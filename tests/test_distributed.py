"""Data parallelism: 8 host devices vs 1, two jax.distributed processes, launch.sh commands.

Each case needs a fresh process (the device count and jax.distributed are fixed at start-up),
so they run as subprocesses, kept small: the suite has a 5-minute budget.
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

import rectbert
from rectbert import shapes
from tests.test_experiments_cli import ROOT, TINY

EIGHT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}

# a few steps of the real grid train step on a mesh of 1 device and of 8 devices, replicated
# and fsdp-sharded; prints losses, shardings and the final parameters' checksums as JSON
MESH_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, jax, jax.numpy as jnp, numpy as np
    from rectbert import model, shapes, tasks, train
    assert jax.device_count() == 8
    centroids = jax.random.uniform(jax.random.key(0), (8, 16))
    rects = shapes.sample_rects(jax.random.key(1), 20)
    task = tasks.GridTask(mask=tasks.MaskSpec(count=34), centroids=centroids, prior={},
                          train_rects=rects, presentations=2)
    cfg_m = model.ModelConfig(num_tokens=8, num_positions=169, embed_dim=32, mlp_dim=64,
                              num_heads=4, num_layers=1)
    out = {}
    for name, devices, sharding in [("one", jax.devices()[:1], "replicated"),
                                    ("eight", jax.devices(), "replicated"),
                                    ("eight_fsdp", jax.devices(), "fsdp")]:
        cfg = train.TrainConfig(num_steps=4, batch_size=16, learning_rate=3e-3,
                                param_sharding=sharding)
        mesh = train.make_mesh(devices)
        state = train.init_state(cfg_m, cfg, task, mesh)
        step = train.make_train_step(task, cfg_m, cfg, mesh)
        losses = []
        for i in range(4):
            state, m = step(state, np.int32(i))
            losses.append(float(m["train/loss"]))
        kernel = state.params["block0"]["mlp_in"]["kernel"]
        out[name] = dict(
            losses=losses,
            kernel_devices=len(kernel.sharding.device_set),
            kernel_replicated=kernel.sharding.is_fully_replicated,
            kernel_sum=float(jnp.abs(kernel).sum()),
        )
    import sys  # an fsdp checkpoint on 8 devices, for a 1-device process to load
    fsdp = train.TrainConfig(num_steps=2, batch_size=16, param_sharding="fsdp", eval_batch_size=8)
    train.train(dataclasses.replace(task, eval_examples=8), cfg_m, fsdp, sys.argv[1])
    try:
        train.train(task, cfg_m, train.TrainConfig(num_steps=1, batch_size=12), "/nonexistent")
    except ValueError as e:
        out["indivisible"] = str(e)
    print(json.dumps(out))
    """
)


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
    assert "batch_size=12" in out["indivisible"] and "8 devices" in out["indivisible"]
    # this process has one device: load_run restores the 8-device fsdp checkpoint onto it
    run = rectbert.load_run(str(tmp_path / "fsdp"))
    assert run.step == 2 and jax.device_count() == 1
    points = np.broadcast_to(np.asarray(shapes.lattice_points()), (1, 169, 2))
    probs = np.asarray(run.predict(points, np.zeros((1, 169), int), np.arange(169)[None] < 100))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_indivisible_global_batch_is_a_one_line_flag_error(tmp_path):
    env = {**os.environ, **EIGHT}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.grid", "--batch_size=12", f"--workdir={tmp_path}/r"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "--batch_size=12" in lines[0] and "8 devices" in lines[0]
    assert not (tmp_path / "r").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_stop_together_and_agree(tmp_path):
    # a SIGTERM to one process only: jax's preemption service makes both stop at one step,
    # with one checkpoint and one metrics.jsonl, both reporting the same training loss
    workdir = tmp_path / "grid"
    args = [
        f"--workdir={workdir}",
        "--num_steps=300",
        "--num_train_rects=20",
        "--codebook_rects=10",
        "--num_clusters=8",
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
    for line in procs[0].stdout:
        seen.append(line)
        if line.startswith("step 20/"):
            procs[1].send_signal(signal.SIGTERM)
            break
    outs = ["".join(seen) + procs[0].communicate(timeout=240)[0], procs[1].communicate()[0]]
    assert [p.returncode for p in procs] == [143, 143], outs[0][-2000:] + outs[1][-2000:]
    ends = [
        re.findall(rf"process {i}/2: step (\d+), train/loss (\S+)", o) for i, o in enumerate(outs)
    ]
    assert len(ends[0]) == len(ends[1]) == 1 and ends[0] == ends[1], ends  # same step, loss
    step = int(ends[0][0][0])
    assert 20 < step < 300 and f"stopped by signal 15 at step {step}" in outs[1]
    assert "step 20/300" in outs[0] and "step 20/300" not in outs[1]  # only process 0 reports
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, step + 1, 10))  # written once
    assert sorted(os.listdir(workdir / "ckpt")) == [str(step)]  # both saved one checkpoint


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
