"""The sparse study's ceiling column: the oracle once per scene, kept in <scene root>/oracle.json
for a resumed study, made again when the file is torn or was made for other shapes, and shown
in the table beside the rows' accuracies."""

import json
import types

import numpy as np

import rectbert
from rectbert.analysis import oracle
from rectbert.data import tasks
from rectbert.data.sparse_task import SparseTask
from rectbert.model import encoder
from rectbert.recipes import sparse_study
from rectbert.training.engine import TrainConfig


def test_the_ceiling_is_measured_once_kept_and_remade_when_stale(
    sparse_task, tmp_path, monkeypatch
):
    calls = []

    def fake(key, batch, centroids, scene, cfg=None, chunk=256, say=None):
        calls.append(int(batch.tokens.shape[0]))
        return {"eval/oracle_accuracy": 0.9, "eval/oracle_accuracy_stderr": 0.01}, None, None

    monkeypatch.setattr(oracle, "evaluate", fake)
    first = sparse_study.ceiling(sparse_task, str(tmp_path), 6, True)
    assert calls == [6]  # the first 6 held-out shapes
    assert first == {"oracle/accuracy": 0.9, "oracle/accuracy_stderr": 0.01, "oracle/examples": 6}
    assert sparse_study.ceiling(sparse_task, str(tmp_path), 6, True) == first
    assert calls == [6]  # read back: a resumed study does not measure again
    sparse_study.ceiling(sparse_task, str(tmp_path), 5, True)  # another count
    (tmp_path / "oracle.json").write_text('{"made_for": ')  # torn by a kill
    sparse_study.ceiling(sparse_task, str(tmp_path), 5, True)
    other = sparse_task.with_codebook(np.asarray(sparse_task.codebook)[::-1].copy())
    sparse_study.ceiling(other, str(tmp_path), 5, True)  # another codebook: other tokens
    assert calls == [6, 5, 5, 5]
    assert json.loads((tmp_path / "oracle.json").read_text())["made_for"]["examples"] == 5
    assert sparse_study.ceiling(sparse_task, str(tmp_path), 0, True) == {}  # no column


def test_the_table_shows_the_ceiling_or_a_dash(tmp_path):
    base = {"regime": "fresh", "position": "sincos", "attention": "context"}
    scores = {k: 0.5 for k in ("masked_accuracy", "train_masked_accuracy", "gap")}
    scores.update(nearest_accuracy=0.4, majority_accuracy=0.3)
    scored = {**base, "scene": "rect", **{f"eval/{k}": v for k, v in scores.items()}}
    rows = [
        {**scored, "oracle/accuracy": 0.91, "oracle/accuracy_stderr": 0.012, "oracle/examples": 8},
        {**scored, "scene": "junction"},
    ]

    task = SparseTask(rectbert.scene("rect"), tasks.MaskSpec(5))
    base = types.SimpleNamespace(
        task=task,
        model=encoder.ModelConfig(num_tokens=20, position="sincos"),
        train=TrainConfig(num_steps=10),
    )
    plan = types.SimpleNamespace(workdir=str(tmp_path), base=base)  # what write_table reads
    sparse_study.write_table(plan, rows)
    lines = (tmp_path / "study.md").read_text().splitlines()
    assert lines[2].endswith("| majority | oracle |")
    assert lines[4].endswith("| 0.300 | 0.910 +- 0.012 (n=8) |")
    assert lines[5].startswith("| junction |") and lines[5].endswith("| 0.300 | - |")
