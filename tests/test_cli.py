"""The command line of every experiment, in this process: every bad flag in one line before
anything is written (a table, and a property over the whole flag space), every flagfile,
flags.txt re-running the same run for every experiment and scene; and, in a process of its
own, the command line itself."""

import json
import os

import pytest
from absl import flags

from experiments import cli
from rectbert import scenes
from rectbert.recipes import codebook as codebook_recipe
from rectbert.recipes import grid, sparse, sparse_study, squares
from tests.conftest import ROOT, build, builds_a_big_library, installed, parse, run_module

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
    (sparse_study, ["--oracle_examples=-1"], "oracle_examples"),
    (sparse_study, ["--scenes=rect", "--scene=rotated"], "scene"),
    (sparse_study, ["--scenes=rect", "--num_rects=3"], "num_rects"),  # an option of rects
    (codebook_recipe, ["--eval_rects=0"], "eval_rects"),
    (sparse_study, ["--regimes=fresh", "--extra_targets=3"], "attentions"),  # a row's choice
    (sparse_study, ["--extra_targets=3", "--attentions=context"], "extra_targets"),
    (codebook_recipe, ["--num_clusters=1"], "num_clusters"),
    (grid, ["--num_rects=2"], "num_rects"),  # an option of another family
    (sparse, ["--glyphs=ABC"], "glyphs"),  # glyph's, not rect's
    (sparse, ["--scene=glyph", "--font=nope"], "font"),
    (sparse, ["--scene=glyph", "--glyphs=AB", "--unseen_glyphs=B"], "unseen_glyphs"),
    (sparse, ["--scene=glyph", "--glyphs=\u00e9"], "glyphs"),  # no such glyph in futural
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


FLAGS = os.path.join(ROOT, "experiments", "flags")


def flagfile_param(name: str):
    big = builds_a_big_library([f"--flagfile={os.path.join(FLAGS, name)}"])
    return pytest.param(name, marks=[pytest.mark.slow] * big)


@pytest.mark.parametrize("name", [flagfile_param(n) for n in sorted(os.listdir(FLAGS))])
def test_every_flagfile_opens_with_its_command_and_validates(name):
    recipe = RECIPES[name.split("_")[0]]
    with open(os.path.join(FLAGS, name)) as f:
        first = f.readline()
    assert first.startswith(f"# python -m experiments.{recipe.NAME} --flagfile="), name
    assert build(recipe, f"--flagfile={os.path.join(FLAGS, name)}"), name


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


# white space a flagfile line loses at its ends, or splits on: every kind there is
SPACES = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\u2028", "\u3000"]
TEXT_FLAGS = [  # (flag, the characters its text is made of, the flags beside it)
    ("glyphs", "ABC", ["--scene=glyph"]),
    ("unseen_glyphs", "234", ["--scene=glyph"]),
    ("kanji", "一二三", ["--scene=kanji"]),
    ("workdir", "run/", []),
]


@pytest.mark.parametrize("flag,alphabet,args", TEXT_FLAGS, ids=[t[0] for t in TEXT_FLAGS])
def test_any_accepted_text_value_survives_flags_txt(tmp_path, flag, alphabet, args):
    # property: a text value is refused in one line before anything is written, or the
    # flags.txt the run writes reads back (absl's --flagfile) to the same value and run
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    if "--scene=kanji" in args and not installed("kanji"):
        pytest.skip("KanjiVG is not installed")
    letters = st.sampled_from([*alphabet, *SPACES])

    @settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.text(letters, min_size=1, max_size=6))
    def check(text):
        value = str(tmp_path / text) if flag == "workdir" else text
        where = [] if flag == "workdir" else [f"--workdir={tmp_path / 'run'}"]
        given_args = [*args, *where, f"--{flag}={value}"]
        fv = parse(sparse, *given_args)
        v = cli.values(sparse, fv)
        try:
            first = cli.build(sparse, fv, v)
        except cli.Error as e:
            assert "\n" not in str(e) and f"--{flag}" in str(e), str(e)
            return
        (tmp_path / "flags.txt").write_text(cli.flags_text(sparse, fv, v), encoding="utf-8")
        again = parse(sparse, f"--flagfile={tmp_path / 'flags.txt'}")
        assert again[flag].value == value
        assert _record(cli.build(sparse, again)) == _record(first)

    check()


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
    with pytest.raises(cli.Error, match="^--workdir= is not allowed: a directory's path$"):
        build(squares, "--workdir=")


def test_a_range_flag_offers_empty_only_where_empty_is_allowed():
    # --glyph_size= (empty) is refused by the scene, so its parse error must not offer it
    for flag, empty in (("glyph_size", False), ("rotation", False), ("aspect", True)):
        with pytest.raises(cli.Error) as e:
            parse(sparse, "--scene=glyph", f"--{flag}=abc")
        assert "two numbers 'lo,hi'" in str(e.value)
        assert ("or empty" in str(e.value)) == empty, str(e.value)
