"""Sizes bounded by memory, refused in one line before anything is written (the experiments'
flags), and the benchmarks' command lines: a bad flag is one line naming it, before any
compute; an empty configuration list is refused."""

import pytest

from benchmarks import kmeans, oracle, time_to_ceiling, usage
from experiments import cli
from rectbert.data import tasks
from rectbert.recipes import grid, sparse, squares
from rectbert.recipes import oracle_curve as curve_recipe
from tests.conftest import build, parse, run_module

BIG = "99999999999999999999"  # more than int64 holds: absl still reads it as an int
TOO_BIG = [
    (sparse, ["--extra_targets=100000000"], "extra_targets", "[0, 32744]"),
    (sparse, [f"--extra_targets={BIG}"], "extra_targets", "[0, 32744]"),
    (sparse, [f"--num_points={BIG}"], "num_points", "[2, 32768]"),
    (sparse, ["--num_points=30000", "--extra_targets=2769"], "extra_targets", "[0, 2768]"),
    (sparse, [f"--eval_examples={BIG}"], "eval_examples", "[1, 5592405]"),  # 2**31 // (24*16)
    (grid, [f"--codebook_rects={BIG}"], "codebook_rects", "[1, 794187]"),  # 2**31 // (169*16)
    (grid, [f"--num_train_rects={BIG}"], "num_train_rects", "[0, 794187]"),
    (grid, ["--num_train_rects=100", f"--presentations={BIG}"], "presentations", "21474836"),
    (grid, [f"--batch_size={BIG}"], "batch_size", "268435456"),
    (squares, [f"--image_size={BIG}"], "image_size", "[1, 181]"),
    (squares, ["--image_size=181", "--max_square=181"], "image_size", "squares"),
    (sparse, [f"--num_steps={BIG}"], "num_steps", "int32"),
    (sparse, [f"--warmup_steps={BIG}"], "warmup_steps", "int32"),
    (sparse, [f"--eval_every={BIG}"], "eval_every", "int32"),
    (sparse, [f"--embed_dim={BIG[:-1]}6"], "embed_dim", "89478485"),  # 2**31 // 24 tokens
    (sparse, [f"--mlp_dim={BIG}"], "mlp_dim", "89478485"),
    # 64 x (24 + 20000) x 256 activations: batch x tokens x width over 2**31 elements
    (sparse, ["--extra_targets=20000", "--num_heads=1", "--batch_size=64"], "batch_size", "[1, 5]"),
    (sparse, ["--extra_targets=30000"], "num_heads", "<= 2"),  # 4 heads' [L, L] scores
]


@pytest.mark.parametrize(
    "recipe,args,flag,allowed", TOO_BIG, ids=[str(a) for _, a, _, _ in TOO_BIG]
)
def test_sizes_past_memory_fail_in_one_line_before_writing_anything(
    tmp_path, recipe, args, flag, allowed
):
    workdir = tmp_path / "run"
    with pytest.raises(cli.Error) as e:
        build(recipe, *args, f"--workdir={workdir}")
    message = str(e.value)
    assert message.startswith(f"--{flag}=") and "\n" not in message, message
    assert allowed in message and ("2**31" in message or "int32" in message), message
    assert not workdir.exists()


def test_the_bounds_follow_from_the_element_budget():
    # by hand: a batch of 8 examples of 24 + 1000 tokens at width 256, 4 heads: the scores
    # [8, 4, 1024, 1024] = 2**25 elements, the activations [8, 1024, 256] = 2**21: both fit;
    # the largest batch is 2**31 // (4 * 1024**2) = 512
    plan = build(sparse, "--extra_targets=1000", "--batch_size=512", "--mlp_dim=256")
    assert plan.run.task.extra_targets == 1000
    with pytest.raises(
        cli.Error, match=r"^--batch_size=520 is not allowed: an integer in \[1, 512\]"
    ):
        build(sparse, "--extra_targets=1000", "--batch_size=520", "--mlp_dim=256")
    assert tasks.MAX_ELEMENTS == 2**31 and tasks.MAX_LEN**2 <= tasks.MAX_ELEMENTS


def test_a_list_flag_that_is_not_whole_numbers_names_the_flag_and_what_is_allowed():
    for recipe in (curve_recipe, sparse):
        with pytest.raises(cli.Error, match=r"^flag --curve_visible=a: must be whole numbers"):
            parse(recipe, "--curve_visible=a")


# ----------------------------------------------------------------------------- benchmarks
def ttc_check(configs=("default",), settings=(), visible=("2",), examples=2048, every=250):
    return time_to_ceiling.check(list(configs), list(settings), list(visible), examples, every, 5)


@pytest.mark.parametrize(
    "kwargs,start",
    [
        (dict(configs=["nope"]), "--configs=nope is not allowed: names from ['default'"),
        (dict(configs=[]), "--configs= is not allowed: names from"),  # nothing to time
        (dict(visible=["a"]), "--visible=a is not allowed: one or more integers"),
        (dict(visible=[]), "--visible= is not allowed"),
        (dict(configs=["anycount_quick"], visible=["30"]), "--visible=30 is not allowed"),
        (dict(examples=10), "--validation_examples=10 is not allowed: an integer in [64,"),
        (dict(every=int(BIG)), f"--eval_every={BIG} is not allowed: an integer in [1,"),
        (dict(settings=["nope=1"]), "--setting=nope=1 is not allowed: name=value"),
        (dict(settings=["curve_visible=a"]), "--setting=curve_visible=a is not allowed: curve"),
        (dict(settings=["embed_dim=30"]), "--setting=embed_dim=30 is not allowed: --embed_dim"),
    ],
)
def test_time_to_ceiling_refuses_each_bad_flag_in_one_line(kwargs, start):
    with pytest.raises(usage.Error) as e:
        ttc_check(**kwargs)
    assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)


def test_time_to_ceiling_accepts_its_shipped_configurations():
    todo, visible = ttc_check(configs=list(time_to_ceiling.CONFIGS), visible=["2", "8", "19"])
    assert list(todo) == list(time_to_ceiling.CONFIGS) and visible == (2, 8, 19)
    todo, _ = ttc_check(configs=[], settings=["embed_dim=96"])  # only the custom one
    assert todo == {"custom": {"embed_dim": 96}}


def test_the_benchmarks_checks_name_the_flag(tmp_path):
    with pytest.raises(usage.Error, match=r"^--k=0 is not allowed: an integer in \[1, 1000\]"):
        kmeans.check(1000, 0, 3, 3)
    with pytest.raises(usage.Error, match=r"^--points=0 is not allowed"):
        kmeans.check(0, 20, 3, 3)
    with pytest.raises(usage.Error, match=r"^--examples=0 is not allowed: an integer in \[1,"):
        oracle.check(0)
    with pytest.raises(usage.Error, match=r"^--json=.* is not allowed: a file's path"):
        usage.output("json", str(tmp_path))  # a directory
    with pytest.raises(usage.Error, match=r"^--json=/proc/no/x.json is not allowed: a file in"):
        usage.output("json", "/proc/no/x.json")
    with pytest.raises(usage.Error, match=r"^--mfu=1.5 is not allowed: a number in \(0, 1\]"):
        usage.positive("mfu", 1.5, 1.0)
    assert usage.integers("chips", ["1", "8"], 1) == (1, 8)


BENCHMARK_FLAGS = [  # each entry point, a bad flag of each kind: absl's own, and the checks'
    ("time_to_ceiling", ["--configs=nope"], "configs"),
    ("time_to_ceiling", ["--configs="], "configs"),
    ("time_to_ceiling", ["--visible=a"], "visible"),
    ("time_to_ceiling", ["--json=/proc/no/x.json"], "json"),
    ("time_to_ceiling", ["--eval_every=abc"], "eval_every"),
    ("time_to_ceiling", ["--nope=1"], "nope"),
    ("train_throughput", ["--variants=nope"], "variants"),
    ("train_throughput", [f"--batch_size={BIG}"], "batch_size"),
    ("kmeans", ["--k=0"], "k"),
    ("oracle", ["--examples=0"], "examples"),
    ("oracle_rejection", ["--cases=nope"], "cases"),
    ("scaling", ["--chips=a"], "chips"),
    ("scaling", ["--chips=3"], "chips"),  # does not divide the batch
]


@pytest.mark.slow  # a process each (~5 s)
@pytest.mark.parametrize(
    "module,args,flag", BENCHMARK_FLAGS, ids=[str(a) for _, a, _ in BENCHMARK_FLAGS]
)
def test_a_benchmarks_bad_flag_is_one_line_before_any_compute(module, args, flag):
    out = run_module(f"benchmarks.{module}", *args, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    named = f"--{flag}" in lines[0] or f"flag '{flag}'" in lines[0]  # absl: an unknown one
    assert lines[0].startswith("error: ") and named, lines[0]
    assert out.stdout == "", out.stdout  # nothing measured, nothing printed


@pytest.mark.slow
def test_a_benchmarks_stray_argument_is_one_line():
    out = run_module("benchmarks.kmeans", "stray", timeout=120)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "error: 'stray' is not a flag (flags are --name=value): a stray argument?"
    ], out.stderr
