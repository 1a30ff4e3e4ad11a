"""The experiments as a user runs them: a run writes the design's workdir, resumes, refuses
drift; the codebook experiment; the gap on training shapes; profiles; and in processes of
their own, signals and re-running a finished run from its flags.txt."""

import glob
import gzip
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import rectbert
from experiments import cli
from rectbert.recipes import codebook as codebook_recipe
from rectbert.recipes import grid, sparse, squares
from rectbert.training import metrics
from rectbert.training import workdir as workdir_lib
from rectbert.warn import RectbertWarning
from tests.conftest import ROOT, TINY, TINY_CODEBOOK, build, run_module, same_params


def grid_flags(workdir):
    return [f"--workdir={workdir}", "--num_steps=4", "--num_train_rects=20", *TINY_CODEBOOK, *TINY]


@pytest.mark.slow  # the whole command, every figure: the default tier refuses drift in the next
def test_grid_run_writes_the_design_workdir_resumes_and_refuses_drift(tmp_path, capsys):
    workdir = tmp_path / "grid"
    cli.run(grid, *grid_flags(workdir))
    out = capsys.readouterr().out
    assert "step 4/4" in out and "steps/s" in out and "ETA" in out
    names = set(os.listdir(workdir))
    assert {"flags.txt", "config.json", "metrics.jsonl", "codebook.npy", "ckpt", "figures"} <= names
    assert np.load(workdir / "codebook.npy").shape == (8, 16)
    figures = set(os.listdir(workdir / "figures"))
    assert {
        "training_curves.png",
        "RectangleGridInpainting.png",
        "RectangleClusterCenters.png",
        "DownsampledRectangle.png",
    } <= figures
    rows = metrics.read(workdir)
    assert all("step" in r for r in rows)
    assert {"train/loss", "train/masked_accuracy", "lr", "steps_per_sec"} <= set(rows[0])
    assert {"eval/masked_accuracy", "eval/pixel_mse", "eval/codebook_pixel_mse"} <= set(rows[-1])
    config = json.loads((workdir / "config.json").read_text())
    assert config["task"]["scene"]["name"] == "rect" and config["model"]["embed_dim"] == 16
    # flags.txt holds only the experiment's flags (re-running it: the next test)
    flags_before = (workdir / "flags.txt").read_text()
    assert "--embed_dim=16" in flags_before and "--verbosity" not in flags_before
    # a resume that changes the model, the scene or the experiment is refused in one line
    for recipe, extra, change in [
        (grid, ["--embed_dim=32"], "model.embed_dim: 16 -> 32"),
        (grid, ["--min_side=40"], "task.scene.min_side: 32.0 -> 40.0"),
        (grid, ["--seed=1"], "task.seed: 0 -> 1"),
        (grid, ["--num_steps=6"], "train.num_steps: 4 -> 6"),  # the cosine schedule's end
        (grid, ["--optimizer=lion"], "train.optimizer: adamw -> lion"),
        (sparse, ["--num_train_rects=20"], "task.name: grid -> sparse"),
    ]:
        with pytest.raises(cli.Error) as e:
            cli.run(recipe, *grid_flags(workdir)[:3], *TINY_CODEBOOK, *TINY, *extra)
        assert "\n" not in str(e.value) and change in str(e.value), str(e.value)
        assert str(e.value).startswith(f"--workdir={workdir}")
    assert (workdir / "flags.txt").read_text() == flags_before
    assert metrics.read(workdir) == rows
    # the safe ones may change: a finished run re-evaluated on more examples replaces its
    # final evaluation, without duplicating it
    capsys.readouterr()
    cli.run(grid, *grid_flags(workdir), "--log_every=3", "--eval_examples=64")
    assert "already trained to step 4" in capsys.readouterr().out
    again = metrics.read(workdir)
    assert len(again) == len(rows) and again[:-1] == rows[:-1]
    assert again[-1]["eval/masked_accuracy"] != rows[-1]["eval/masked_accuracy"]


def test_codebook_experiment_claims_its_workdir(tmp_path, capsys):
    workdir = tmp_path / "codebook"
    args = [f"--workdir={workdir}", "--eval_rects=20", *TINY_CODEBOOK]
    cli.run(codebook_recipe, *args)
    assert np.load(workdir / "codebook.npy").shape == (8, 16)
    assert {"DownsampledRectangle.png", "RectangleClusterCenters.png"} <= set(
        os.listdir(workdir / "figures")
    )
    fitted = (workdir / "codebook.npy").read_bytes()
    cli.run(codebook_recipe, *args)  # the same again: allowed
    assert (workdir / "codebook.npy").read_bytes() == fitted
    # another seed, or a training run, in its workdir is refused before anything is written
    with pytest.raises(cli.Error, match=r"task.seed: 0 -> 1"):
        cli.run(codebook_recipe, *args, "--seed=1")
    with pytest.raises(cli.Error, match=r"--workdir=.*experiment: codebook -> \(absent\)"):
        cli.run(grid, *grid_flags(workdir))
    assert (workdir / "codebook.npy").read_bytes() == fitted
    assert not (workdir / "ckpt").exists()
    # and it does not overwrite a training run's codebook
    grid_dir = tmp_path / "grid"
    plan = build(grid, *grid_flags(grid_dir))
    with workdir_lib.claim(str(grid_dir), plan.run.record(), files={"flags.txt": "--x=1\n"}):
        plan.run.task.prepare(str(grid_dir))  # claimed, its codebook fitted: as if killed here
    trained = (grid_dir / "codebook.npy").read_bytes()
    # that run never started (no checkpoint, no metrics line): it binds nothing. Another
    # prior takes the workdir, with a warning, and its codebook (fitted for the other prior,
    # which it would load as its own) is gone
    other = build(grid, *grid_flags(grid_dir), "--min_side=150", "--max_side=200")
    with pytest.warns(RectbertWarning, match="never saved a checkpoint or logged a step"):
        with workdir_lib.claim(str(grid_dir), other.run.record(), files={"flags.txt": "-"}):
            assert not (grid_dir / "codebook.npy").exists()
    assert json.loads((grid_dir / "config.json").read_text())["task"]["scene"]["max_side"] == 200
    with pytest.warns(RectbertWarning, match="never saved"):  # and back: fitted again, the same
        with workdir_lib.claim(str(grid_dir), plan.run.record(), files={"flags.txt": "--x=1\n"}):
            plan.run.task.prepare(str(grid_dir))
    assert (grid_dir / "codebook.npy").read_bytes() == trained
    # a damaged codebook.npy is one line, not a traceback
    (grid_dir / "codebook.npy").write_bytes(trained[:40])
    with pytest.raises(cli.Error, match="codebook.npy is unreadable"):
        cli.run(grid, *grid_flags(grid_dir))
    (grid_dir / "codebook.npy").write_bytes(trained)
    with pytest.raises(cli.Error, match="--workdir="):
        cli.run(codebook_recipe, f"--workdir={grid_dir}", *args[1:])
    assert (grid_dir / "codebook.npy").read_bytes() == trained


@pytest.mark.slow  # a profiler trace written and read back: 7 s here
def test_profile_steps_writes_a_trace_of_those_steps_only(tmp_path, capsys):
    workdir = tmp_path / "run"
    cli.run(squares, f"--workdir={workdir}", "--num_steps=8", "--profile_steps=3:6", *TINY)
    runs = glob.glob(str(workdir / "profile" / "plugins" / "profile" / "*"))
    assert len(runs) == 1, runs
    assert glob.glob(f"{runs[0]}/*.xplane.pb")  # TensorBoard's profiler reads these
    with gzip.open(f"{runs[0]}/perfetto_trace.json.gz") as f:  # Perfetto's
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    calls = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "PjitFunction(step_fn)"
    )
    outer = [
        c for i, c in enumerate(calls) if not any(o[0] <= c[0] and c[1] <= o[1] for o in calls[:i])
    ]
    assert len(outer) == 3, calls  # steps 4, 5, 6 (each call nests one event): not the 5 others
    assert "profile of steps 4..6" in capsys.readouterr().out


@pytest.mark.slow  # the whole command and its five figures (test_sparse: the same sets, focused)
def test_sparse_run_measures_the_gap_on_shapes_it_trained_on(tmp_path, capsys):
    workdir = tmp_path / "sparse"
    args = [f"--workdir={workdir}", "--num_steps=3", "--num_train_rects=6", "--fixed_points"]
    cli.run(sparse, *args, "--dense_spacing=48", *TINY_CODEBOOK, *TINY)
    figures = set(os.listdir(workdir / "figures"))
    assert {
        "RectangleTestResults.png",
        "RectangleContinuousTrainingLoss.png",
        "confusion.png",
        "dense_rendering.png",
        "occlusion.png",
    } <= figures
    last = metrics.read(workdir)[-1]
    assert {"eval/majority_accuracy", "eval/nearest_accuracy", "eval/token_accuracy/00"} <= set(
        last
    )
    run = rectbert.load_run(str(workdir))
    assert run.step == 3 and run.codebook.shape == (8, 16) and run.scene == rectbert.scene("rect")
    task = build(sparse, *args, *TINY_CODEBOOK, *TINY).run.task.with_codebook(run.codebook)
    # what the model really trained on: the batches of its 3 steps (6 shapes, each with the
    # points drawn once); the training-shape evaluation must use those shapes and points,
    # and the held-out set none of them
    seen = {}
    make = jax.jit(task.train_batch, static_argnums=1)
    for step in range(3):
        b = make(step, 8)
        for shape, pts in zip(np.asarray(b.scenes), np.asarray(b.points), strict=True):
            seen[tuple(shape)] = pts
    trained_on = jax.jit(task.train_eval_set, static_argnums=0)(8)
    held_out = jax.jit(task.eval_set)()
    for shape, pts in zip(
        np.asarray(trained_on.scenes), np.asarray(trained_on.points), strict=True
    ):
        np.testing.assert_array_equal(seen[tuple(shape)], pts)
    assert not {tuple(s) for s in np.asarray(held_out.scenes)} & set(seen)

    def accuracy(batch):  # through load_run: not the path training evaluates with
        probs = np.asarray(run.predict(batch.points, batch.tokens, ~batch.mask))
        mask = np.asarray(batch.mask)
        return (probs.argmax(-1) == np.asarray(batch.tokens))[mask].mean()

    acc_train, acc_held = accuracy(trained_on), accuracy(held_out)
    assert last["eval/masked_accuracy"] == pytest.approx(acc_held, abs=1e-6)
    assert last["eval/train_masked_accuracy"] == pytest.approx(acc_train, abs=1e-6)
    assert last["eval/gap"] == pytest.approx(acc_train - acc_held, abs=1e-6)
    # load_run predicts at any continuous points and prints nothing (no orbax warning)
    capsys.readouterr()
    points = np.random.default_rng(0).uniform(32, 224, (2, 30, 2))
    probs = np.asarray(
        rectbert.load_run(str(workdir)).predict(points, np.zeros((2, 30), int), np.arange(30) < 20)
    )
    assert probs.shape == (2, 30, 8)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    # a damaged codebook is one line from load_run too
    (workdir / "codebook.npy").write_bytes((workdir / "codebook.npy").read_bytes()[:60])
    with pytest.raises(ValueError, match="codebook.npy is unreadable") as e:
        rectbert.load_run(str(workdir))
    assert "\n" not in str(e.value)


def squares_flags(workdir, *extra):
    return [
        f"--workdir={workdir}",
        *TINY,
        "--num_steps=200",
        "--log_every=20",
        "--eval_every=1000",
        "--checkpoint_every=1000",
        *extra,
    ]


def _start(args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "experiments.squares", *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _signal_at(proc, step: int, signum, meanwhile=lambda: None) -> str:
    """Send `signum` at the log line of `step`, after calling `meanwhile` at the first one."""
    first = True
    for line in proc.stdout:
        if line.startswith("step ") and first:
            meanwhile()
            first = False
        if line.startswith(f"step {step}/"):
            proc.send_signal(signum)
            break
    return proc.communicate(timeout=120)[1]


@pytest.mark.slow
def test_sigterm_and_sigkill_resume_bit_identical(tmp_path, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    cli.run(squares, *squares_flags(full))
    # SIGTERM between log lines: a checkpoint and the part-logged window are kept
    proc = _start(squares_flags(cut))

    def second_run():  # one writer per workdir: refused, naming the running one; deleting
        # the lock file changes nothing (the lock is the directory's)
        with pytest.raises(cli.Error, match=rf"another run is writing to it \(pid {proc.pid} "):
            cli.run(squares, *squares_flags(cut))
        os.remove(cut / "lock")
        with pytest.raises(cli.Error, match="another run is writing to it"):
            cli.run(squares, *squares_flags(cut))

    err = _signal_at(proc, 40, signal.SIGTERM, meanwhile=second_run)
    assert "stopped by signal 15" in err and "checkpoint saved" in err, err
    # SIGKILL with a save every step (a cadence a resume may change): nothing runs on exit
    proc = _start(squares_flags(cut, "--checkpoint_every=20"))
    _signal_at(proc, 120, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    ckpt = cut / "ckpt"
    last = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    kept = [r for r in metrics.read(cut) if r["step"] <= last]
    torn = ckpt / f"{last + 20}.orbax-checkpoint-tmp-1"  # a save the kill tore, if it missed one
    if not any(".orbax-checkpoint-tmp" in d for d in os.listdir(ckpt)):
        torn.mkdir()
        (torn / "partial").write_text("half a checkpoint")
    capsys.readouterr()
    with pytest.warns(RectbertWarning, match="removing incomplete checkpoint"):
        cli.run(squares, *squares_flags(cut))
    assert f"resumed from checkpoint at step {last}" in capsys.readouterr().out
    assert not any(".orbax-checkpoint-tmp" in d for d in os.listdir(ckpt))  # torn save removed
    a, b = rectbert.load_run(str(full)), rectbert.load_run(str(cut))
    assert same_params(a.params, b.params)

    def rows(workdir):
        return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in metrics.read(workdir)]

    assert rows(cut) == rows(full)
    assert [r for r in metrics.read(cut) if r["step"] <= last] == kept  # they survived
    # the finished run re-run from its flags.txt, as a user would: trains and appends nothing
    before = metrics.read(cut)
    again = run_module("experiments.squares", f"--flagfile={cut / 'flags.txt'}")
    assert again.returncode == 0, again.stderr
    assert "already trained to step 200" in again.stdout
    assert metrics.read(cut) == before
    assert again.stderr.strip() == ""  # nothing but rectbert's own lines, on stdout
