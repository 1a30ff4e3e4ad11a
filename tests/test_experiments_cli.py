"""The experiments as a user runs them (subprocesses: tests never import experiments)."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import rectbert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--embed_dim=16",
    "--mlp_dim=32",
    "--num_heads=2",
    "--num_layers=1",
    "--batch_size=8",
    "--log_every=2",
    "--eval_every=3",
    "--checkpoint_every=3",
    "--eval_examples=16",
]


def run(module, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "module,args,flag",
    [
        ("experiments.grid", ["--mask_ratio=1.5"], "mask_ratio"),
        ("experiments.grid", ["--position=rope"], "position"),
        ("experiments.grid", ["--num_clusters=0"], "num_clusters"),
        ("experiments.grid", ["--embed_dim=30"], "embed_dim"),
        ("experiments.grid", ["--num_train_rects=0"], "num_steps"),
        ("experiments.squares", ["--max_square=9"], "max_square"),
        ("experiments.squares", ["--batch_size=abc"], "batch_size"),
        ("experiments.sparse", ["--position=learned"], "position"),
        ("experiments.sparse", ["--point_sampler=gauss"], "point_sampler"),
        ("experiments.sparse", ["--mask_count=24"], "mask_count"),
        ("experiments.sparse", ["--num_points=1"], "num_points"),
        ("experiments.sparse", ["--eval_oracle", "--point_sampler=edges"], "eval_oracle"),
        ("experiments.sparse", ["--dense_spacing=0"], "dense_spacing"),
        ("experiments.sparse", ["--soft_temperature=0"], "soft_temperature"),
        ("experiments.sparse", ["--label_smoothing=1.5"], "label_smoothing"),
        ("experiments.grid", ["--learning_rate=0"], "learning_rate"),
        ("experiments.grid", ["--num_layers=0"], "num_layers"),
        ("experiments.grid", ["--dropout=1.0"], "dropout"),
        ("experiments.grid", ["--batch_size=-4"], "batch_size"),
        ("experiments.grid", ["--min_side=300"], "min_side"),
        ("experiments.grid", ["--min_side=64", "--max_side=40"], "max_side"),
        ("experiments.grid", ["--aspect=3,1"], "aspect"),
        ("experiments.grid", ["--loss=hinge"], "loss"),
        ("experiments.grid", ["--eval_examples=0"], "eval_examples"),
        ("experiments.squares", ["--fourier_scale=0"], "fourier_scale"),
        ("experiments.squares", ["--mask_schedule=linear"], "mask_schedule"),
        ("experiments.squares", ["--loss=soft"], "loss"),
        ("experiments.grid", ["--attention_impl=cudnn"], "attention_impl"),  # CPU: no cuDNN
        ("experiments.grid", ["--distributed", "--num_processes=2"], "coordinator_address"),
        (
            "experiments.sparse",
            [
                "--distributed",
                "--coordinator_address=127.0.0.1:9",
                "--num_processes=2",
                "--process_id=2",
            ],
            "process_id",
        ),
    ],
)
def test_bad_flags_fail_in_one_line_before_writing_anything(tmp_path, module, args, flag):
    workdir = tmp_path / "run"
    out = run(module, *args, f"--workdir={workdir}")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--{flag}" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not workdir.exists()


def test_unwritable_workdir_fails_in_one_line():
    out = run("experiments.grid", "--workdir=/proc/rectbert_cannot_write_here")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert "--workdir=/proc/rectbert_cannot_write_here" in out.stderr


def test_grid_run_writes_the_design_workdir_and_resumes(tmp_path):
    workdir = tmp_path / "grid"
    args = [
        f"--workdir={workdir}",
        "--num_steps=4",
        "--num_train_rects=20",
        "--codebook_rects=10",
        "--num_clusters=8",
        *TINY,
    ]
    first = run("experiments.grid", *args)
    assert first.returncode == 0, first.stderr
    assert "step 4/4" in first.stdout and "steps/s" in first.stdout and "ETA" in first.stdout
    names = set(os.listdir(workdir))
    assert {"flags.txt", "metrics.jsonl", "codebook.npy", "ckpt", "figures"} <= names
    assert np.load(workdir / "codebook.npy").shape == (8, 16)
    figures = set(os.listdir(workdir / "figures"))
    assert {
        "training_curves.png",
        "RectangleGridInpainting.png",
        "RectangleClusterCenters.png",
    } <= figures
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert all("step" in r for r in rows)
    assert {"train/loss", "train/masked_accuracy", "lr", "steps_per_sec"} <= set(rows[0])
    assert {"eval/masked_accuracy", "eval/pixel_mse", "eval/codebook_pixel_mse"} <= set(rows[-1])
    # flags.txt re-runs the same job: it resumes and trains nothing twice
    again = run("experiments.grid", f"--flagfile={workdir / 'flags.txt'}")
    assert again.returncode == 0, again.stderr
    assert "already trained to step 4" in again.stdout
    assert [json.loads(line) for line in open(workdir / "metrics.jsonl")] == rows
    # resuming with a flag that changes the model is refused, in one line, changing nothing
    flags_before = (workdir / "flags.txt").read_text()
    drift = run("experiments.grid", f"--flagfile={workdir / 'flags.txt'}", "--embed_dim=32")
    assert drift.returncode != 0 and len(drift.stderr.strip().splitlines()) == 1
    assert "--embed_dim=16 -> --embed_dim=32" in drift.stderr
    assert (workdir / "flags.txt").read_text() == flags_before


def test_sparse_run_draws_its_figures_and_logs_the_gap(tmp_path):
    workdir = tmp_path / "sparse"
    out = run(
        "experiments.sparse",
        f"--workdir={workdir}",
        "--num_steps=3",
        "--codebook_rects=10",
        "--num_clusters=8",
        "--num_train_rects=10",
        "--dense_spacing=48",
        *TINY,
    )
    assert out.returncode == 0, out.stderr
    figures = set(os.listdir(workdir / "figures"))
    assert {
        "RectangleTestResults.png",
        "RectangleContinuousTrainingLoss.png",
        "confusion.png",
        "dense_rendering.png",
        "occlusion.png",
    } <= figures
    last = [json.loads(line) for line in open(workdir / "metrics.jsonl")][-1]
    assert last["eval/gap"] == pytest.approx(
        last["eval/train_masked_accuracy"] - last["eval/masked_accuracy"]
    )
    assert {"eval/majority_accuracy", "eval/nearest_accuracy", "eval/token_accuracy/00"} <= set(
        last
    )
    # the run loads back and predicts at any continuous points
    loaded = rectbert.load_run(str(workdir))
    assert loaded.step == 3 and loaded.codebook.shape == (8, 16)
    points = np.random.default_rng(0).uniform(32, 224, (2, 30, 2))
    probs = np.asarray(loaded.predict(points, np.zeros((2, 30), int), np.arange(30) < 20))
    assert probs.shape == (2, 30, 8)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_sigterm_saves_and_the_resumed_run_is_bit_identical(tmp_path):
    args = [
        *TINY,
        "--num_steps=300",
        "--log_every=20",
        "--eval_every=1000",
        "--checkpoint_every=1000",
    ]
    full = run("experiments.squares", f"--workdir={tmp_path / 'full'}", *args)
    assert full.returncode == 0, full.stderr
    # interrupted three times, at different points between periodic checkpoints, and resumed
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "experiments.squares", f"--workdir={tmp_path / 'cut'}", *args]
    for stop_at in (40, 120, 220):
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for line in proc.stdout:
            if line.startswith(f"step {stop_at}/"):
                proc.send_signal(signal.SIGTERM)
                break
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM and "checkpoint saved" in err, err
    resumed = run("experiments.squares", f"--workdir={tmp_path / 'cut'}", *args)
    assert resumed.returncode == 0 and "resumed from checkpoint" in resumed.stdout
    a, b = rectbert.load_run(str(tmp_path / "full")), rectbert.load_run(str(tmp_path / "cut"))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    def rows(name):
        with open(tmp_path / name / "metrics.jsonl") as f:
            return [
                {k: v for k, v in json.loads(line).items() if k != "steps_per_sec"} for line in f
            ]

    assert rows("cut") == rows("full")


def test_sigkill_during_saves_resumes_from_the_last_complete_checkpoint(tmp_path):
    args = [
        "--embed_dim=64",
        "--mlp_dim=256",
        "--num_heads=2",
        "--num_layers=2",
        "--batch_size=8",
        "--num_steps=30",
        "--log_every=5",
        "--eval_every=1000",
        "--checkpoint_every=1",
        "--eval_examples=16",
    ]
    full = run("experiments.squares", f"--workdir={tmp_path / 'full'}", *args)
    assert full.returncode == 0, full.stderr
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.squares", f"--workdir={cut}", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("step 10/"):
            proc.kill()  # SIGKILL: no handler runs; a save is usually in flight (one per step)
            break
    proc.wait(timeout=60)
    steps = sorted(int(d) for d in os.listdir(cut / "ckpt") if d.isdigit())
    # make sure a torn save is there even if the kill fell between two saves
    torn = cut / "ckpt" / f"{steps[-1] + 1}.orbax-checkpoint-tmp"
    torn.mkdir(exist_ok=True)
    (torn / "partial").write_text("half a checkpoint")
    resumed = run("experiments.squares", f"--workdir={cut}", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "ignoring incomplete checkpoint" in resumed.stdout
    assert f"resumed from checkpoint at step {steps[-1]}" in resumed.stdout
    a, b = rectbert.load_run(str(tmp_path / "full")), rectbert.load_run(str(cut))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
