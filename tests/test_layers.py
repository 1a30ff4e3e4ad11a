"""The code map's promises, read from the source: every import runs down the layers (a lower
layer never imports a higher one), entry points never import each other, benchmarks call the
library, and modules and functions stay small."""

import ast
import os

import pytest

from tests.conftest import ROOT

# rectbert's layers, lowest first: a module may import its own layer and those below
LAYERS = [
    ("config", "files", "rate", "warn"),  # the foundation: validation, files, warnings
    ("geometry",),
    ("scenes",),
    ("data",),
    ("model",),
    ("training",),
    ("viz",),
    ("analysis",),
    ("recipes",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def modules(folder: str):
    for d, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                yield os.path.relpath(path, ROOT), ast.parse(open(path).read())


def imported(tree) -> list[str]:
    """Every module an import statement names (`from a import b` gives a.b and a)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return out


def layer(dotted: str) -> int | None:
    parts = dotted.split(".")
    if parts[0] != "rectbert" or len(parts) < 2 or parts[1] not in RANK:
        return None
    return RANK[parts[1]]


def test_every_import_runs_down_the_layers():
    wrong = []
    for path, tree in modules("rectbert"):
        parts = path[:-3].split(os.sep)
        if parts[-1] == "__init__" and len(parts) == 2:
            continue  # rectbert/__init__.py: the public API, above every layer
        own = RANK[parts[1]]
        for name in imported(tree):
            theirs = layer(name)
            if theirs is not None and theirs > own:
                wrong.append(f"{path} imports {name}")
            if name.split(".")[0] in ("experiments", "benchmarks", "tests"):
                wrong.append(f"{path} imports {name}: the library imports none of them")
    assert not wrong, "\n".join(wrong)


def test_entry_points_and_benchmarks_call_the_library():
    for path, tree in modules("experiments"):
        names = imported(tree)
        others = [n for n in names if n.startswith("experiments.") and n != "experiments.cli"]
        assert not others, f"{path} imports {others}: entry points never import each other"
    for path, tree in modules("benchmarks"):
        names = imported(tree)
        assert not [n for n in names if n.split(".")[0] == "experiments"], f"{path}"


@pytest.mark.parametrize("folder", ["rectbert", "experiments", "benchmarks"])
def test_modules_and_functions_stay_small(folder):
    for path, tree in modules(folder):
        lines = len(open(os.path.join(ROOT, path)).read().splitlines())
        assert lines <= 400, f"{path}: {lines} lines"
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path}:{node.lineno} {node.name}: {length} lines"
