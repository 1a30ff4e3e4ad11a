"""The benchmarks' bad flags and input files: each refused in one line naming the flag (or the
file) and what is allowed, before any compute, through the checks each benchmark's main runs
first (in this process); a few as the commands themselves (slow)."""

import dataclasses
import importlib
import json
import os
import pkgutil
import types

import numpy as np
import pytest
from absl import flags

import benchmarks
import rectbert
from benchmarks import (
    ceiling_report,
    compare_runs,
    glyph_posterior,
    joint_samples,
    oracle_config,
    oracle_profile,
    oracle_speed,
    train_throughput,
    usage,
    where_points,
)
from tests.conftest import copy, run_module

COMMANDS = [  # the benchmarks run as `python -m benchmarks.<name>`
    "ceiling_report",
    "compare_runs",
    "coverage_cost",
    "drawn_sets",
    "glyph_posterior",
    "joint_samples",
    "kmeans",
    "oracle",
    "oracle_config",
    "oracle_profile",
    "oracle_rejection",
    "oracle_speed",
    "scaling",
    "time_to_ceiling",
    "touched",
    "train_throughput",
    "where_points",
]


def refused(check, *args) -> str:
    """The one line a check refuses these values with."""
    with pytest.raises(usage.Error) as e:
        check(*args)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


def test_every_benchmark_imports_beside_the_others_and_defines_its_flags_only_when_run():
    for m in pkgutil.iter_modules(benchmarks.__path__):
        module = importlib.import_module(f"benchmarks.{m.name}")
        assert (m.name in COMMANDS) == hasattr(module, "define_flags"), m.name
    defined = [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith("benchmarks")]
    assert defined == []  # scaling imports train_throughput: its flags are not scaling's


# ------------------------------------------------------------------------- glyph_posterior
@pytest.fixture(scope="module")
def glyph_record(anycount_run, tmp_path_factory) -> str:
    """anycount_run with its config.json naming the glyph scene: a glyph run as far as the
    checks read (the record: 16 held-out examples of 24 points), trained on rect."""
    path = copy(anycount_run, tmp_path_factory.mktemp("glyph_record"))
    with open(os.path.join(path, "config.json")) as f:
        record = json.load(f)
    record["task"]["scene"] = rectbert.scene("glyph").record()
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(record, f)
    return path


def test_glyph_posterior_refuses_a_bad_list_and_a_workdir_it_cannot_read(
    tmp_path, anycount_run, squares_run
):
    none = str(tmp_path / "none")
    assert refused(glyph_posterior.check, none, ["2"], -1, "").startswith(
        f"--workdir={none} is not allowed: a finished glyph run (workdir="
    )
    allowed = "one or more integers in [1, 2147483647], 'a,b,...'"
    for visible, shown in [(["abc"], "abc"), ([], ""), (["2", "0"], "2,0")]:
        said = refused(glyph_posterior.check, none, visible, -1, "")  # before reading it
        assert said == f"--visible={shown} is not allowed: {allowed}"
    for run, kind in [(anycount_run, "rect sparse"), (squares_run, "squares")]:
        assert refused(glyph_posterior.check, run, ["2"], -1, "") == (
            f"--workdir={run} is not allowed: a sparse glyph run (this is a {kind} run)"
        )


@pytest.mark.parametrize(
    "visible,example,out,said",
    [
        (["25"], -1, "", "--visible=25 is not allowed: counts in [1, 24] (the run's points)"),
        (["2"], 16, "", "--example=16 is not allowed: an integer in [-1, 15] (the run holds 16"),
        (["2"], 9999, "", "--example=9999 is not allowed: an integer in [-1, 15]"),
        (["2"], -5, "", "--example=-5 is not allowed: an integer in [-1, 15]"),
        (["2"], 0, "/proc/x.png", "--out=/proc/x.png is not allowed: a file in a writable"),
    ],
    ids=["visible=25", "example=16", "example=9999", "example=-5", "out=/proc/x.png"],
)
def test_glyph_posterior_refuses_what_the_run_does_not_hold(
    glyph_record, visible, example, out, said
):
    assert refused(glyph_posterior.check, glyph_record, visible, example, out).startswith(said)


def test_glyph_posterior_accepts_the_runs_bounds(glyph_record, tmp_path):
    out = str(tmp_path / "figures" / "g.png")
    run, counts, example = glyph_posterior.check(glyph_record, ["1", "24"], 15, out)
    assert counts == (1, 24) and example == 15 and run.scene.name == "glyph"
    assert glyph_posterior.check(glyph_record, ["2"], -1, "")[2] == -1  # the one most points hit
    assert os.listdir(tmp_path) == ["figures"]  # made for the figure, nothing in it


# ---------------------------------------------------------------------------- compare_runs
def test_compare_runs_refuses_more_examples_than_the_runs_hold(anycount_run):
    runs = [anycount_run, anycount_run]  # 16 held-out examples each
    assert refused(compare_runs.check, runs, ["1", "8"], 1000) == (
        "--examples=1000 is not allowed: an integer in [1, 16] (the runs' held-out examples)"
    )
    assert refused(compare_runs.check, runs, ["1"], 17).startswith("--examples=17 is not")
    loaded, counts = compare_runs.check(runs, ["1", "23"], 16)
    assert len(loaded) == 2 and counts == (1, 23)


# --------------------------------------------------------------------------- joint_samples
def test_joint_samples_refuses_what_it_cannot_pair_or_score(anycount_run, tmp_path):
    def check(workdirs=(anycount_run,), against=(), samplers=("random",), visible=("3",), n=2):
        return joint_samples.check(
            list(workdirs), list(against), list(samplers), list(visible), n, 2
        )

    assert refused(check, ()).startswith("--workdirs= is not allowed: one or more")
    assert refused(check, (anycount_run,) * 2, (anycount_run,)).startswith(
        f"--against={anycount_run} is not allowed: one run per workdir (2)"
    )
    assert refused(check, (anycount_run,), (), ("gibbs",)).startswith("--samplers=gibbs is not")
    assert refused(check, (anycount_run,), (), ("random",), ("24",)).startswith("--visible=24 is")
    too_many = refused(check, (anycount_run,), (), ("random",), ("3",), 17)
    assert too_many.startswith("--examples=17 is not allowed: an integer in [2, 16]"), too_many
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refused(check, (str(empty),)).startswith(f"--workdirs={empty} is not allowed")
    twice = refused(check, (anycount_run,), (), ("random", "random"))
    assert twice.startswith("--samplers=random,random is not allowed: no name or count twice")
    assert refused(check, (anycount_run,), (), ("random",), ("3", "3")).startswith("--visible=3,3")
    runs, others, names, counts = check(against=(anycount_run,), samplers=("repair", "random"))
    assert len(runs) == len(others) == 1 and names == ["repair", "random"] and counts == (3,)
    runs, others, _, _ = check()  # alone: its samplers against each other
    assert len(runs) == 1 and others == []


# -------------------------------------------------------------------------- ceiling_report
ROW = {  # a row as time_to_ceiling --json writes it (the keys the report reads)
    "name": "default",
    "settings": {},
    "steps": 6000,
    "train_s": 600.5,
    "held_out": 0.9,
    "held_out_ratio": 0.99,
    "held_out_right": "1101",
    "curve": [{"step": 250, "train_s": 30.0, "ratio": 0.9}],
}


def write(tmp_path, content, name="a.json") -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize(
    "content,said",
    [
        ("{", "not a time_to_ceiling --json file (Expecting"),
        ({"rows": "abc"}, 'not a time_to_ceiling --json file (no list "rows")'),
        ([ROW], 'not a time_to_ceiling --json file (no list "rows")'),
        ({"rows": ["abc"]}, 'row 0 has no name: expected an object with a "name" string'),
        (
            {"rows": [ROW, {k: v for k, v in ROW.items() if k != "settings"}]},
            "row 1 (default): settings is None: expected an object of the sparse recipe's",
        ),
        (
            {"rows": [{**ROW, "settings": {"nope": 1}}]},
            "row 0 (default): settings has 'nope', which the sparse recipe does not have",
        ),
        (
            {"rows": [{**ROW, "held_out_right": "1x11"}]},
            "row 0 (default): held_out_right is '1x11': expected a string of 0s and 1s",
        ),
        (
            {"rows": [{**ROW, "held_out_right": 1011}]},
            "row 0 (default): held_out_right is 1011: expected a string of 0s and 1s",
        ),
        ({"rows": [{**ROW, "train_s": "600"}]}, "row 0 (default): train_s is '600': expected a"),
        ({"rows": [{**ROW, "curve": [{"step": 1}]}]}, "row 0 (default): curve is [{'step': 1}]"),
    ],
    ids=[
        "not JSON",
        "rows a string",
        "a list",
        "a row a string",
        "no settings",
        "a setting none now",
        "held_out_right 1x11",
        "held_out_right a number",
        "train_s a string",
        "a curve without ratio",
    ],
)
def test_ceiling_report_refuses_a_malformed_file_naming_it(tmp_path, content, said):
    path = write(tmp_path, content)
    assert refused(ceiling_report.check, [path], "default", "").startswith(f"{path}: {said}")


def test_ceiling_report_refuses_bad_flags_and_reads_a_good_file(tmp_path):
    missing = str(tmp_path / "none.json")
    assert refused(ceiling_report.check, [missing], "default", "").startswith(
        f"{missing}: not a time_to_ceiling --json file ([Errno 2]"
    )
    good = write(tmp_path, {"rows": [ROW, {**ROW, "name": "b", "held_out_right": "1111"}]})
    assert refused(ceiling_report.check, [], "default", "") == (
        "--json= is not allowed: one or more time_to_ceiling --json files"
    )
    assert refused(ceiling_report.check, [good], "c", "") == (
        "--baseline=c is not allowed: a row's name: ['default', 'b']"
    )
    assert refused(ceiling_report.check, [good], "default", "/proc/f.png").startswith(
        "--figure=/proc/f.png is not allowed: a file in a writable directory"
    )
    rows = ceiling_report.check([good], "default", "")
    # b - default per token: 0 0 1 0: mean +25 pt, standard error 43.30 pt (its sd) / sqrt(4)
    assert ceiling_report.paired(rows, "default")[1].endswith("minus default: +25.00 +- 21.65 pt")


# ---------------------------------------------------------------------------- oracle_speed
def test_oracle_speed_refuses_visible_counts_that_hide_nothing():
    assert refused(oracle_speed.check, ["rect"], 6, 2, 24, "HEAD") == (
        "--visible=24 is not allowed: an integer in [1, 23] (of 24 points: one hidden at least, "
        "or there is nothing to predict)"
    )
    assert refused(oracle_speed.check, ["rect"], 6, 2, 19, "no-such-rev").startswith(
        "--against=no-such-rev is not allowed: a git revision"
    )
    assert refused(oracle_speed.check, ["rect"], 6, 2, ["4", "x"], "HEAD").startswith(
        "--visible=4,x is not allowed: one or more integers"
    )
    names, counts, root = oracle_speed.check(["junction"], 6, 2, ["4", "23"], "HEAD")
    assert names == ["junction"] and counts == (4, 23)
    assert os.path.isdir(os.path.join(root, "benchmarks"))


class Stop(Exception):
    """Raised by a test's stand-in where the benchmark would compute."""


def test_oracle_speed_prepares_only_the_scenes_asked_for(monkeypatch, tmp_path):
    asked = []

    def scene(name, **options):
        asked.append(name)
        raise Stop

    monkeypatch.setattr(rectbert, "scene", scene)
    with pytest.raises(Stop):
        oracle_speed.prepare(str(tmp_path), ["junction"], 1, (19,), 1, 1)
    assert asked == ["junction"]  # not rect's codebook first


@pytest.mark.parametrize("stop", [Stop, KeyboardInterrupt])
def test_oracle_speed_removes_its_folder_and_worktree_whatever_happens(monkeypatch, tmp_path, stop):
    commands = []

    def prepare(folder, *args):
        open(os.path.join(folder, "rect.npz"), "w").close()
        raise stop

    monkeypatch.setattr(oracle_speed.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(oracle_speed, "prepare", prepare)
    monkeypatch.setattr(
        oracle_speed, "subprocess", types.SimpleNamespace(run=lambda c, **_: commands.append(c))
    )
    with pytest.raises(stop):
        oracle_speed.compare("/repo", "HEAD", ["rect"], (19,), (1, 1, 1))
    assert os.listdir(tmp_path) == []
    tree = commands[0][-2]
    assert commands == [
        ["git", "worktree", "add", "--detach", "-q", tree, "HEAD"],
        ["git", "worktree", "remove", "--force", tree],
    ]


# ------------------------------------------------------------------------ train_throughput
def test_train_throughput_refuses_peer_only_without_json(tmp_path):
    assert refused(train_throughput.check, 30, ["fast"], "small", 0, "", True) == (
        "--peer_only=True is not allowed: true only with --json (its rows go there)"
    )
    assert train_throughput.check(30, ["fast"], "small", 0, str(tmp_path / "p.json"), True) == 64


# ----------------------------------------------------------------------------- where_points
def test_where_points_refuses_samplers_the_flagfile_s_scene_does_not_serve_before_any_run(
    tmp_path,
):
    flagfile = tmp_path / "a.flags"
    flagfile.write_text("--scene=rect\n--max_side=150\n")
    check = where_points.check
    assert refused(check, "", ["uniform"], ["0"]).startswith("--flagfile_run= is")
    said = refused(check, str(flagfile), ["uniform", "strokes"], ["0"])  # no strokes on rect
    assert said == (
        "--samplers=uniform,strokes is not allowed: distinct names of ['uniform', 'edges', "
        "'near', 'nocorners'] (rect serves)"
    ), said
    assert refused(check, str(flagfile), ["near", "near"], ["0"]).startswith("--samplers=near,")
    assert refused(check, str(flagfile), ["near"], ["-1"]).startswith("--seeds=")
    assert refused(check, str(flagfile), ["near"], ["1", "1"]).startswith("--seeds=1,1 is")
    assert refused(check, str(flagfile), [], ["0"], "junctions").startswith("--query_points=")
    flagfile.write_text("--scene=rect\n--max_side=9999\n")  # the scene refuses it
    assert "max_side" in refused(check, str(flagfile), ["near"], ["0"])
    flagfile.write_text("--scene=glyph\n--occlude=random:40,80\n")
    assert refused(check, str(flagfile), ["strokes"], ["0"]).endswith("flagfile's --occlude")
    assert check(str(flagfile), [], ["0", "2"]) == (("",), (0, 2))
    flagfile.write_text("--scene=glyph\n--glyphs=ABC\n")
    assert check(str(flagfile), ["junctions"], ["0"], "uniform") == (("junctions",), (0,))


def test_where_points_passes_each_run_its_sampler_seed_and_query_points(tmp_path, monkeypatch):
    flagfile = tmp_path / "g.flags"
    flagfile.write_text("--scene=glyph\n--glyphs=ABC\n")
    calls = []

    def ran(cmd):
        calls.append(cmd[3:])
        return types.SimpleNamespace(returncode=0)

    monkeypatch.setattr(where_points.subprocess, "run", ran)
    monkeypatch.setattr(where_points, "last_eval", lambda w: {"eval/masked_accuracy": 0.5,
                        "eval/nearest_accuracy": 0.4, "eval/majority_accuracy": 0.3})  # fmt: skip
    where_points.study(
        str(flagfile), ["junctions", "strokes"], ["0", "2"], str(tmp_path), "uniform"
    )
    root = f"{tmp_path}/g_query_uniform"
    assert calls == [
        [f"--flagfile={flagfile}", f"--seed={k}", f"--workdir={root}/{s}/seed{k}",
         f"--point_sampler={s}", "--query_points=uniform"]
        for s in ("junctions", "strokes") for k in (0, 2)
    ]  # fmt: skip


def test_where_points_table_pairs_by_seed():
    rows = lambda acc, near, unseen: [  # noqa: E731
        {"eval/masked_accuracy": a, "eval/nearest_accuracy": b, "eval/majority_accuracy": 0.5,
         "eval/unseen_masked_accuracy": u, "eval/unseen_nearest_accuracy": 0.3}
        for a, b, u in zip(acc, near, unseen, strict=True)
    ]  # fmt: skip
    text = where_points.table(
        {
            "uniform": rows([0.7, 0.8], [0.5, 0.6], [0.6, 0.7]),
            "junctions": rows([0.7, 0.9], [0.5, 0.5], [0.7, 0.9]),
        }  # fmt: skip
    )
    lines = text.splitlines()
    # model - nearest 0.2, 0.2: mean 0.2, se 0; unseen - first: 0.1, 0.2 -> 0.15 +- 0.05
    assert lines[2].startswith("| uniform | 0.750 ± 0.071 | 0.550 ± 0.071 |"), lines[2]
    # junctions: model - nearest 0.2, 0.4; unseen - held-out 0, 0; unseen - first 0.1, 0.2
    assert lines[3].endswith("| +0.300 ± 0.100 | +0.000 ± 0.000 | +0.150 ± 0.050 |"), lines[3]
    assert lines[2].endswith("| +0.200 ± 0.000 | -0.100 ± 0.000 | — |"), lines[2]


# ------------------------------------------------------------------------- the commands
COMMAND_CASES = [  # module, flags ({run}: anycount_run, {glyph}: glyph_record), the line's start
    ("glyph_posterior", ["--workdir={glyph}", "--example=9999"], "error: --example=9999 is not"),
    ("compare_runs", ["--workdirs={run},{run}", "--examples=1000"], "error: --examples=1000 is"),
    ("ceiling_report", ["--json={bad}"], "error: {bad}: row 0 (default): held_out_right is"),
    ("oracle_speed", ["--visible=24"], "error: --visible=24 is not allowed: an integer in [1, 23]"),
    ("touched", ["--scenes=rect"], "error: --scenes=rect is not allowed: one or more names"),
    ("scaling", ["--json=x.json"], "error: Unknown command line flag 'json'"),  # not its flag
]


@pytest.mark.slow  # a process each (~5 s)
@pytest.mark.parametrize(
    "module,args,start", COMMAND_CASES, ids=[" ".join(a) for _, a, _ in COMMAND_CASES]
)
def test_the_command_refuses_in_one_line_with_status_1(request, tmp_path, module, args, start):
    names = {"bad": write(tmp_path, {"rows": [{**ROW, "held_out_right": "1x11"}]})}
    for name, fixture in [("run", "anycount_run"), ("glyph", "glyph_record")]:
        if any(f"{{{name}}}" in a for a in args):  # made only where a case needs it
            names[name] = request.getfixturevalue(fixture)
    out = run_module(f"benchmarks.{module}", *(a.format(**names) for a in args), timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith(start.format(**names)) and out.stdout == "", lines[0]


def test_touched_refuses_more_pairs_than_it_can_hold_before_any_compute():
    from benchmarks import touched

    said = refused(touched.check, ["glyph"], ["100000"], 24, 3)
    assert said.startswith("--shapes=100000 is not allowed: one or more integers in [1, 41666]")
    assert touched.check(["glyph", "rotated"], ["20000", "96"], 24, 5) == (
        ["glyph", "rotated"],
        (20000, 96),
    )


# --------------------------------------------------------------------------- oracle_config
def test_oracle_config_refuses_a_scene_counts_and_configs_it_cannot_compare():
    said = refused(oracle_config.check, "nope", ["8"], 12, ["tied_step=40"])
    assert said.startswith("--scene=nope is not allowed: a scene the oracle serves"), said
    assert "--visible=24 is not allowed" in refused(
        oracle_config.check, "junction", ["24"], 12, ["tied_step=40"]
    )
    assert "--examples=1 is not allowed" in refused(
        oracle_config.check, "junction", ["8"], 1, ["tied_step=40"]
    )

    def why(*bad, scene="junction"):
        said = refused(oracle_config.check, scene, ["8"], 12, list(bad))
        assert said.startswith(f"--against={','.join(bad)} is not allowed: "), said
        return said.split(" is not allowed: ", 1)[1]

    assert why("tied_step=1").startswith("the default sampler on junction")
    assert why("ensemble_moves=2").startswith("the default sampler on junction")  # its own
    assert why("ensemble_moves=0", scene="rect").startswith("the default sampler on rect")
    assert why().startswith("the default sampler")
    assert why("min_ess=50").startswith("'min_ess' is not one of")  # a report's, not sampling
    assert why("nope=3").startswith("'nope' is not one of")
    assert why("shrinks").startswith("shrinks is an integer")
    for bad in ("shrinks=2.5", "shrinks=8.0", "shrinks=inf", "shrinks=-2", "chains=99999999999"):
        assert why(bad).startswith(bad.split("=")[0] + " is an integer"), bad
    for bad in ("tied_step=nan", "tied_step=inf", "tied_step=1_0", "tied_step=x"):
        assert why(bad) == "tied_step is a finite number", bad
    assert why("screen=0") == "screen is true or false"
    assert why("shrinks=2", "shrinks=3") == "shrinks is given twice"
    assert why("shrinks=0") == "OracleConfig.shrinks=0: must be an integer >= 1"
    assert why("tied_step=41").startswith("OracleConfig.tied_step=41.0: must be a number in (0")
    from rectbert.analysis import oracle

    fields = {f.name for f in dataclasses.fields(oracle.OracleConfig())}
    assert set(oracle_config.SAMPLING) == fields - {"min_ess"}  # a new field: say which
    scene, counts, other = oracle_config.check("rects", ["8", "19"], 12, ["anneal_steps=8"])
    assert (scene, counts, other.anneal_steps, other.shrinks) == ("rects", (8, 19), 8, 3)
    other = oracle_config.check("rects", ["8"], 2, ["screen=False", "tied_step=2"])[2]
    assert (other.screen, other.tied_step) == (False, 2.0)
    assert oracle_config.check("rect", ["8"], 2, ["ensemble_moves=2"])[2].ensemble_moves == 2


def test_oracle_config_row_by_hand():
    # two examples of three points, the last two hidden; two classes. Default: 4 s and 2 s,
    # the other 1 s and 1 s, so it buys sqrt(4 x 2) = 2.83x (geometric mean of the pairs)
    def post(probs, ess, err):
        return types.SimpleNamespace(probs=[np.asarray(probs)], ess=[ess], evidence_error=[err])

    tokens = np.array([[0, 1, 0], [1, 1, 0]])
    visible = np.array([[True, False, False], [True, False, False]])
    a = [[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]  # hidden argmax 1, 0: right, right
    b = [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]  # hidden argmax 0, 1: wrong, wrong
    default = [(4.0, post(a, 150.0, 0.1)), (2.0, post(a, 50.0, 0.3))]
    other = [(1.0, post(b, 20.0, 0.5)), (1.0, post(a, 120.0, 0.7))]
    row = oracle_config._row(19, default, other, (None, tokens, visible), 2)
    # ± 2.83 x sd(ln 4, ln 2) / sqrt 2 = 0.98; accuracy over the 4 hidden tokens: 4/4 and 2/4;
    # TV: b against a on example 0 (0.4 and 0.6), 0 on example 1: mean 0.25
    want = "| 19 | 3.00 / 1.00 | 2.83x ± 0.98 | 100 / 70 | 0.20 / 0.60 | 1 / 1 of 2 "
    want += "| 1.000 / 0.500 | 0.250 |"
    assert row == want, row


# -------------------------------------------------------------------------- oracle_profile
def test_oracle_profile_refuses_bad_counts_and_sums_a_trace_by_hand():
    assert "--visible=24 is not allowed" in refused(oracle_profile.check, 24, 8)
    assert "--top=0 is not allowed" in refused(oracle_profile.check, 19, 0)

    def op(name, ts, dur, module="jit__posterior"):
        args = {"hlo_op": name, "hlo_module": module}
        return {"ph": "X", "name": name, "ts": ts, "dur": dur, "args": args}

    events = [
        op("while.2", 1e6, 2e6),  # nests the others: its time is theirs
        op("ynn_fusion.7", 1e6, 1.2e6),
        op("ynn_fusion.9", 2.2e6, 0.6e6),
        op("copy.1", 2.8e6, 4),
        op("copy.3", 2.8e6 + 4, 0.2e6 - 4),  # ends with the while, at 3 s
        op("copy.5", 0, 9e6, module="jit__threefry_split"),  # another program
        {"ph": "X", "name": "PjitFunction(f)", "ts": 0, "dur": 9e6, "args": {}},  # not XLA's
    ]
    names = {"ynn_fusion.7": "jit(coverage)/reduce_sum", "ynn_fusion.9": "quantise/reduce"}
    lines = oracle_profile.summary(events, names, 8)
    # by hand: 4 operations of 2.0 s over the while's 2.0 s span (1 to 3 s); one under 10 us
    assert lines[0] == (
        "4 operations, 2.00 s of operation time over a 2.00 s span; 1 under 10 us: 0.00 s (0%)"
    )
    assert lines[1:4] == ["by kind:", "     1.80 s  90%  ynn_fusion", "     0.20 s  10%  copy"]
    assert lines[4] == "by source operation (calls; 2 operations had no op_name):"
    assert lines[5:] == [
        "     1.20 s  60%  jit(coverage)/reduce_sum (1)",
        "     0.60 s  30%  quantise/reduce (1)",
        "     0.20 s  10%  copy.3 (1)",  # unnamed: its own name
        "     0.00 s   0%  copy.1 (1)",
    ]
    assert oracle_profile.summary(events[-2:], names, 8) == [
        "no operation of jit__posterior was traced"
    ]
    # against the call's untraced seconds: 2.00 s of operations in a call of 4 s, by hand
    assert oracle_profile.summary(events, names, 8, untraced=4.0)[-1] == (
        "operations 2.00 s traced, the call 4.00 s untraced (50%): the trace's seconds are "
        "not the call's, and its shares are unverified"
    )


def test_oracle_profile_names_each_operation_by_its_source_less_the_wrappers():
    wrapped = "jit(_posterior)/while/body/closed_call"
    text = "\n".join(
        [
            "  %ynn_fusion.47 = f32[96,24,4,4]{3,2,1,0} fusion(%a, %b), kind=kCustom, "
            f'metadata={{op_name="{wrapped}/cond/branch_0_fun/while/body/jit(coverage)/'
            'reduce_sum" stack_frame_id=3}',
            "  %copy.3 = f32[4]{0} copy(%c)",
            f'  %sort.2 = (f32[8]{{0}}) sort(%d), metadata={{op_name="{wrapped}/cond/'
            'branch_1_fun/jit(coverage)/jit(argsort)/sort"}',
            '  %while.9 = (s32[]) while(%e), metadata={op_name="jit(_posterior)/while"}',
        ]
    )
    assert oracle_profile.source_ops(text) == {
        "ynn_fusion.47": "cond/branch_0_fun/jit(coverage)/reduce_sum",
        "sort.2": "cond/branch_1_fun/jit(coverage)/jit(argsort)/sort",
        "while.9": "",
    }


def test_oracle_speed_alternates_the_trees_example_by_example(tmp_path, capsys):
    # the machine's speed drifts within a run: each tree's examples are timed turn by turn,
    # which tree goes first alternating, the first (compiling) example of each left out
    asked = []

    class Fake:
        def __init__(self, tag, seconds):
            self.tag, self.root, self.seconds = tag, f"/{tag}", seconds

        def ask(self, **request):
            asked.append((self.tag, request["do"], request.get("example")))
            if request["do"] == "coverage":
                return 1.0
            return dict(s=self.seconds, ess=9.0, probs=[[1.0]], components=[1.0])

    trees = [Fake("ours", 1.0), Fake("ref", 2.0)]
    got = oracle_speed.measure(str(tmp_path), trees, ["rect"], (4,), {"rect": 3})
    examples = [(tag, e) for tag, do, e in asked if do == "example"]
    assert examples == [
        ("ours", 0), ("ref", 0), ("ref", 1), ("ours", 1), ("ours", 2), ("ref", 2), ("ref", 3),
        ("ours", 3),
    ]  # fmt: skip
    coverage = [tag for tag, do, _ in asked if do == "coverage"]
    assert coverage == ["ours", "ref"] * 11  # saved once each, then ten timed calls each, in turn
    assert got["ours"]["rect"]["4"]["per_example_s"] == [1.0] * 3
    assert got["ref"]["rect"]["4"]["per_example_s"] == [2.0] * 3
    assert "3/3 examples" in capsys.readouterr().out
    assert oracle_speed._paired([1.0, 1.0], [2.0, 2.0]) == "2.00x ± 0.00 paired"
    # by hand: ratios 2 and 8, logs ln 2 and 3 ln 2: the geometric mean 4, the logs' sd
    # sqrt 2 ln 2, so the standard error 4 x ln 2 (sd / sqrt 2)
    speed, se = oracle_speed.speedup([1.0, 1.0], [2.0, 8.0])
    assert np.isclose(speed, 4.0) and np.isclose(se, 4 * np.log(2))


@pytest.mark.slow  # a process (~1 s)
def test_oracle_speed_answers_on_their_own_line_whatever_else_prints(tmp_path):
    # a tree's process answers one JSON line a request on stdout; a library's print there
    # would break the protocol, so serve() sends everything else to stderr
    import subprocess
    import sys

    json.dump({"scenes": {"x": {}}}, open(tmp_path / "spec.json", "w"))
    open(tmp_path / "x.npz", "wb").close()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"import sys; sys.path.insert(0, {root!r}); from benchmarks import oracle_speed; "
        "import rectbert; rectbert.scene = lambda name, **options: None; "
        "oracle_speed.np.load = lambda path: None; "
        "oracle_speed._coverage = lambda *a: (print('noise'), 1.5)[1]; "
        f"oracle_speed.serve({str(tmp_path)!r})"
    )
    ask = '{"do": "coverage", "name": "x", "tag": "t", "repeats": 1}\n{"do": "quit"}\n'
    done = subprocess.run(
        [sys.executable, "-c", code], input=ask, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) == 1.5, done.stdout
    assert json.loads(lines[0]).endswith("rectbert")  # the tree's package, first
    assert "noise" in done.stderr
