"""Shared tiny configurations and helpers: small enough that a test trains in seconds."""

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import pytest
from hypothesis import settings

from experiments import cli
from rectbert import scenes
from rectbert.data import squares, tasks
from rectbert.data.sparse_task import SparseTask
from rectbert.model.encoder import ModelConfig
from rectbert.recipes import sparse
from rectbert.training import engine, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tests build many identical small programs (a tiny model's step, its evaluation), and most
# of the suite's time is XLA compiling them: XLA's persistent compilation cache compiles each
# once and keeps it between runs of the suite (the first run here: about 3 min; the next
# ones under 2, 2026-12-07), in ~/.cache/rectbert/xla-tests/<jax version>
# (RECTBERT_TEST_XLA_CACHE elsewhere; emptied when it passes CACHE_LIMIT). xdist's workers
# and the subprocesses they start share it. A cache only skips compilation: it changes no
# result (the key is the program, its options and the backend, so an edited program is
# compiled anew).
CACHE_LIMIT = 512 * 2**20


def _cache_dir() -> str:
    given = os.environ.get("RECTBERT_TEST_XLA_CACHE")
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "rectbert", "xla-tests", jax.__version__)
    try:
        os.makedirs(path, exist_ok=True)
        held = sum(e.stat().st_size for e in os.scandir(path) if e.is_file())
        if held > CACHE_LIMIT and not os.environ.get("PYTEST_XDIST_WORKER"):
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path, exist_ok=True)
    except OSError:  # no home to write to: one cache for this run only
        path = tempfile.mkdtemp(prefix="rectbert-xla-cache-")
    return path


os.environ["RECTBERT_TEST_XLA_CACHE"] = _cache_dir()
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["RECTBERT_TEST_XLA_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# XLA's LLVM optimisation level 0 compiles ~40 % faster; the default tier's tests check
# behaviour, not speed, of programs that run for milliseconds. With it, XLA CPU's older loop
# emitters (EMITTERS) take a third off again: the default tier with nothing compiled took
# 0.63x and 0.67x the time in runs one after the other (2026-12-07: 3 min 3 s against 4 min
# 49 s, 2 min 49 s against 4 min 11 s), every test passing with either. The slow
# tier (`-m slow`) is compiled fully optimised, with neither: its oracle checks run for
# minutes, 4.4x slower at level 0 (measured on the eight-letter screening test: 294 s
# against 67 s), and fully optimised the older emitters compile slower (the junction
# oracle's program and a first example: 86 s against 47 s).
# RECTBERT_TEST_XLA_FLAGS overrides both ("" runs every tier optimised). Set before any test
# computes (XLA reads it when the CPU backend starts); subprocesses inherit it. Other flags
# that compiled no faster are listed in benchmarks/RESULTS.md.
LEVEL_0 = "--xla_backend_optimization_level=0"
EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_flags(markexpr: str) -> str:
    """XLA_FLAGS as the run found them (kept for xdist's workers, which inherit the
    controller's), then the tier's: "" under `-m slow` (exactly), else LEVEL_0 and EMITTERS
    where this XLA knows that flag (_knows), or RECTBERT_TEST_XLA_FLAGS where it is set. A
    slow test named by its id runs as the default tier."""
    base = os.environ.setdefault("RECTBERT_TEST_XLA_BASE", os.environ.get("XLA_FLAGS", ""))
    given = os.environ.get("RECTBERT_TEST_XLA_FLAGS")
    if given is not None:
        ours = given
    elif markexpr.strip() == "slow":
        ours = ""
    else:
        ours = " ".join([LEVEL_0] + ([EMITTERS] if _knows(EMITTERS) else []))
    return " ".join([base, ours]).strip()


def _knows(flag: str) -> bool:
    """Whether this jaxlib's XLA accepts `flag`: a process of its own asks (~1 s), since XLA
    aborts the process at an unknown one; once a run, the answer handed to xdist's workers in
    RECTBERT_TEST_XLA_KNOWS ("flag yes|no"). Asked anew every run: a kept answer would
    outlive an upgraded jaxlib."""
    handed, _, answer = os.environ.get("RECTBERT_TEST_XLA_KNOWS", "").rpartition(" ")
    if handed != flag or answer not in ("yes", "no"):
        env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
        probe = [sys.executable, "-c", "import jax; jax.devices()"]
        try:
            done = subprocess.run(probe, env=env, capture_output=True, check=False, timeout=120)
            answer = "yes" if done.returncode == 0 else "no"
        except subprocess.TimeoutExpired:
            answer = "no"
    os.environ["RECTBERT_TEST_XLA_KNOWS"] = f"{flag} {answer}"
    return answer == "yes"


def pytest_report_header(config):
    """The XLA flags the run compiles with, on pytest's first lines (a flag left out shows)."""
    return f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}"


def pytest_configure(config):
    """A test named by its id (tests/test_runs.py::test_...) runs even if it is slow: the
    default tier's `-m 'not slow'` (pyproject.toml) is for whole files and folders. Then the
    tier's XLA flags (_xla_flags)."""
    if any("::" in a for a in config.args) and config.option.markexpr == "not slow":
        config.option.markexpr = ""
    os.environ["XLA_FLAGS"] = _xla_flags(config.option.markexpr)


# The slow tier's longest tests (cold, 2026-12-06: 50-195 s each, most of them compiling the
# oracle at full optimisation), run first: started last, one of them held the tier's end alone
# while the other worker idled. Prefixes of node ids; a renamed one just loses its place.
FIRST = (
    "tests/test_oracle_screening.py::test_screening_leaves_the_posterior",
    "tests/test_oracle_screening.py::test_two_letters_that_both_explain",
    "tests/test_glyph.py::test_batched_components_equal_components",
    "tests/test_oracle_rejection.py::test_the_oracle_matches_rejection_sampling",
    "tests/test_stages.py::test_a_signal_in_a_final_stage_stops_it",
    "tests/test_samples.py::test_samples_end_to_end_through_both_entry_points",
    "tests/test_oracle_screening.py::test_the_letter_drawn_is_found_among_eight",
    "tests/test_tutorial.py::test_the_tutorial_runs_from_top_to_bottom",
    "tests/test_relative.py::test_the_device_checks_relative_step_runs_here",
)


def pytest_collection_modifyitems(config, items):
    """Under `-m slow`, the longest tests (FIRST) first, in its order; the rest as collected."""
    if config.option.markexpr.strip() != "slow":
        return

    def rank(item):
        return next((i for i, p in enumerate(FIRST) if item.nodeid.startswith(p)), len(FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


# Hypothesis: 25 examples per property in the default tier, 100 in CI (CI=true)
settings.register_profile("default", max_examples=25)
settings.register_profile("ci", max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")

# flags of a model and run that train in seconds (appended after a test's own flags win
# only where they come later on the command line)
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
# a scene task's codebook, small and quick to fit
TINY_CODEBOOK = ["--codebook_rects=10", "--num_clusters=8"]

SQUARES = squares.SquaresTask(mask=tasks.MaskSpec(count=13), presentations=2, eval_examples=64)
SQUARES_MODEL = ModelConfig(
    num_tokens=2,
    num_positions=64,
    extent=8.0,
    unit=1.0,
    embed_dim=16,
    mlp_dim=32,
    num_heads=2,
    num_layers=1,
)
SQUARES_TRAIN = engine.TrainConfig(
    num_steps=9,
    batch_size=16,
    learning_rate=3e-3,
    warmup_steps=2,
    log_every=1,
    eval_every=3,
    checkpoint_every=3,
    eval_batch_size=32,
)
RECT = scenes.scene("rect")


def installed(family: str) -> bool:
    """Whether the distributions the scene family requires (an optional extra) are here."""
    try:
        for name in scenes.SCENES[family].requires:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# flags whose run builds thousands of drawings (every icon: 30 s here; the kanji of 1-8
# strokes and their junctions: 12 s): a test that only validates such a command is slow
BIG_LIBRARIES = ("--icons=all", "--kanji=strokes:1-8")


def builds_a_big_library(args) -> bool:
    """Whether these command-line arguments (a --flagfile's lines among them) ask for one of
    BIG_LIBRARIES."""
    for a in args:
        a = a.strip()
        if a in BIG_LIBRARIES:
            return True
        if a.startswith("--flagfile="):
            try:
                with open(os.path.join(ROOT, a.removeprefix("--flagfile="))) as f:
                    if builds_a_big_library(f):
                        return True
            except OSError:  # not a file here (a run's flags.txt): the test itself says so
                pass
    return False


def family_param(name: str, *rest, id=None, family=None, slow=False):
    """pytest.param(name, *rest) skipped where the scene family's (default: `name`) optional
    extra is not installed; in the slow tier with `slow`."""
    family = family or name
    marks = [pytest.mark.skipif(not installed(family), reason=f"{family} needs its extra")]
    return pytest.param(name, *rest, marks=marks + [pytest.mark.slow] * slow, id=id)


@pytest.fixture(scope="session")
def sparse_task():
    """The default scene's sparse task with a 12-token codebook (fitted once per session)."""
    task = SparseTask(RECT, tasks.MaskSpec(5), num_clusters=12, codebook_examples=60)
    return task.with_codebook(task.fit_codebook()[0])


@pytest.fixture(scope="session")
def centroids(sparse_task):
    return sparse_task.codebook


def parse(recipe, *args):
    """The recipe's flags, parsed from `args` in this process (as `python -m` would)."""
    return cli.parse(recipe, ["prog", *args])


def build(recipe, *args):
    """The recipe's plan from these flags (validation only), as the command builds it."""
    return cli.build(recipe, parse(recipe, *args))


def run_module(module: str, *args, timeout=300):
    """`python -m module args` as a user runs it (only where the process is the point)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def same_params(a, b) -> bool:
    return all(
        bool((x == y).all()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def shared(tmp_path_factory, name: str, make) -> str:
    """A directory made once per test run and shared by every xdist worker (the first to ask
    makes it, under a file lock; the others wait, then read it): make(path) fills it. Tests
    that write into it copy it first (copy())."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").exists():
            shutil.rmtree(path, ignore_errors=True)
            make(str(path))
            (root / f"{name}.done").touch()
    return str(path)


def copy(workdir: str, tmp_path) -> str:
    """A private copy of a shared run, for a test that writes into it."""
    target = tmp_path / os.path.basename(workdir)
    shutil.copytree(workdir, target)
    return str(target)


# a tiny any-count sparse run (rect): the oracle curve's and the samples' tests share it
ANYCOUNT = ["--num_steps=3", "--mask_schedule=anycount", *TINY_CODEBOOK, *TINY]


@pytest.fixture(scope="session")
def anycount_run(tmp_path_factory) -> str:
    """The sparse experiment's run of ANYCOUNT (its workdir, config.json and flags.txt as the
    command writes them), trained without the figures the command draws at its end (seconds
    of compiling that no test of it needs)."""

    def make(path):
        fv = parse(sparse, f"--workdir={path}", *ANYCOUNT)
        plan = cli.build(sparse, fv)
        text = cli.flags_text(sparse, fv, cli.values(sparse, fv))
        train.train(plan.run, path, files={"flags.txt": text})

    return shared(tmp_path_factory, "anycount", make)


@pytest.fixture(scope="session")
def squares_run(tmp_path_factory) -> str:
    """SQUARES trained with SQUARES_MODEL and SQUARES_TRAIN (9 steps): training's tests share it."""

    def make(path):
        train.train(engine.RunConfig(SQUARES, SQUARES_MODEL, SQUARES_TRAIN), path)

    return shared(tmp_path_factory, "squares", make)
