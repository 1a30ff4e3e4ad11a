"""The docs keep true: every command they show parses and builds with today's flags, and the
site's home page is the README (its links made relative to docs/)."""

import os
import re
import shlex

import pytest

from experiments import cli
from rectbert import scenes
from rectbert.analysis.samples import sampler
from rectbert.data import points
from rectbert.model import positions, relative
from rectbert.recipes import codebook, grid, sparse, sparse_study, squares
from tests.conftest import ROOT, builds_a_big_library

RECIPES = {r.NAME: r for r in (squares, grid, sparse, codebook, sparse_study)}
PAGES = ["README.md", *(os.path.join("docs", f) for f in sorted(os.listdir(f"{ROOT}/docs")))]


def commands() -> list[tuple[str, str]]:
    """(where, command) for every concrete `python -m experiments.<name> ...` in the docs (a
    command with a placeholder, <...> or [...], is a template, not a command)."""
    out = []
    for page in PAGES:
        if not page.endswith(".md"):
            continue
        text = re.sub(r"\\\n\s*", " ", open(os.path.join(ROOT, page)).read())  # continued
        for line in text.splitlines():
            for found in re.findall(r"python -m experiments\.[a-z_]+[^`|#\n]*", line):
                command = found.strip().rstrip(".,;:)")
                if not re.search(r"[<\[]|\.\.\.|…", command):
                    out.append((page, command))
    return out


def _argv(command: str) -> list[str]:
    return [a for a in shlex.split(command) if a != "&"][2:]


def command_param(where: str, command: str):
    big = builds_a_big_library(_argv(command))
    return pytest.param(
        where, command, marks=[pytest.mark.slow] * big, id=f"{where[:60]}-{command[:60]}"
    )


@pytest.mark.parametrize("where,command", [command_param(*c) for c in commands()])
def test_every_command_in_the_docs_builds(tmp_path, where, command):
    name, *args = _argv(command)
    name = name.removeprefix("experiments.")
    args = [a for a in args if not a.startswith("--workdir=")] + [f"--workdir={tmp_path}/run"]
    if name in RECIPES:
        cli.build(RECIPES[name], cli.parse(RECIPES[name], ["prog", *args]))
    else:  # a finished run's command: its flags parse (it needs a run to build)
        from rectbert.recipes import oracle_curve, sample

        recipe = {"oracle_curve": oracle_curve, "sample": sample}[name]
        cli.parse(recipe, ["prog", *args])
    assert not (tmp_path / "run").exists(), f"{where}: {command}"


def home(readme: str) -> str:
    """The README as the site's home page: links relative to docs/, the title first."""
    body = readme.replace("](docs/figures/", "](figures/").replace("](docs/", "](")
    body = body.replace(
        "The docs (`mkdocs serve`, or the Markdown in [`docs/`]()) have every experiment, result"
        "\nand design decision; this page is the map.",
        "These pages have every experiment, result and design decision; this one is the map"
        "\n(`mkdocs serve` in the checkout serves them locally).",
    )
    code, rest = body.split("# rectbert\n", 1)
    return "# rectbert\n\n" + code.strip() + "\n" + rest


def test_the_site_home_is_the_readme():
    readme = open(os.path.join(ROOT, "README.md")).read()
    index = open(os.path.join(ROOT, "docs", "index.md")).read()
    assert index == home(readme), "docs/index.md: write tests.test_docs.home(README.md) there"


def listed(page: str, marker: str) -> list[str]:
    """The `names` of the clause after `marker` on `page` (to the next | ; ( ) or sentence end),
    its lines joined."""
    text = " ".join(open(os.path.join(ROOT, page)).read().split())
    assert marker in text, f"{page} no longer says {marker!r}"
    clause = re.split(r"[|;()]|\. ", text[text.index(marker) + len(marker) :], maxsplit=1)[0]
    return re.findall(r"`([a-z_0-9]+)`", clause)


EXPERIMENTS = sorted(
    f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments")) if f.endswith(".py")
)


@pytest.mark.parametrize(
    "page,marker,registry",
    [
        ("README.md", "`--scene` is one of", scenes.SCENES),
        ("docs/design.md", "one module per family:", scenes.SCENES),
        ("docs/design.md", "point samplers' registry (`points`:", points.SAMPLERS),
        ("docs/design.md", "position embeddings' registry (`positions`:", positions.POSITIONS),
        ("docs/design.md", "in attention (`relative`:", relative.RELATIVES),
        ("docs/design.md", "joint samplers' registry (`sampler`:", sampler.SAMPLERS),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_the_docs_lists_are_the_registries(page, marker, registry):
    assert sorted(listed(page, marker)) == sorted(registry), f"{page}: {marker}"


def test_the_readme_lists_every_experiment():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## The experiments", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^- `([a-z_]+)` —", section, flags=re.M)
    assert sorted(named) == [e for e in EXPERIMENTS if e not in ("__init__", "cli")]


def test_every_test_the_docs_cite_exists():
    # `tests/test_x.py::test_y` (or `::test_y` after it on the same page) names a test there
    defined = {
        f: set(re.findall(r"^def (test_\w+)", open(os.path.join(ROOT, "tests", f)).read(), re.M))
        for f in os.listdir(os.path.join(ROOT, "tests"))
        if f.startswith("test_") and f.endswith(".py")
    }
    missing = []
    for page in PAGES:
        if page.endswith(".md"):
            current = None
            text = open(os.path.join(ROOT, page)).read()
            for file, name in re.findall(r"`(?:tests/(test_\w+\.py))?(?:::(test_\w+))?`", text):
                current = file or current
                if name and name not in defined.get(current, set()):
                    missing.append(f"{page}: {current}::{name}")
    assert not missing, missing
