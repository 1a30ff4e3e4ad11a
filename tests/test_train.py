"""The training loop: masked loss, a pinned first step, checkpoints, resume, load_run."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rectbert
from rectbert.data import squares, tasks
from rectbert.model import encoder, losses
from rectbert.training import checkpoint, engine, metrics, train
from rectbert.training import workdir as workdir_lib
from rectbert.training.engine import RunConfig
from rectbert.warn import RectbertWarning
from tests.conftest import SQUARES as TASK
from tests.conftest import SQUARES_MODEL as MODEL
from tests.conftest import SQUARES_TRAIN as CFG
from tests.conftest import copy, same_params


def test_masked_loss_by_hand_and_no_gradient_at_visible_positions():
    logits = jax.random.normal(jax.random.key(0), (2, 5, 3))
    tokens = jnp.array([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    mask = jnp.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 0]], bool)
    batch = tasks.Batch(points=jnp.zeros((2, 5, 2)), tokens=tokens, mask=mask)
    loss = losses.masked_cross_entropy(logits, batch)
    acc = losses.masked_accuracy(logits, batch)
    logp = np.asarray(jax.nn.log_softmax(logits))
    picks = [(0, 0), (0, 2), (1, 3)]
    np.testing.assert_allclose(
        float(loss), -np.mean([logp[b, i, tokens[b, i]] for b, i in picks]), rtol=1e-6
    )
    assert float(acc) == pytest.approx(
        np.mean([np.argmax(logp[b, i]) == tokens[b, i] for b, i in picks])
    )
    grad = np.asarray(jax.grad(lambda z: losses.masked_cross_entropy(z, batch))(logits))
    assert np.all(grad[~np.asarray(mask)] == 0) and np.all(
        np.abs(grad[np.asarray(mask)]).sum(-1) > 0
    )
    # the model never sees a masked token
    np.testing.assert_array_equal(np.asarray(batch.model_inputs(3))[mask], 3)
    # averaged per example: row 0's two hidden tokens, then row 1's one, the rows alike
    out = encoder.EncoderOutput(logits=logits, aux=None)
    per_example = losses.training_loss(out, batch, average="example")
    row0 = -np.mean([logp[0, 0, tokens[0, 0]], logp[0, 2, tokens[0, 2]]])
    want = (row0 - logp[1, 3, tokens[1, 3]]) / 2
    np.testing.assert_allclose(float(per_example), want, rtol=1e-6)
    np.testing.assert_allclose(float(losses.training_loss(out, batch)), float(loss), rtol=1e-6)
    with pytest.raises(ValueError, match="average"):
        losses.training_loss(out, batch, average="pair")


def test_first_step_regression():
    # Pinned numbers of one training step of the tiny squares model (seed 0) on this CPU's jax.
    # Update them when the model, the initialisation, the data or the masking change on purpose.
    state, step = engine.build(TASK, MODEL, CFG)
    state, first = step(state, jnp.asarray(0, jnp.int32))
    state, second = step(state, jnp.asarray(1, jnp.int32))
    assert float(first["train/loss"]) == pytest.approx(0.86391, abs=2e-4)
    assert float(second["train/loss"]) == pytest.approx(0.83534, abs=2e-4)
    assert int(state.step) == 2


def read_rows(workdir):
    return metrics.read(workdir)


def test_checkpoint_resume_is_exact_and_never_trains_a_step_twice(tmp_path):
    # logs at 4, 8, 9 and checkpoints at 3, 6, 9: a resume from 6 must log at 8 the mean of
    # steps 5..8, as the uninterrupted run did (steps 5 and 6 come from the checkpoint)
    cfg = dataclasses.replace(CFG, log_every=4)
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    state_full, _ = train.train(RunConfig(TASK, MODEL, cfg), full)
    rows_full = read_rows(full)
    # interrupt: a copy of the run that lost its last checkpoint (step 9) resumes from step 6
    shutil.copytree(full, resumed)
    shutil.rmtree(os.path.join(resumed, "ckpt", "9"))
    state_res, _ = train.train(RunConfig(TASK, MODEL, cfg), resumed)
    assert same_params(state_full.params, state_res.params)
    assert strip(read_rows(resumed)) == strip(rows_full)
    # a finished run re-run trains nothing and appends nothing
    before = read_rows(resumed)
    state_again, _ = train.train(RunConfig(TASK, MODEL, cfg), resumed)
    assert int(state_again.step) == 9 and read_rows(resumed) == before
    train_steps = [r["step"] for r in read_rows(resumed) if "train/loss" in r]
    assert train_steps == [4, 8, 9]


def strip(rows):
    return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in rows]


def damage(checkpoint_dir):
    """Truncate every data file of the checkpoint's parameters to half its length."""
    for root, _, files in os.walk(os.path.join(checkpoint_dir, "params")):
        for name in files:
            if os.sep + "d" == root[-2:]:
                path = os.path.join(root, name)
                os.truncate(path, os.path.getsize(path) // 2)


QUIET_READS = (  # no TensorStore tracebacks from the abandoned reads of a damaged checkpoint
    r"error:(?s).*(_read_array|Event loop is closed):pytest.PytestUnraisableExceptionWarning"
)  # (other tests' unrelated unraisables, which can surface here, are not this test's business)


@pytest.mark.filterwarnings(QUIET_READS)
def test_load_run_reads_past_a_damaged_checkpoint_and_metrics_past_a_torn_line(
    tmp_path, squares_run
):
    hurt = copy(squares_run, tmp_path)
    damage(os.path.join(hurt, "ckpt", "9"))
    with pytest.warns(RectbertWarning, match="checkpoint at step 9 is unreadable"):
        assert rectbert.load_run(hurt).step == 6
    rows = read_rows(squares_run)
    with open(os.path.join(hurt, "metrics.jsonl"), "a") as f:
        f.write('{"step": 9, "eval/lo')  # a last line torn by a kill: dropped
    with pytest.warns(RectbertWarning, match="dropping the torn last line"):
        assert read_rows(hurt) == rows
    # once lines follow it, it is damaged in the middle: not guessed at (a torn tail, even
    # of raw bytes, is)
    with open(os.path.join(hurt, "metrics.jsonl"), "ab") as f:
        f.write(b'\n{"step": 10, "x": 1}\n\xff\xfe')
    with pytest.raises(metrics.MetricsError, match=f"line {len(rows) + 1} is unreadable"):
        metrics.read(hurt)


@pytest.mark.slow  # a resume past a damaged checkpoint, then none readable: 15 s here
@pytest.mark.filterwarnings(QUIET_READS)
def test_damaged_files_are_survived(tmp_path, capsys, squares_run):
    full, hurt = squares_run, str(tmp_path / "hurt")
    params_full = rectbert.load_run(full).params
    shutil.copytree(full, hurt)
    # the latest checkpoint unreadable, and a last metrics line torn by a kill
    damage(os.path.join(hurt, "ckpt", "9"))
    with open(os.path.join(hurt, "metrics.jsonl"), "a") as f:
        f.write('{"step": 9, "eval/lo')
    capsys.readouterr()
    # a resume reports it, moves it aside, drops the torn line and ends as the full run did
    with pytest.warns(RectbertWarning) as caught:
        state, _ = train.train(RunConfig(TASK, MODEL, CFG), hurt)
    said = " | ".join(str(w.message) for w in caught)
    assert "checkpoint at step 9 is unreadable" in said and "dropping the torn last line" in said
    assert "moved the unreadable checkpoint at step 9" in said
    out, err = capsys.readouterr()
    assert "resumed from checkpoint at step 6" in out and err == ""
    assert len(os.listdir(os.path.join(hurt, "damaged"))) == 1
    assert same_params(state.params, params_full)
    assert strip(read_rows(hurt)) == strip(read_rows(full))
    # nothing readable left: one line from load_run and from a resume, not a traceback
    for step in checkpoint.steps(hurt):
        damage(os.path.join(hurt, "ckpt", str(step)))
    with pytest.raises(ValueError, match="no checkpoint can be read") as e:
        with pytest.warns(RectbertWarning, match="is unreadable"):  # each, as it is tried
            rectbert.load_run(hurt)
    assert "\n" not in str(e.value)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint can be read"):
        with pytest.warns(RectbertWarning, match="is unreadable"):
            train.train(RunConfig(TASK, MODEL, CFG), hurt)


@pytest.mark.slow  # three restores and two resumes of odd directories: 7 s here
def test_odd_checkpoint_directories_are_survived_or_refused(tmp_path, squares_run):
    # a checkpoint that is not even a directory is damaged too, and a ckpt/ that is a file
    # is refused before anything is rewritten
    full, params_full = squares_run, rectbert.load_run(squares_run).params
    odd = str(tmp_path / "odd")
    shutil.copytree(full, odd)
    shutil.rmtree(os.path.join(odd, "ckpt", "9"))
    open(os.path.join(odd, "ckpt", "9"), "w").close()
    with pytest.warns(RectbertWarning, match="checkpoint at step 9 is unreadable"):
        assert rectbert.load_run(odd).step == 6
    with pytest.warns(RectbertWarning, match="step 9 is unreadable|moved the unreadable"):
        state, _ = train.train(RunConfig(TASK, MODEL, CFG), odd)
    assert same_params(state.params, params_full)
    rows = read_rows(odd)
    shutil.rmtree(os.path.join(odd, "ckpt"))
    open(os.path.join(odd, "ckpt"), "w").close()
    with pytest.raises(checkpoint.CheckpointError, match="not a directory"):
        train.train(RunConfig(TASK, MODEL, CFG), odd)
    assert read_rows(odd) == rows
    # and a workdir that lost its config.json is adopted by no run
    os.remove(os.path.join(odd, "config.json"))
    with pytest.raises(workdir_lib.WorkdirError, match="no config.json"):
        train.train(RunConfig(TASK, MODEL, CFG), odd)


@pytest.mark.slow  # four short runs, one extended: 13 s here
def test_resuming_with_more_steps_is_refused_or_equals_the_longer_run(tmp_path, squares_run):
    short = squares_run  # refused before anything is written
    longer = dataclasses.replace(CFG, num_steps=18)
    with pytest.raises(workdir_lib.WorkdirError, match="train.num_steps: 9 -> 18.*horizon"):
        train.train(
            RunConfig(TASK, MODEL, longer), short
        )  # cosine: the schedule's end is the run's
    constant = dataclasses.replace(CFG, schedule="constant", num_steps=6)

    def steps(n):
        return RunConfig(TASK, MODEL, dataclasses.replace(constant, num_steps=n))

    # a run that ended off its log or eval cadence logged and evaluated its last step: an
    # extension would hold rows the longer run has not
    off = str(tmp_path / "off")
    train.train(steps(4), off)  # evaluated every 3 steps, and at its end
    with pytest.raises(workdir_lib.WorkdirError, match="train.num_steps: 4 -> 12.*cadence"):
        train.train(steps(12), off)
    extended, direct = str(tmp_path / "extended"), str(tmp_path / "direct")
    train.train(steps(6), extended)
    a, _ = train.train(steps(12), extended)
    b, _ = train.train(steps(12), direct)
    assert same_params(a.params, b.params)
    assert strip(read_rows(extended)) == strip(read_rows(direct))


def test_re_evaluation_replaces_the_final_rows(tmp_path, squares_run):
    workdir = copy(squares_run, tmp_path)
    before = read_rows(workdir)
    more = dataclasses.replace(TASK, eval_examples=128)  # safe to change
    _, final = train.train(RunConfig(more, MODEL, CFG), workdir)
    rows = read_rows(workdir)
    assert len(rows) == len(before) and rows[:-1] == before[:-1]
    assert [r for r in rows if "eval/loss" in r and r["step"] == 9] == [
        {"step": 9, **{k: pytest.approx(v) for k, v in final.items()}}
    ]
    assert rows[-1]["eval/loss"] != before[-1]["eval/loss"]  # 128 examples, not 64


def test_load_run_predict_agrees_with_training_eval(tmp_path, squares_run):
    workdir = copy(squares_run, tmp_path)
    final = [r for r in read_rows(workdir) if "eval/masked_accuracy" in r][-1]
    run = rectbert.load_run(workdir)
    assert run.step == 9 and run.codebook is None and run.model_config == MODEL
    batch = TASK.eval_set()
    probs = np.asarray(run.predict(batch.points, batch.tokens, ~batch.mask))
    assert probs.shape == (64, 64, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    mask = np.asarray(batch.mask)
    acc = (probs.argmax(-1) == np.asarray(batch.tokens))[mask].mean()
    assert acc == pytest.approx(final["eval/masked_accuracy"], abs=1e-6)
    # tokens under the mask are ignored
    scrambled = jnp.where(batch.mask, 1 - batch.tokens, batch.tokens)
    np.testing.assert_array_equal(
        np.asarray(run.predict(batch.points, scrambled, ~batch.mask)), probs
    )
    with pytest.raises(ValueError, match="config.json"):
        rectbert.load_run(str(tmp_path))
    # a run recorded by an earlier rectbert (no format) is refused by load_run and a resume
    path = os.path.join(workdir, "config.json")
    good = json.loads(open(path).read())
    with open(path, "w") as f:
        json.dump({k: v for k, v in good.items() if k != "format"}, f)
    for fn in (rectbert.load_run, lambda w: train.train(RunConfig(TASK, MODEL, CFG), w)):
        with pytest.raises(ValueError, match="format none") as e:
            fn(workdir)
        assert "\n" not in str(e.value)
    # a field that has no default and is missing, or one this rectbert does not have (removed
    # or renamed): refused in one line naming it
    lacking = {**good, "model": {k: v for k, v in good["model"].items() if k != "num_tokens"}}
    renamed = {**good, "model": {**good["model"], "rbf_centres": 16}}
    with open(path, "w") as f:
        json.dump(lacking, f)
    with pytest.raises(ValueError, match=r"lacks \['num_tokens'\], which have no default"):
        rectbert.load_run(workdir)
    with open(path, "w") as f:
        json.dump(renamed, f)
    with pytest.raises(ValueError, match="rbf_centres.*removed or renamed") as e:
        rectbert.load_run(workdir)
    assert "\n" not in str(e.value)
    with pytest.raises(workdir_lib.WorkdirError, match="model.rbf_centres.*removed or renamed"):
        train.train(RunConfig(TASK, MODEL, CFG), workdir)
    for part, extra in [("train", "warm_restarts"), ("task", "corners"), ("task.mask", "shape")]:
        record = json.loads(json.dumps(good))
        node = record
        for key in part.split("."):
            node = node[key]
        node[extra] = 3
        with open(path, "w") as f:
            json.dump(record, f)
        with pytest.raises(ValueError, match=f"records {part}.{extra}, .*removed or renamed"):
            rectbert.load_run(workdir)
        with pytest.raises(workdir_lib.WorkdirError, match=f"{part}.{extra}.*removed or renamed"):
            train.train(RunConfig(TASK, MODEL, CFG), workdir)
    # a part of another type is not a record to fill: refused as other settings, one line
    for broken in ({**good, "train": None}, {**good, "task": {**good["task"], "mask": "x"}}):
        with open(path, "w") as f:
            json.dump(broken, f)
        with pytest.raises(workdir_lib.WorkdirError, match="other settings") as e:
            train.train(RunConfig(TASK, MODEL, CFG), workdir)
        assert "\n" not in str(e.value)
    with open(path, "w") as f:
        f.write('{"format": 2, "mod')  # torn by hand
    with pytest.raises(ValueError, match="unreadable"):
        rectbert.load_run(workdir)


def test_a_run_recorded_before_a_setting_existed_reads_it_at_its_default(tmp_path, squares_run):
    # config.json written before model.relative, train.optimizer and the task's seed existed:
    # load_run and a resume read it with their declared defaults, and say so once, naming them
    workdir = copy(squares_run, tmp_path)
    path = os.path.join(workdir, "config.json")
    good = json.loads(open(path).read())
    old = json.loads(json.dumps(good))
    del old["model"]["relative"], old["train"]["optimizer"], old["task"]["seed"]
    assert (MODEL.relative, CFG.optimizer, TASK.seed) == ("none", "adamw", 0)  # the defaults
    with open(path, "w") as f:
        json.dump(old, f)
    with pytest.warns(RectbertWarning) as said:
        run = rectbert.load_run(workdir)
    assert run.model_config == MODEL and run.config == good
    (line,) = [str(w.message) for w in said if "predates" in str(w.message)]
    assert all(k in line for k in ("model.relative", "train.optimizer", "task.seed"))
    # a resume (nothing left to train: it re-evaluates) takes it and records the defaults;
    # its warning is load_run's, said once a process (a fresh process here)
    assert line in rectbert.warn._WARNED
    rectbert.warn._WARNED.discard(line)
    with pytest.warns(RectbertWarning, match="predates the settings .*model.relative") as again:
        train.train(RunConfig(TASK, MODEL, CFG), workdir)
    assert [str(w.message) for w in again if "predates" in str(w.message)] == [line]
    assert json.loads(open(path).read()) == good
    # a new run that sets one of them otherwise is another run: refused, naming it
    with open(path, "w") as f:
        json.dump(old, f)
    lion = dataclasses.replace(CFG, optimizer="lion")
    with pytest.raises(workdir_lib.WorkdirError, match="train.optimizer: adamw -> lion.*default"):
        train.train(RunConfig(TASK, MODEL, lion), workdir)


def test_schedules():
    cos = engine.learning_rate_fn(CFG)
    assert float(cos(0)) == 0.0 and float(cos(2)) == pytest.approx(3e-3)
    assert float(cos(9)) == pytest.approx(0.0, abs=1e-9)
    const = engine.learning_rate_fn(
        engine.TrainConfig(num_steps=9, schedule="constant", learning_rate=1e-5)
    )
    assert float(const(0)) == float(const(8)) == pytest.approx(1e-5)
    assert isinstance(engine.make_optimizer(CFG), optax.GradientTransformation)


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_optimizers_two_updates_by_hand(name):
    # two steps of each, from its paper (b1 0.9; AdamW b2 0.999, bias-corrected; Lion b2
    # 0.99, the update's sign taken of an interpolation the momentum does not keep)
    lr, wd = 0.1, 0.5
    cfg = engine.TrainConfig(
        num_steps=5, schedule="constant", learning_rate=lr, weight_decay=wd, optimizer=name
    )
    tx = engine.make_optimizer(cfg)
    p = np.array([1.0, -2.0, 3.0])
    grads = [np.array([0.3, -0.01, 0.2]), np.array([-0.1, 0.02, 0.3])]  # norms < 1: no clip
    params, state = {"w": jnp.asarray(p)}, tx.init({"w": jnp.asarray(p)})
    m, v = np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, 1):
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
        if name == "adamw":
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
            step = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        else:
            step, m = np.sign(0.9 * m + 0.1 * g), 0.99 * m + 0.01 * g
        p = p - lr * (step + wd * p)
        np.testing.assert_allclose(params["w"], p, rtol=1e-5, atol=1e-6)


class NaNAfterStep4(squares.SquaresTask):
    """Squares whose points turn NaN from step 4 on: the loss goes non-finite there."""

    def train_batch(self, step, batch):
        b = super().train_batch(step, batch)
        return b.replace(points=jnp.where(step >= 4, jnp.nan, b.points))


@pytest.mark.slow  # two runs that stop at a NaN: 9 s here
def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    task = NaNAfterStep4(mask=tasks.MaskSpec(count=13), presentations=2, eval_examples=64)
    model = dataclasses.replace(MODEL, position="sincos")
    cfg = dataclasses.replace(CFG, log_every=5, checkpoint_every=2)
    workdir = str(tmp_path / "nan")
    with pytest.raises(metrics.NonFiniteError, match="step 5; stopped, checkpoint at step 4 kept"):
        train.train(RunConfig(task, model, cfg), workdir)
    run = rectbert.load_run(workdir)
    assert run.step == 4
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(run.params))
    # nothing from the broken steps reached metrics.jsonl
    assert all(r["step"] <= 4 for r in read_rows(workdir))

    # an evaluation off the log and checkpoint cadence is not made of a broken state: the
    # training scalars are checked first, and metrics.jsonl stays strict JSON
    cfg = dataclasses.replace(CFG, num_steps=12, log_every=10, checkpoint_every=10, eval_every=6)
    workdir = str(tmp_path / "nan_eval")
    with pytest.raises(metrics.NonFiniteError, match="step 5; stopped, no checkpoint yet"):
        train.train(RunConfig(task, model, cfg), workdir)
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl")) or read_rows(workdir) == []
    # and a non-finite value is never written, on any path
    with pytest.raises(metrics.NonFiniteError, match="eval/x"):
        metrics.put(workdir, 3, {"eval/x": float("nan")})


def test_same_flags_same_metrics(tmp_path, squares_run):
    # the same run again (the shared one was trained once this session, maybe by the other
    # worker): the same metrics, but steps/s
    train.train(RunConfig(TASK, MODEL, CFG), str(tmp_path / "again"))
    again, first = strip(read_rows(str(tmp_path / "again"))), strip(read_rows(squares_run))
    assert again == first and len(first) > 9


def test_inherit_fills_only_under_configs_of_the_same_name():
    # hand-made records: a scene option is inherited by the family that declares it, not by
    # another family's record, nor inside a part the record does not have
    old = {"task": {"name": "sparse", "scene": {"name": "rect", "min_side": 32.0}}}
    declared = {
        "task.name": "sparse",
        "task.points": "uniform",
        "task.scene.name": "glyph",
        "task.scene.stroke_weight": 0.08,
        "model.relative": "none",
    }
    got, added = workdir_lib.inherit(old, declared)
    assert added == ["task.points"] and got["task"]["points"] == "uniform"
    assert got["task"]["scene"] == {"name": "rect", "min_side": 32.0} and "model" not in got
    same = {**declared, "task.scene.name": "rect"}
    assert workdir_lib.inherit(old, same)[1] == ["task.points", "task.scene.stroke_weight"]
    # a named config the record lacks entirely is not made up from another's defaults
    bare = {"task": {"name": "sparse"}}
    assert workdir_lib.inherit(bare, same) == (
        {"task": {"name": "sparse", "points": "uniform"}},
        ["task.points"],
    )
    assert old == {"task": {"name": "sparse", "scene": {"name": "rect", "min_side": 32.0}}}
