"""docs/tutorial.ipynb: stored without outputs, and it runs from top to bottom (in a kernel of
its own: the slow tier)."""

import os
import time

import nbformat
import pytest

from tests.conftest import ROOT

PATH = os.path.join(ROOT, "docs", "tutorial.ipynb")


def test_the_tutorial_is_stored_without_outputs():
    nb = nbformat.read(PATH, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow  # a kernel of its own, and a run trained in it: about a minute here
def test_the_tutorial_runs_from_top_to_bottom():
    from nbclient import NotebookClient

    nb = nbformat.read(PATH, as_version=4)
    start = time.time()
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    ).execute()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3, "the three figures: probabilities, joint samples, dense rendering"
    said = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "model / oracle" in said and "true token" in said
    print(f"tutorial: {time.time() - start:.0f} s")
