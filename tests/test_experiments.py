"""The experiments as a user runs them: every bad flag in one line before anything is written
(in-process), runs, resume and drift (in-process), and the few things that need a process of
their own: the command line itself, signals, and re-running a finished run from flags.txt."""

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
from absl import flags

import rectbert
from experiments import cli
from rectbert import scenes
from rectbert.recipes import codebook as codebook_recipe
from rectbert.recipes import grid, sparse, sparse_study, squares
from rectbert.training import metrics
from rectbert.training import workdir as workdir_lib
from rectbert.warn import RectbertWarning
from tests.conftest import ROOT, TINY, TINY_CODEBOOK, build, parse, run_module, same_params

DISTRIBUTED = ["--distributed", "--coordinator_address=127.0.0.1:9", "--num_processes=2"]
BAD_FLAGS = [
    (grid, ["--mask_ratio=1.5"], "mask_ratio"),
    (grid, ["--mask_ratio=0.999"], "mask_ratio"),  # every token hidden
    (grid, ["--mask_ratio=nan"], "mask_ratio"),
    (grid, ["--learning_rate=inf"], "learning_rate"),
    (grid, ["--max_side=inf"], "max_side"),
    (sparse, ["--fourier_scale=inf", "--position=fourier"], "fourier_scale"),
    (sparse, ["--weight_decay=nan"], "weight_decay"),
    (grid, ["--position=rope"], "position"),
    (grid, ["--num_clusters=0"], "num_clusters"),
    (grid, ["--num_clusters=20000"], "num_clusters"),  # more than 100 shapes have patches
    (grid, ["--embed_dim=30"], "embed_dim"),
    (grid, ["--num_train_rects=0"], "num_steps"),
    (grid, ["--num_train_rects=-3"], "num_train_rects"),
    (grid, ["--num_epochs=0"], "num_epochs"),
    (grid, ["--learning_rate=0"], "learning_rate"),
    (grid, ["--num_layers=0"], "num_layers"),
    (grid, ["--num_heads=0"], "num_heads"),
    (grid, ["--dropout=1.0"], "dropout"),
    (grid, ["--batch_size=-4"], "batch_size"),
    (grid, ["--min_side=300"], "min_side"),
    (grid, ["--min_side=64", "--max_side=40"], "max_side"),
    (grid, ["--aspect=3,1"], "aspect"),
    (grid, ["--aspect=a,b"], "aspect"),
    (grid, ["--aspect=1,2,3"], "aspect"),
    (grid, ["--min_side=100", "--max_side=110", "--aspect=3,4"], "aspect"),
    (grid, ["--loss=hinge"], "loss"),
    (grid, ["--eval_examples=0"], "eval_examples"),
    (grid, ["--seed=99999999999999999999"], "seed"),
    (grid, ["--seed=-1"], "seed"),
    (grid, ["--warmup_steps=-1"], "warmup_steps"),
    (grid, ["--grad_clip=0"], "grad_clip"),
    (grid, ["--log_every=0"], "log_every"),
    (grid, ["--attention_impl=cudnn"], "attention_impl"),  # CPU: no cuDNN
    (grid, ["--distributed", "--num_processes=2"], "coordinator_address"),
    (grid, ["--num_processes=2"], "num_processes"),  # without --distributed: ignored
    (grid, [*DISTRIBUTED[:2], "--num_processes=0", "--process_id=0"], "num_processes"),
    (squares, ["--max_square=9"], "max_square"),
    (squares, ["--batch_size=abc"], "batch_size"),
    (squares, ["--fourier_scale=0"], "fourier_scale"),
    (squares, ["--mask_schedule=linear"], "mask_schedule"),
    (squares, ["--loss=soft"], "loss"),
    (squares, ["--aux_weight=1"], "aux_weight"),
    (squares, ["--min_square=0"], "min_square"),
    (squares, ["--image_size=0"], "image_size"),
    (squares, ["--min_square=4", "--max_square=3"], "max_square"),
    (squares, ["--mask_count=64"], "mask_count"),
    (sparse, ["--position=learned"], "position"),
    (sparse, ["--point_sampler=gauss"], "point_sampler"),
    (sparse, ["--mask_count=24"], "mask_count"),
    (sparse, ["--mask_count=-1"], "mask_count"),
    (sparse, ["--num_points=1"], "num_points"),
    (sparse, ["--eval_oracle", "--point_sampler=edges"], "eval_oracle"),
    (sparse, ["--eval_oracle", "--scene=junction"], "eval_oracle"),
    (sparse, ["--oracle_curve", "--scene=rects", "--min_rects=1"], "oracle_curve"),
    (sparse, ["--oracle_curve", "--curve_visible=24"], "curve_visible"),
    (sparse, ["--dense_spacing=0"], "dense_spacing"),
    (sparse, ["--dense_spacing=0.001"], "dense_spacing"),  # 37 billion queries
    (sparse, ["--soft_temperature=0"], "soft_temperature"),
    (sparse, ["--label_smoothing=1.5"], "label_smoothing"),
    (sparse, ["--aux_weight=-1"], "aux_weight"),
    (sparse, ["--fixed_points"], "fixed_points"),  # fresh shapes: no set to fix points of
    (sparse, ["--scene=ellipse"], "scene"),
    (sparse, ["--num_steps=0"], "num_steps"),
    (sparse, [*DISTRIBUTED, "--process_id=2"], "process_id"),
    (
        sparse,
        ["--distributed", "--coordinator_address=nohost", "--num_processes=1", "--process_id=0"],
        "coordinator_address",
    ),
    (squares, ["--profile_steps=3"], "profile_steps"),
    (grid, ["--profile_steps=5:5"], "profile_steps"),
    (sparse, ["--num_steps=10", "--profile_steps=4:11"], "profile_steps"),  # past the end
    (sparse, ["--profile_steps=-1:3"], "profile_steps"),
    (sparse, ["--profile_steps=a:b"], "profile_steps"),
    (sparse, ["--profile_steps=\u00b2:3"], "profile_steps"),  # a digit to isdigit(), not int()
    (sparse, ["--extra_targets=-1"], "extra_targets"),
    (sparse, ["--extra_targets=4", "--attention=full"], "attention"),
    (sparse, ["--extra_targets=4", "--num_train_rects=9", "--fixed_points"], "extra_targets"),
    (sparse_study, ["--regimes=fresh,other"], "regimes"),
    (sparse_study, ["--positions=learned"], "positions"),
    (sparse_study, ["--scenes=rect,rect"], "scenes"),
    (sparse_study, ["--scenes=rect", "--scene=rotated"], "scene"),
    (sparse_study, ["--scenes=rect", "--num_rects=3"], "num_rects"),  # an option of rects
    (codebook_recipe, ["--eval_examples=0"], "eval_examples"),
    (codebook_recipe, ["--eval_rects=5"], "eval_rects"),  # renamed: refused, naming --eval_examples
    (codebook_recipe, ["--num_clusters=1"], "num_clusters"),
    (grid, ["--num_rects=2"], "num_rects"),  # an option of another family
    (sparse, ["--curve_visible=30"], "curve_visible"),  # validated without --oracle_curve
    (sparse, ["--sample_examples=1"], "sample_examples"),  # and without --samples
    (squares, ["stray"], "stray"),  # a positional argument is not a flag
]


def first_error(recipe, args) -> str:
    """What the experiment says of these flags before it does anything (in this process)."""
    try:
        build(recipe, *args)
    except cli.Error as e:
        return str(e)
    return ""


@pytest.mark.parametrize(
    "recipe,args,flag", BAD_FLAGS, ids=[f"{r.NAME}{a}" for r, a, _ in BAD_FLAGS]
)
def test_bad_flags_fail_in_one_line_before_writing_anything(tmp_path, recipe, args, flag):
    workdir = tmp_path / "run"
    message = first_error(recipe, [*args, f"--workdir={workdir}"])
    assert message and "\n" not in message, message
    assert (
        message.startswith(f"flag --{flag}")
        or message.startswith(f"--{flag}")
        or (f"--no{flag}" in message)
        or message.startswith(f"'{flag}' is not a flag")
    ), message
    if flag == "eval_rects":
        assert "use --eval_examples" in message
    assert not workdir.exists()


SKIP = {"workdir", "flagfile", "undefok"}  # where it writes, and absl's own


def flag_value(flag):
    """A strategy for a value of this flag: in its range, at its edges, far out, or junk."""
    from hypothesis import strategies as st

    junk = st.sampled_from(["", "abc", "nan", "-inf", "1e400", "0x10", " 3"])
    if isinstance(flag, flags.EnumFlag) or hasattr(flag.parser, "enum_values"):
        return st.sampled_from([*flag.parser.enum_values, "other"]) | junk
    if isinstance(flag.default, bool):
        return st.sampled_from(["true", "false", "1", "maybe"])
    if isinstance(flag.parser, flags.IntegerParser):
        small = st.integers(-3, 300)
        return (small | st.integers(-(2**70), 2**70)).map(str) | junk
    if isinstance(flag.parser, flags.FloatParser):
        edges = st.sampled_from(["nan", "inf", "-inf", "0", "1", "0.5", "-1", "1e-9", "1e30"])
        return edges | st.floats(-1e3, 1e3).map(repr) | junk
    if hasattr(flag.parser, "item"):  # cli's lists: counts, names, ranges
        return st.lists(
            st.sampled_from(["1", "2.5", "0", "-1", "x", "fresh", "sincos"]), max_size=3
        ).map(",".join)
    return st.text(max_size=12) | st.sampled_from(["127.0.0.1:1234", "host", ":9"])


@pytest.mark.parametrize(
    "recipe", [grid, squares, sparse, sparse_study, codebook_recipe], ids=lambda r: r.NAME
)
def test_any_flags_validate_or_fail_in_one_line_writing_nothing(tmp_path, recipe):
    # property: whatever the values, build() accepts them or raises one Error line naming a
    # flag; never another exception, never a workdir (examples: conftest's hypothesis profile)
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    fv = cli.define(recipe)
    names = sorted(n for n in fv if n not in SKIP and len(n) > 1)
    workdir = tmp_path / "run"

    @settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
        args = [f"--{n}={data.draw(flag_value(fv[n]), label=n)}" for n in chosen]
        message = first_error(recipe, [*args, f"--workdir={workdir}"])
        if message:
            assert "\n" not in message, message
            assert any(f"-{n}" in message or f"--no{n}" in message for n in names), message
        assert not workdir.exists()

    check()


RECIPES = {"grid": grid, "squares": squares, "sparse": sparse}


def test_every_flagfile_opens_with_its_command_and_validates():
    folder = os.path.join(ROOT, "experiments", "flags")
    for name in sorted(os.listdir(folder)):
        recipe = RECIPES[name.split("_")[0]]
        with open(os.path.join(folder, name)) as f:
            first = f.readline()
        assert first.startswith(f"# python -m experiments.{recipe.NAME} --flagfile="), name
        assert build(recipe, f"--flagfile={os.path.join(folder, name)}"), name


# every experiment, and each scene where it takes one: flags.txt re-runs the same run
RERUNS = [
    (squares, ["--mask_count=1", "--image_size=6", "--max_square=4", "--lr_schedule=constant"]),
    *((grid, [f"--scene={s}", "--num_train_rects=0", "--num_steps=5"]) for s in scenes.SCENES),
    *((sparse, [f"--scene={s}", "--mask_schedule=anycount"]) for s in scenes.SCENES),
    (sparse, ["--scene=rects", "--num_rects=3", "--aspect=0.5,2", "--oracle_curve"]),
    (sparse, ["--point_sampler=edges", "--num_train_rects=9", "--fixed_points", "--nodistributed"]),
    (codebook_recipe, ["--scene=junction", "--max_strokes=3", "--stroke_width=6,10"]),
    (sparse_study, ["--scenes=rect,rotated", "--max_side=150", "--regimes=fresh"]),
    (sparse_study, ["--scene=rotated", "--positions=sincos,mlp"]),
]


def _record(plan) -> dict:
    run = getattr(plan, "run", None) or getattr(plan, "base", None)
    rows = [r.run.record() for r in getattr(plan, "rows", ())]
    made = run.record() if run is not None else {"task": plan.task.record()}
    return json.loads(json.dumps({"run": made, "rows": rows, "plan": repr(plan.workdir)}))


@pytest.mark.parametrize("recipe,args", RERUNS, ids=[f"{r.NAME}{a[:1]}" for r, a in RERUNS])
def test_flags_txt_reruns_the_same_run(tmp_path, recipe, args):
    # what the command writes as flags.txt, read back with --flagfile, is the same run
    fv = parse(recipe, *args, f"--workdir={tmp_path / 'run'}")
    v = cli.values(recipe, fv)
    first = cli.build(recipe, fv, v)
    text = cli.flags_text(recipe, fv, v)
    assert "--flagfile" not in text and "--verbosity" not in text and "--helpfull" not in text
    (tmp_path / "flags.txt").write_text(text)
    again = build(recipe, f"--flagfile={tmp_path / 'flags.txt'}")
    assert _record(again) == _record(first)
    # and it names only what applies: the scene's own options, every one resolved
    if getattr(recipe, "SCENES", False):
        names = {line.split("=")[0].lstrip("-").removeprefix("no") for line in text.splitlines()}
        wanted = {
            f.name
            for n in (v.get("scenes") or [v["scene"] or "rect"])
            for f in scenes.options(scenes.SCENES[n])
        }
        every = {f.name for c in scenes.SCENES.values() for f in scenes.options(c)}
        assert names & every <= wanted
        if not v.get("scenes"):
            assert wanted <= names


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,flag", [(["--mask_ratio=1.5"], "mask_ratio"), (["--batch_size=abc"], "batch_size")]
)
def test_the_command_line_says_one_line_and_writes_nothing(tmp_path, args, flag):
    # both ways a flag fails: absl's parser (batch_size=abc) and the library's checks
    out = run_module("experiments.grid", *args, f"--workdir={tmp_path / 'run'}")
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and f"--{flag}" in lines[0], out.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_unwritable_workdir_fails_in_one_line():
    with pytest.raises(cli.Error, match="--workdir=/proc/rectbert_cannot_write_here"):
        cli.run(squares, "--workdir=/proc/rectbert_cannot_write_here", "--num_steps=2")


def grid_flags(workdir):
    return [f"--workdir={workdir}", "--num_steps=4", "--num_train_rects=20", *TINY_CODEBOOK, *TINY]


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
    args = [f"--workdir={workdir}", "--eval_examples=20", *TINY_CODEBOOK]
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
    flags_txt = (grid_dir / "flags.txt").read_text()
    # another prior is refused, the codebook kept
    with pytest.raises(cli.Error, match="task.scene.max_side: 192.0 -> 200.0"):
        cli.run(grid, *grid_flags(grid_dir), "--min_side=150", "--max_side=200")
    assert (grid_dir / "flags.txt").read_text() == flags_txt
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
