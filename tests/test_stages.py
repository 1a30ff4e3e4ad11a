"""The stages around training keep their promises: a stop during a final stage stops it
promptly and says what was kept; one writer per workdir for the analyses too; a write that
fails loses no finished work and leaves nothing behind; a failed checkpoint save is one line
and the next run resumes; advice never deletes a readable checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

import rectbert
from experiments import cli
from rectbert import files
from rectbert.analysis import calls, oracle_curve
from rectbert.recipes import oracle_curve as curve_recipe
from rectbert.recipes import sample as sample_recipe
from rectbert.training import checkpoint, signals, train
from rectbert.training import workdir as workdir_lib
from rectbert.training.engine import RunConfig
from rectbert.warn import RectbertWarning
from tests.conftest import ANYCOUNT, ROOT, SQUARES, SQUARES_MODEL, SQUARES_TRAIN, copy, same_params
from tests.test_train import QUIET_READS, damage


@pytest.mark.parametrize("recipe", [curve_recipe, sample_recipe], ids=["curve", "sample"])
def test_an_analysis_is_refused_while_another_writer_holds_the_workdir(
    recipe, tmp_path, anycount_run
):
    workdir = copy(anycount_run, tmp_path)
    before = sorted(os.listdir(workdir))
    with workdir_lib.lock(workdir):  # a run still training there, or another analysis
        with pytest.raises(cli.Error, match="another run is writing to it .pid ") as e:
            cli.run(
                recipe,
                f"--workdir={workdir}",
                "--curve_examples=4" if recipe is curve_recipe else "--sample_examples=2",
            )
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(workdir)) == before  # nothing written


def _curve_files(n_counts=2):
    """Rows and calibration as the curve makes them, from hand-made probabilities."""
    rng = np.random.default_rng(0)
    rows, conf, right = [], [], []
    for v in (2, 8)[:n_counts]:
        tokens = rng.integers(0, 4, (3, 10))
        hidden = np.arange(10)[None] >= v
        hidden = np.broadcast_to(hidden, (3, 10))
        pm, po = (rng.dirichlet(np.ones(4), (3, 10)) for _ in range(2))
        s = oracle_curve.scores(tokens, hidden, pm, po)
        rows.append({**oracle_curve.row(v, s, np.full(3, 100.0), 30.0), "step": 7})
        conf.append(s["model_confidence"]), right.append(s["model_correct"])
    calib = {
        who: oracle_curve.calibration(np.concatenate(conf), np.concatenate(right))
        for who in ("model", "oracle")
    }
    return rows, calib


def test_a_figure_that_cannot_be_written_keeps_the_numbers_and_leaves_no_temporary(tmp_path):
    workdir = str(tmp_path)
    rows, calib = _curve_files()
    os.makedirs(os.path.join(workdir, "figures", "oracle_curve.png"))  # not a file: unwritable
    with pytest.raises(files.FileError) as e:
        with signals.stage(workdir, "the oracle curve"):
            oracle_curve.write(workdir, rows, calib)
    said = str(e.value)
    assert "\n" not in said and "could not write" in said and "oracle_curve.png" in said
    assert "kept calibration.json, oracle_curve.json" in said and "re-run the same" in said
    assert json.loads(open(os.path.join(workdir, "oracle_curve.json")).read()) == rows
    made = json.loads(open(os.path.join(workdir, "calibration.json")).read())["made_from"]
    assert made == {"step": 7, "visible": [2, 8], "examples": 3}
    left = [n for _, _, names in os.walk(workdir) for n in names if ".tmp" in n]
    assert left == []


def test_an_atomic_write_that_fails_names_the_file_and_leaves_it_as_it_was(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # a directory where the file would go: the rename fails
    with pytest.raises(files.WriteError, match=r"could not write .*taken \(") as e:
        files.write_atomic(str(target), "text")
    assert "\n" not in str(e.value) and target.is_dir()
    assert os.listdir(tmp_path) == ["taken"]  # no temporary file left


@pytest.mark.slow  # two runs, one that fails at a save: 13 s here
def test_a_failed_checkpoint_save_is_one_line_and_the_next_run_resumes(
    tmp_path, monkeypatch, squares_run
):
    workdir = str(tmp_path / "full")
    real = ocp.CheckpointManager.save

    def full_disk(self, step, *a, **k):
        if step == 6:  # as orbax reports it from its writer threads
            raise ValueError(
                "RESOURCE_EXHAUSTED: Error writing local file: No space left on device [28]"
            )
        return real(self, step, *a, **k)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    run = RunConfig(SQUARES, SQUARES_MODEL, SQUARES_TRAIN)
    with pytest.raises(checkpoint.CheckpointError) as e:
        train.train(run, workdir)
    said = str(e.value)
    assert "\n" not in said and "could not save the checkpoint at step 6" in said
    assert "No space left on device" in said and "the one at step 3 is kept" in said
    assert checkpoint.steps(workdir) == [3]
    monkeypatch.setattr(ocp.CheckpointManager, "save", real)  # room again: the run resumes
    state, _ = train.train(run, workdir)
    assert same_params(state.params, rectbert.load_run(squares_run).params)


@pytest.mark.slow  # damaged and mismatched checkpoints read: 4 s here
@pytest.mark.filterwarnings(QUIET_READS)
def test_advice_never_deletes_a_readable_checkpoint(tmp_path, squares_run):
    workdir = copy(squares_run, tmp_path)
    damage(os.path.join(workdir, "ckpt", "9"))
    with pytest.warns(RectbertWarning, match="step 9 is unreadable"):
        with pytest.raises(ValueError, match=r"step 9 is unreadable.*steps \[6\] may be") as e:
            rectbert.load_run(workdir, step=9)
    assert "delete ckpt" not in str(e.value) and "\n" not in str(e.value)
    # a config.json that disagrees with its (intact) checkpoints: they are not damaged
    path = os.path.join(workdir, "config.json")
    record = json.loads(open(path).read())
    record["model"]["embed_dim"] *= 2
    open(path, "w").write(json.dumps(record))
    with pytest.warns(RectbertWarning):
        with pytest.raises(ValueError, match="do not match its config.json") as e:
            rectbert.load_run(workdir, step=6)
    assert "delete ckpt" not in str(e.value) and "\n" not in str(e.value)


def _start(module, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_at(proc, line_start: str, signum) -> tuple[int, str]:
    for line in proc.stdout:
        if line.startswith(line_start):
            proc.send_signal(signum)
            break
    err = proc.communicate(timeout=60)[1]
    return proc.returncode, err


@pytest.mark.slow  # two commands in processes of their own, signalled in their final stage
def test_a_signal_in_a_final_stage_stops_it_and_says_what_was_kept(tmp_path, anycount_run):
    # the sparse experiment's curve, after training: stopped, the checkpoint kept
    workdir = str(tmp_path / "sparse")
    args = [f"--workdir={workdir}", *ANYCOUNT, "--oracle_curve", "--curve_examples=8"]
    rc, err = _stop_at(_start("experiments.sparse", *args), "oracle curve:", signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "during the final evaluation at step 3" in lines[0], err
    assert "kept the checkpoint at step 3" in lines[0] and "re-run the same command" in lines[0]
    assert checkpoint.steps(workdir) == [3] and not os.path.exists(f"{workdir}/oracle_curve.json")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.sparse", *args],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "trained to step 3" in done.stdout and os.path.exists(f"{workdir}/oracle_curve.json")
    # the curve command: Ctrl-C after its first count, that count kept for the re-run (and
    # named), the curve itself not written, the workdir free again
    other = copy(anycount_run, tmp_path)
    proc = _start("experiments.oracle_curve", f"--workdir={other}", "--curve_examples=8")
    rc, err = _stop_at(proc, "  visible", signal.SIGINT)
    assert rc == 128 + signal.SIGINT, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "during the oracle curve at step 3" in lines[0], err
    assert "kept oracle_curve.partial.json" in lines[0], err
    assert os.path.exists(os.path.join(other, "oracle_curve.partial.json"))
    assert not os.path.exists(os.path.join(other, "oracle_curve.json"))
    with workdir_lib.lock(other):  # released
        pass


@pytest.mark.slow  # the samples command in a process of its own, signalled mid-computation
def test_a_stop_during_the_samples_is_seen_in_seconds(tmp_path, anycount_run):
    # a SIGTERM a few seconds into the samples lands inside a compilation or a compiled call
    # of the model's sampler or the oracle (each of seconds to minutes): the command still
    # leaves within seconds, in one line, its lock let go
    workdir = copy(anycount_run, tmp_path)
    proc = _start("experiments.sample", f"--workdir={workdir}", "--sample_examples=16")
    assert proc.stdout.readline().startswith("samples:")
    time.sleep(3)
    assert proc.poll() is None, "finished before the signal: the test says nothing"
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert time.time() - start < 5 and proc.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "during the samples at step 3" in lines[0], err
    assert "nothing of it written" in lines[0], err
    assert not os.path.exists(os.path.join(workdir, "samples.json"))
    with workdir_lib.lock(workdir):  # released
        pass


@pytest.mark.slow  # the samples' model draws compiled before the oracle is refused: 20 s
def test_an_oracle_that_will_not_fit_is_refused_in_one_line(tmp_path, monkeypatch, anycount_run):
    # XLA's count of one posterior call against a machine with 1 kB free: one line naming
    # both, nothing written, the workdir free again
    workdir = copy(anycount_run, tmp_path)
    monkeypatch.setattr(calls, "free_bytes", lambda: 1000)
    calls._COMPILED.clear()
    with pytest.raises(cli.Error) as e:
        cli.run(sample_recipe, f"--workdir={workdir}", "--sample_examples=2")
    message = str(e.value)
    assert "\n" not in message and "the oracle's posterior (rect) needs" in message, message
    assert "GiB a call" in message and "0.0 GiB is free" in message, message
    assert not os.path.exists(os.path.join(workdir, "samples.json"))
    with workdir_lib.lock(workdir):  # released
        pass


@pytest.mark.slow  # a restore and a resume stopped
def test_a_stop_during_a_restore_is_not_damage(tmp_path, monkeypatch, squares_run):
    # a signal that lands while a checkpoint is read stops the command; it does not make the
    # checkpoint "unreadable" (to be moved aside by a resume)
    workdir = copy(squares_run, tmp_path)

    def stopped(params):
        raise signals.Interrupted("stopped by signal 15", 15)

    monkeypatch.setattr(checkpoint, "_check_finite", stopped)
    with pytest.raises(signals.Interrupted):
        rectbert.load_run(workdir)
    with pytest.raises(signals.Interrupted):
        train.train(RunConfig(SQUARES, SQUARES_MODEL, SQUARES_TRAIN), workdir)
    assert checkpoint.steps(workdir) == checkpoint.steps(squares_run)
    assert not os.path.exists(os.path.join(workdir, "damaged"))


@pytest.mark.slow  # a run trained to a failing final save
def test_a_failed_final_save_is_said_before_the_final_stage_claims_it(tmp_path, monkeypatch):
    real = ocp.CheckpointManager.save

    def full_disk(self, step, *a, **k):
        if step == 9:
            raise ValueError("RESOURCE_EXHAUSTED: No space left on device")
        return real(self, step, *a, **k)

    def figures(ev):  # the final stage's own write fails too
        if ev.final:
            raise files.FileError("could not write figures/x.png (No space left on device)")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    run = RunConfig(SQUARES, SQUARES_MODEL, SQUARES_TRAIN)
    with pytest.raises(checkpoint.CheckpointError, match="step 9.*the one at step 6 is kept"):
        train.train(run, str(tmp_path / "run"), on_eval=figures)
