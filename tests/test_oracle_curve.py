"""The oracle curve: its scores against hand-computed values and scikit-learn's calibration
curve, and end to end on a run through both entry points and load_run."""

import dataclasses
import json
import os
import pathlib
import string

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.calibration import calibration_curve

import rectbert
from experiments import cli
from rectbert import config
from rectbert.analysis import oracle, oracle_curve
from rectbert.data.sparse_task import SparseTask
from rectbert.data.tasks import MaskSpec
from rectbert.recipes import oracle_curve as curve_recipe
from rectbert.recipes import sparse
from tests.conftest import ANYCOUNT, build, copy


def test_scores_are_the_hand_computed_accuracy_nll_and_kl():
    model = np.array([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6]]])
    oracle_ = np.array([[[0.9, 0.1, 0.0], [0.0, 0.6, 0.4], [0.0, 0.0, 1.0]]])
    tokens = np.array([[0, 1, 2]])
    hidden = np.array([[True, True, False]])  # the third is visible: not scored
    s = oracle_curve.scores(tokens, hidden, model, oracle_)
    np.testing.assert_array_equal(s["model_correct"], [True, False])
    np.testing.assert_array_equal(s["oracle_correct"], [True, True])
    np.testing.assert_allclose(s["model_nll"], [-np.log(0.7), -np.log(0.3)], rtol=1e-6)
    eps = oracle_curve.FLOOR
    floor = [-np.log((1 - eps) * 0.9 + eps / 3), -np.log((1 - eps) * 0.6 + eps / 3)]
    np.testing.assert_allclose(s["oracle_nll"], floor, rtol=1e-6)
    kl = [
        0.9 * np.log(0.9 / 0.7) + 0.1 * np.log(0.1 / 0.2),  # the oracle's 0 adds nothing
        0.6 * np.log(0.6 / 0.3) + 0.4 * np.log(0.4 / 0.6),
    ]
    np.testing.assert_allclose(s["kl"], kl, rtol=1e-6)
    # a row: means over tokens, standard errors over examples (two examples, by hand)
    s2 = {k: np.concatenate([v, v[:1]]) for k, v in s.items()}
    s2["example"] = np.array([0, 0, 1])
    r = oracle_curve.row(5, s2, np.array([100.0, 10.0]), 30.0)
    per_example = np.array([0.5, 1.0])  # model right on 1 of 2, then 1 of 1
    assert r["model_accuracy"] == pytest.approx(per_example.mean())
    assert r["model_accuracy_stderr"] == pytest.approx(per_example.std(ddof=1) / np.sqrt(2))
    assert r["model_minus_oracle"] == pytest.approx(np.mean([-0.5, 0.0]))
    gap = s2["model_nll"] - s2["oracle_nll"]
    assert r["nll_gap"] == pytest.approx(np.mean([gap[:2].mean(), gap[2]]))
    assert r["oracle_unreliable"] == 1 and r["hidden_tokens"] == 3 and r["visible"] == 5


def test_reliability_bins_and_ece_match_scikit_learn():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.05, 1.0, 5000)
    right = rng.uniform(size=5000) < conf**1.5  # over-confident
    c = oracle_curve.calibration(conf, right, bins=10)
    acc_sk, conf_sk = calibration_curve(right, conf, n_bins=10, strategy="uniform")
    used = np.array(c["count"]) > 0
    np.testing.assert_allclose(np.array(c["accuracy"])[used], acc_sk, rtol=1e-9)
    np.testing.assert_allclose(np.array(c["confidence"])[used], conf_sk, rtol=1e-9)
    counts = np.histogram(conf, bins=np.linspace(0, 1, 11))[0]
    ece = np.sum(counts[counts > 0] * np.abs(acc_sk - conf_sk)) / conf.size
    assert c["ece"] == pytest.approx(ece)
    # calibrated by construction: ECE near 0; the over-confident one is not
    calibrated = oracle_curve.calibration(conf, rng.uniform(size=5000) < conf)
    assert calibrated["ece"] < 0.03 < c["ece"]


@pytest.mark.slow  # the oracle compiled for the run's shapes, three times: 45 s
def test_curve_end_to_end_on_a_run_through_both_entry_points_and_load_run(
    tmp_path, capsys, anycount_run
):
    workdir = pathlib.Path(copy(anycount_run, tmp_path))
    out = workdir / "oracle_curve.json"
    assert not out.exists()
    # the curve of the finished run, by its own command
    cli.run(curve_recipe, f"--workdir={workdir}", "--curve_visible=23,1", "--curve_examples=4")
    rows = json.loads(out.read_text())
    assert [r["visible"] for r in rows] == [1, 23]
    for r in rows:
        assert r["examples"] == 4 and r["hidden_tokens"] == 4 * (24 - r["visible"])
        for name in ("model_accuracy", "oracle_accuracy", "model_nll", "oracle_nll", "kl"):
            assert np.isfinite(r[name]) and r[name + "_stderr"] >= 0
        assert 0 <= r["oracle_unreliable"] <= 4 and r["kl"] > -1e-9  # KL is not clamped
        assert r["step"] == 3 and r["mask_schedule"] == "anycount"
    for name in ("oracle_curve.png", "reliability.png"):
        assert os.path.getsize(workdir / "figures" / name) > 0
    calib = json.loads((workdir / "calibration.json").read_text())
    assert sum(calib["model"]["count"]) == sum(r["hidden_tokens"] for r in rows)
    # the pair says what it was made from: a kill between the two writes shows
    made = {"step": 3, "mask_schedule": "anycount", "on": "held_out", "visible": [1, 23]}
    made["examples"] = 4
    assert calib["made_from"] == made
    # the same points through load_run: its task, its predict, the curve's masks
    run = rectbert.load_run(str(workdir))
    task = run.task()
    for r in rows:
        batch = oracle_curve.held_out(task, r["visible"], 4)
        visible = ~np.asarray(batch.mask)
        assert np.all(visible.sum(1) == r["visible"])
        probs = np.asarray(run.predict(batch.points, batch.tokens, visible))
        right = (probs.argmax(-1) == np.asarray(batch.tokens))[~visible]
        assert r["model_accuracy"] == pytest.approx(right.mean(), abs=1e-6)
    again, _ = run.oracle_curve(visible=(23,), examples=4)  # the same point, from Python
    assert again[0]["model_accuracy"] == pytest.approx(rows[1]["model_accuracy"], abs=1e-6)
    # nested: the 1 visible point is among the 23
    one, many = (~np.asarray(oracle_curve.held_out(task, v, 4).mask) for v in (1, 23))
    assert np.all(many[one])
    # the sparse experiment's flag on the finished workdir replaces the file
    curve = ["--oracle_curve", "--curve_visible=2", "--curve_examples=3"]
    cli.run(sparse, f"--workdir={workdir}", *ANYCOUNT, *curve)
    assert [r["visible"] for r in json.loads(out.read_text())] == [2]
    capsys.readouterr()


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--curve_visible=0"], "curve_visible"),
        (["--curve_visible=24"], "curve_visible"),
        (["--curve_visible=2.5"], "curve_visible"),
        (["--curve_visible=x"], "curve_visible"),
        (["--curve_examples=0"], "curve_examples"),
        (["--curve_examples=100000"], "curve_examples"),
        (["--curve_on=unseen"], "curve_on"),  # a rect run holds no drawings out
        (["--curve_on=train"], "curve_on"),
    ],
)
def test_bad_curve_flags_fail_in_one_line_before_any_compute(tmp_path, args, flag):
    # the sparse experiment refuses them before training; the curve command before loading
    with pytest.raises(cli.Error, match=f"--{flag}") as e:
        build(sparse, f"--workdir={tmp_path / 'run'}", "--oracle_curve", *args)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


def test_the_curve_command_refuses_what_it_cannot_score(tmp_path):
    with pytest.raises(cli.Error, match="--workdir"):
        cli.run(curve_recipe, f"--workdir={tmp_path / 'none'}")
    assert not (tmp_path / "none").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli.Error, match="--workdir.*sparse run"):
        cli.run(curve_recipe, f"--workdir={tmp_path / 'empty'}")
    assert os.listdir(tmp_path / "empty") == []
    # every scene is sampled now: mixtures of a varying count too (components)
    for scene in (rectbert.scene("junction"), rectbert.scene("rects", num_rects=3, min_rects=1)):
        oracle.check(scene)


def _sure_oracle(k: int, seen: list | None = None):
    """A posterior_batch always right and sure (probability 1 on the true token); each call's
    (scene, batch) appended to `seen`."""

    def sure(key, batch, centroids, scene, cfg=None, chunk=256, say=None):
        if seen is not None:
            seen.append((scene, batch))
        probs = np.eye(k)[np.asarray(batch.tokens)]
        b = len(probs)
        one = np.ones((b, 1))
        return oracle.Posterior(
            probs,
            np.full(b, 192.0),
            one,
            one > 0,
            one,
            0 * one[:, 0],
            0.1 + one[:, 0],
            2 + 0 * one.astype(int),
            0 * one[:, 0],
        )

    return sure


def _uniform_model(k: int):
    return lambda params, batch: jnp.zeros((*batch.tokens.shape, k))


def test_the_curve_of_a_uniform_model_against_a_sure_oracle_by_hand(
    tmp_path, monkeypatch, sparse_task
):
    # oracle_curve.run's bookkeeping, files and formulas at two counts, with a model that is
    # uniform over the K tokens and an oracle that is always right and sure: its accuracy 1,
    # its NLL the floor's, KL(oracle || model) = log K, the model right where the truth is 0
    # (its argmax). The real oracle through the commands: the end-to-end test (slow tier).
    k = sparse_task.num_tokens
    sure, uniform = _sure_oracle(k), _uniform_model(k)
    monkeypatch.setattr(oracle, "posterior_batch", sure)
    task = dataclasses.replace(sparse_task, mask=MaskSpec(5, "anycount"), eval_examples=6)
    cfg = oracle_curve.CurveConfig(visible=(23, 1), examples=6)
    rows = oracle_curve.run(task, uniform, None, 7, str(tmp_path), cfg, log=lambda *a: None)
    assert [r["visible"] for r in rows] == [1, 23]
    for r in rows:
        batch = oracle_curve.held_out(task, r["visible"], 6)
        hidden, tokens = np.asarray(batch.mask), np.asarray(batch.tokens)
        per_example = [(tokens[e][hidden[e]] == 0).mean() for e in range(6)]
        assert r["model_accuracy"] == pytest.approx(np.mean(per_example))
        assert r["oracle_accuracy"] == 1.0 and r["hidden_tokens"] == 6 * (24 - r["visible"])
        assert r["kl"] == pytest.approx(np.log(k), rel=1e-6)
        assert r["model_nll"] == pytest.approx(np.log(k), rel=1e-6)
        floor = oracle_curve.FLOOR
        assert r["oracle_nll"] == pytest.approx(-np.log(1 - floor + floor / k), rel=1e-6)
        assert r["step"] == 7 and r["mask_schedule"] == "anycount"
        assert r["oracle_unreliable"] == 0 and r["examples"] == 6
        assert r["oracle_components"] == [1.0] and r["oracle_median_evidence_error"] == 1.1
    assert json.loads((tmp_path / "oracle_curve.json").read_text()) == rows
    calib = json.loads((tmp_path / "calibration.json").read_text())
    assert sum(calib["oracle"]["count"]) == sum(r["hidden_tokens"] for r in rows)
    for name in ("oracle_curve.png", "reliability.png"):
        assert os.path.getsize(tmp_path / "figures" / name) > 0


def test_a_row_is_converged_with_enough_ess_and_for_a_mixture_agreeing_evidences():
    one = {"oracle_median_ess": 150.0, "oracle_median_evidence_error": 0.5}
    one["oracle_components"] = [1.0]
    assert oracle_curve.converged(one)["oracle_converged"]  # one component: no weighing
    mix = {**one, "oracle_components": [0.5, 0.5]}
    assert not oracle_curve.converged(mix)["oracle_converged"]  # 0.5 > 0.2
    assert oracle_curve.converged({**mix, "oracle_median_evidence_error": 0.2})["oracle_converged"]
    assert not oracle_curve.converged({**one, "oracle_median_ess": 99.0})["oracle_converged"]


def test_the_unseen_curve_scores_drawings_never_trained_on_against_their_own_prior(
    tmp_path, monkeypatch
):
    # on="unseen": the examples are the run's unseen set (letters X Y Z only, none of the
    # training A-F), the oracle's prior is theirs (the scene's unseen part), and the files
    # end in _unseen beside (not over) the held-out curve's
    scene = rectbert.scene("glyph", glyphs="ABCDEF", unseen_glyphs="XYZ")
    task = SparseTask(scene, MaskSpec(5, "anycount"), eval_examples=6, seed=0)
    task = task.with_codebook(task.fit_codebook()[0])
    seen = []
    monkeypatch.setattr(oracle, "posterior_batch", _sure_oracle(task.num_tokens, seen))
    cfg = oracle_curve.CurveConfig(visible=(4, 12), examples=6, on="unseen")
    uniform = _uniform_model(task.num_tokens)
    rows = oracle_curve.run(task, uniform, None, 7, str(tmp_path), cfg, log=lambda *a: None)
    assert [r["on"] for r in rows] == ["unseen", "unseen"]
    for prior, batch in seen:
        assert [n.split(":")[-1] for n in prior.library.names] == ["X", "Y", "Z"]
        # the unseen set's examples (an index 0-2 would name X-Z whichever set it came from)
        np.testing.assert_array_equal(batch.tokens, task.unseen_eval_set().tokens[:6])
        assert not np.array_equal(batch.tokens, task.eval_set().tokens[:6])
    shown = [np.unique((~np.asarray(batch.mask)).sum(1)).tolist() for _, batch in seen]
    assert shown == [[4], [12]]
    assert not (tmp_path / "oracle_curve.json").exists()
    assert json.loads((tmp_path / "oracle_curve_unseen.json").read_text()) == rows
    made = json.loads((tmp_path / "calibration_unseen.json").read_text())["made_from"]
    assert made["on"] == "unseen" and made["visible"] == [4, 12]
    for name in ("oracle_curve_unseen.png", "reliability_unseen.png"):
        assert os.path.getsize(tmp_path / "figures" / name) > 0
    held = dataclasses.replace(task, scene=task.scene.unseen())  # itself holds nothing out
    with pytest.raises(config.ConfigError, match=r"CurveConfig\.on=.*holds no drawings"):
        oracle_curve.CurveConfig(on="unseen", examples=6).counts(held)
    # the oracle's limits are the unseen set's: more than its cap of drawings is refused
    chars = string.ascii_letters + string.digits  # 61 characters in 3 fonts: over the cap
    many = rectbert.scene(
        "glyph", glyphs="A", unseen_glyphs=chars[1:], unseen_fonts=("timesr", "timesi", "timesib")
    )
    big = SparseTask(many, MaskSpec(5, "anycount"), eval_examples=6, seed=0)
    with pytest.raises(ValueError, match="cannot be measured"):
        oracle_curve.CurveConfig(on="unseen", examples=6).counts(big)
    oracle_curve.CurveConfig(examples=6).counts(big)  # the held-out set: one letter


def _noisy_oracle(k: int, asked: list, stop_at: int | None = None):
    """A posterior_batch of random probabilities, its own for each visible count (seeded by
    it), that records the counts it is asked for and raises KeyboardInterrupt (a ^C) when
    asked for its stop_at-th count."""
    sure = _sure_oracle(k)

    def noisy(key, batch, centroids, scene, cfg=None, chunk=256, say=None):
        v = int((~np.asarray(batch.mask)).sum(1)[0])
        asked.append(v)
        if len(asked) == stop_at:
            raise KeyboardInterrupt
        post = sure(key, batch, centroids, scene)
        probs = np.random.default_rng(v).dirichlet(np.ones(k), post.probs.shape[:2])
        return dataclasses.replace(post, probs=probs)

    return noisy


def test_a_stopped_curve_resumes_where_it_stopped(tmp_path, monkeypatch, sparse_task):
    # each count is kept as it is done; stopped by ^C in its second count and run again, the
    # curve computes only the counts it had not done, and its files are those of one run
    # straight through; a kept file made for other parameters, torn or malformed, is said
    # and set aside (never reused; the file kept as it was); counts another curve kept stay kept
    k, said = sparse_task.num_tokens, []
    task = dataclasses.replace(sparse_task, mask=MaskSpec(5, "anycount"), eval_examples=6)
    params, other = {"w": np.arange(3.0)}, {"w": np.arange(3.0) + 1}

    def curve(workdir, asked, stop_at=None, weights=params, visible=(23, 1, 4), examples=6):
        monkeypatch.setattr(oracle, "posterior_batch", _noisy_oracle(k, asked, stop_at))
        cfg = oracle_curve.CurveConfig(visible=visible, examples=examples)
        uniform = _uniform_model(k)
        return oracle_curve.run(task, uniform, weights, 7, str(workdir), cfg, log=said.append)

    straight, there = tmp_path / "straight", tmp_path / "stopped"
    straight.mkdir(), there.mkdir()
    asked = []
    rows = curve(straight, asked)
    assert asked == [1, 4, 23]
    assert said[0] == "oracle curve: visible counts 1, 4, 23 x 6 held-out examples (step 7)"
    kept, aside = there / "oracle_curve.partial.json", there / "oracle_curve.partial.json.set-aside"
    with pytest.raises(KeyboardInterrupt):
        curve(there, asked := [], stop_at=2)
    assert kept.exists() and not (there / "oracle_curve.json").exists()
    assert curve(there, asked := []) == rows and asked == [4, 23]  # 1 was kept
    assert any(s.startswith("  visible  1: model") and "(kept from an earlier" in s for s in said)
    for name in ("oracle_curve.json", "calibration.json"):
        assert (there / name).read_text() == (straight / name).read_text()
    assert not kept.exists()  # every count is in the files
    # kept for another model (a run trained anew to the same step): every count again, the
    # kept file (1 and 4) set aside as it was
    with pytest.raises(KeyboardInterrupt):
        curve(there, [], stop_at=3)
    before = kept.read_text()
    with pytest.raises(KeyboardInterrupt):
        curve(there, asked := [], stop_at=1, weights=other)
    assert aside.read_text() == before and not kept.exists()
    assert any("made for another params: set aside" in s for s in said)
    # kept for other examples (the first 5 of the 6): set aside too
    aside.rename(kept)
    with pytest.raises(KeyboardInterrupt):
        curve(there, asked := [], stop_at=1, examples=5)
    assert aside.read_text() == before and not kept.exists()
    # counts a curve of other counts kept stay kept: only 23 is left to do
    aside.rename(kept)
    curve(there, asked := [], visible=(1,))
    assert asked == [] and kept.exists()
    assert "oracle curve: visible count 1 x 6 held-out examples (step 7)" in said
    assert curve(there, asked := []) == rows and asked == [23] and not kept.exists()
    # torn, or a count malformed: said, set aside, every count again (no crash)
    kept.write_text('{"made_for": {"st')
    assert curve(there, asked := []) == rows and asked == [1, 4, 23]
    assert any("is unreadable (JSONDecodeError" in s for s in said)
    with pytest.raises(KeyboardInterrupt):
        curve(there, [], stop_at=2)
    held = json.loads(kept.read_text())
    for bad in ([], "x", {"example": [0]}):
        held["counts"][0]["scores"] = bad
        kept.write_text(json.dumps(held))
        with pytest.raises(KeyboardInterrupt):
            curve(there, asked := [], stop_at=1)
        assert asked == [1] and json.loads(aside.read_text()) == held, bad
