"""Where the hidden points go: the occlusion box (every query inside it, no visible point),
the hidden points from another sampler, the settings refused in one line, the analyses that
re-hide points refused, the majority baseline on the hidden points, a trained run scored
inside a box of one's choosing. References by brute force and by hand."""

import dataclasses

import jax
import numpy as np
import pytest

import rectbert
from rectbert import config
from rectbert.analysis import oracle
from rectbert.data import keys
from rectbert.data.sparse_task import SparseTask
from rectbert.data.tasks import MaskSpec
from tests.conftest import RECT
from tests.test_where import HI, LO, TOL, centrelines_of, distances, in_region, task


@pytest.mark.parametrize("occlude", ["60,60,140,140", "random:40,100"])
def test_occlusion_hides_the_points_in_the_box_and_shows_those_outside(occlude):
    t = task(RECT, occlude=occlude)
    params = RECT.sample(jax.random.key(17), 64)
    key = jax.random.key(18)
    batch = jax.jit(t.examples)(key, params)
    boxes = np.asarray(t.hidden_boxes(key, 64), np.float64)
    pts, hidden = np.asarray(batch.points, np.float64), np.asarray(batch.mask)
    assert boxes.shape == (64, 4) and np.all(hidden.sum(1) == 8)
    if occlude.startswith("random"):
        sides = boxes[:, 2:] - boxes[:, :2]
        assert np.all((sides >= 40 - 1e-4) & (sides <= 100 + 1e-4)), sides
        assert np.all(boxes[:, :2] >= LO - 1e-4) and np.all(boxes[:, 2:] <= HI + 1e-4)
        assert len(np.unique(boxes[:, 0])) == 64  # a box per example
    else:
        np.testing.assert_array_equal(boxes, np.broadcast_to([60, 60, 140, 140], (64, 4)))
    lo, hi = boxes[:, None, :2], boxes[:, None, 2:]
    closed = np.all((pts >= lo - 1e-4) & (pts <= hi + 1e-4), -1)
    half_open = np.all((pts >= lo) & (pts < hi), -1)
    assert np.all(closed[hidden]), "a hidden point outside its example's box"
    assert not np.any(half_open[~hidden]), "a visible point inside its example's box"
    assert in_region(pts).all()


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(occlude="1,2,3"), "occlude"),
        (dict(occlude="random:0,10"), "occlude"),
        (dict(occlude="200,200,100,100"), "occlude"),
        (dict(occlude="32,32,224,223"), "occlude"),  # 99.5 % of the region: no room left
        (dict(occlude="random:100,167"), "occlude"),  # a side over 166.2 covers > 75 %
        (dict(occlude="60,60,140,140", sampler="edges"), "occlude"),
        (dict(query_sampler="strokes"), "query_sampler"),
        (
            dict(sampler="junctions", junction_fallback="junctions", scene="junction"),
            "junction_fallback",
        ),
    ],
    ids=[
        "three numbers",
        "random sides from 0",
        "reversed box",
        "box leaving no room",
        "random box over 75 %",
        "box with edges",
        "strokes on rect",
        "junctions falling back on junctions",
    ],
)
def test_bad_where_settings_are_refused_in_one_line(kw, field):
    kw = dict(kw)
    scene = rectbert.scene(kw.pop("scene")) if "scene" in kw else RECT
    with pytest.raises(config.ConfigError) as e:
        task(scene, **kw)
    assert e.value.field == field, e.value
    assert "\n" not in str(e.value), str(e.value)


# ----------------------------------------------------------------------------- (f) queries
def test_query_points_on_the_strokes_and_the_oracle_refuses_them():
    scene = rectbert.scene("glyph")
    t = task(scene, query_sampler="strokes")
    params = np.asarray(scene.sample(jax.random.key(19), 6))
    batch = jax.jit(t.examples)(jax.random.key(20), params)
    pts, hidden = np.asarray(batch.points), np.asarray(batch.mask)
    far = 0
    for i, p in enumerate(params):
        d = distances(centrelines_of(scene, p), pts[i])
        assert d[hidden[i]].max() <= TOL, f"row {i}: a hidden point off the strokes"
        far += int(np.sum(d[~hidden[i]] > 1.0))
    assert far > 0, "the visible points are uniform, not on the strokes"
    why = oracle.unsupported(t)
    assert isinstance(why, str) and "hidden points" in why and "'strokes'" in why, why
    assert oracle.unsupported(task(RECT, occlude="60,60,140,140")) is None
    assert oracle.unsupported(task(RECT, occlude="random:40,100")) is None


def test_the_oracle_curve_refuses_a_task_whose_hidden_points_fall_elsewhere():
    # it re-hides each count's first points of the held-out examples: with a box (or a query
    # sampler) those would be points drawn as visible ones shown hidden, and the reverse
    from rectbert.analysis import oracle_curve
    from rectbert.analysis.report import SparseReport

    for kw in ({"occlude": "60,60,140,140"}, {"query_sampler": "near"}):
        split = task(RECT, **kw)
        with pytest.raises(ValueError, match="hidden points fall elsewhere"):
            oracle_curve.held_out(split, 3, 4)
        with pytest.raises(config.ConfigError) as e:
            SparseReport(oracle_curve=True).check(split)
        assert e.value.field == "oracle_curve" and "\n" not in str(e.value), e.value
        SparseReport(eval_oracle="near" not in kw.values()).check(split)  # the box: scored
    assert oracle_curve.unnested(task(RECT)) is None


def test_a_trained_run_is_scored_inside_a_box_of_ones_choosing(anycount_run):
    # docs/points.md's recipe: the run's own task with a box set, its examples, run.predict
    import dataclasses

    run = rectbert.load_run(anycount_run)
    boxed = dataclasses.replace(run.task(), occlude="100,100,160,160")
    shapes_ = run.scene.sample(jax.random.key(0), 8)
    batch = boxed.examples(jax.random.key(1), shapes_)
    pts, hidden = np.asarray(batch.points), np.asarray(batch.mask)
    inside = np.all((pts >= 100) & (pts < 160), -1)
    assert np.array_equal(inside, hidden)  # every query in the box, every visible point out
    probs = np.asarray(run.predict(batch.points, batch.tokens, ~batch.mask))
    assert probs.shape == (*hidden.shape, boxed.num_tokens)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)


def test_the_majority_baseline_is_the_hidden_points_majority_when_they_fall_elsewhere():
    # token 1: a window at least 20 % ink (its 16 cells' mean nearer 0.4 than 0). Measured on
    # 512 capitals: 83 % of windows centred on a stroke, 23 % of uniform ones; so the hidden
    # points' majority (8 on the strokes) is 1, and all points' (16 more uniform: 43 %) is 0
    ink = np.stack([np.zeros(16), np.full(16, 0.4)]).astype(np.float32)
    glyph = rectbert.scene("glyph")
    kw = dict(mask=MaskSpec(8), num_points=24, num_clusters=2, centroids=ink, eval_examples=64)
    asked = SparseTask(scene=glyph, query_sampler="strokes", **kw)
    assert int(jax.jit(lambda: asked.majority_token)()) == 1  # computed inside a trace too
    assert int(SparseTask(scene=glyph, **kw).majority_token) == 0


def test_extra_targets_fall_in_their_example_s_box():
    # the step's examples hide boxes drawn from its key (train_batch: the data key's second
    # half folded with the step); the extra targets are hidden points of the same examples
    t = dataclasses.replace(task(RECT, occlude="random:40,100"), extra_targets=16)
    batch = t.train_batch(3, 8)
    k_step = jax.random.fold_in(jax.random.split(keys.key(t.seed, "data"))[1], 3)
    boxes = np.asarray(t.hidden_boxes(k_step, 8))
    pts, hidden = np.asarray(batch.points), np.asarray(batch.mask)
    assert pts.shape == (8, 40, 2) and hidden[:, 24:].all() and hidden[:, :24].sum() == 64
    b = boxes[:, None]
    inside = np.all((pts >= b[..., :2]) & (pts < b[..., 2:]), -1)
    assert np.array_equal(inside, hidden), "extra targets outside their box, or visible inside"
