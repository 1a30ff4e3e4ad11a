"""The Python API checks its inputs as the command line does: shapes, dtypes, finiteness and
ranges are refused in one ValueError naming the argument and what is allowed, before any
compute; large coverage batches run in chunks of bounded size with the same results (against
shapely's areas, an independent reference); and a property: any input gives a result or one
ValueError, never another exception."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rectbert
from rectbert.analysis import oracle, trained
from rectbert.scenes import exact
from tests import references
from tests.conftest import copy, installed

NAMES = tuple(n for n in sorted(rectbert.scenes.SCENES) if installed(n))  # every family here
PTS = jnp.full((2, 3, 2), 128.0)


def refused(match, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises one ValueError matching `match`, in one line."""
    with pytest.raises(ValueError, match=match) as e:
        fn(*args, **kwargs)
    assert type(e.value) is not TypeError and "\n" not in str(e.value)
    return str(e.value)


def good(name, n=2):
    scene = rectbert.scene(name)
    return scene, np.array(scene.sample(jax.random.key(0), n))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_points_are_refused_by_every_scene_and_rectbert_coverage(name, bad):
    scene, params = good(name)
    refused("points_NxPx2 must be finite", scene.coverage, params, PTS.at[1, 2, 0].set(bad))
    far = PTS.at[0, 0, 0].set(3e38)  # finite, but its window's corners overflow: NaN before
    refused("points_NxPx2 must lie within", scene.coverage, params, far)
    with np.errstate(invalid="ignore"):  # inf x an empty slot's 0 is nan: non-finite too
        odd = params.astype(float) * bad
    refused("params_NxD must be finite", scene.coverage, odd, PTS)
    rects = np.array([[40.0, 50.0, 120.0, 90.0]])
    refused("points_NxPx2 must be finite", rectbert.coverage, rects, np.full((1, 2, 2), bad))


def test_rect_coverage_is_exact_for_any_rectangle_on_the_canvas():
    # hand-computed: the window of 4x4 cells of 16 px centred on (64, 64) spans [32, 96)^2;
    # the rectangle [40, 56) x [32, 96) (a side of 16, below the prior's 32) covers columns
    # 0 and 1 of it by halves: 8 of the 16 px of each
    rect = rectbert.scene("rect")
    got = np.asarray(rect.coverage(np.array([[40.0, 32.0, 56.0, 96.0]]), [[[64.0, 64.0]]]))
    want = np.tile([0.5, 0.5, 0.0, 0.0], 4)
    np.testing.assert_array_equal(got[0, 0], want)
    for row, match in [
        ([[40.0, 32.0, 30.0, 96.0]], "x0 < x1"),  # a negative width
        ([[40.0, 32.0, 300.0, 96.0]], r"the canvas: column 2 in \[0, 256\]; row 0 has 300"),
        ([[-1e30, 32.0, 56.0, 96.0]], "the canvas: column 0"),
    ]:
        refused(match, rect.coverage, np.array(row), [[[64.0, 64.0]]])
        refused(match, rect.rasterise, np.array(row))
    rects = rectbert.scene("rects")
    two = np.array([[40.0, 32.0, 56.0, 96.0, 0.0, 0.0, 0.0, 0.0]])  # the second slot empty
    np.testing.assert_array_equal(np.asarray(rects.coverage(two, [[[64.0, 64.0]]]))[0, 0], want)
    refused(r"slot 1 \(columns 4-7\)", rects.coverage, two + [0, 0, 0, 0, 9, 9, 5, 20], PTS[:1])


def test_parameters_outside_the_support_are_refused_naming_the_column_and_range():
    rot, params = good("rotated")
    # today's silent answers: coverage 0 where a huge square covers the window, NaN, a
    # negative size drawn as a rectangle
    for col, value, allowed in [
        (2, 1e30, r"column 2 in \[32, 160\]; row 1 has 1e\+30"),
        (3, 1e30, r"column 3 in \[32, 160\]"),
        (2, -50.0, r"column 2 in \[32, 160\]; row 1 has -50"),
        (4, 7.0, r"column 4 in \[0, 1.5708\]"),
        (0, 300.0, r"column 0 in \[16, 240\]"),
    ]:
        bad = params.copy()
        bad[1, col] = value
        msg = refused(allowed, rot.coverage, bad, PTS)
        assert msg.startswith("params_NxD of scene 'rotated' must lie in its support")
        refused(allowed, rot.rasterise, bad)
    junction, params = good("junction")
    refused(r"column 0 in \[32, 224\]", junction.coverage, np.full_like(params, 1e30), PTS)
    width = params.copy()
    width[0, 2] = -3.0
    refused(r"column 2 in \[8, 24\]; row 0 has -3", junction.coverage, width, PTS)
    # inside the support, even at its edges: a 160 px square at theta = 0 centred on the
    # canvas covers the whole window of (128, 128) (hand-computed: every cell 1)
    edge = np.array([[128.0, 128.0, 160.0, 160.0, 0.0], [80.0, 80.0, 32.0, 160.0, np.pi / 2]])
    got = np.asarray(rot.coverage(edge, PTS))
    np.testing.assert_allclose(got[0], 1.0, atol=1e-6)
    # every sample of every family passes, and so does a row a float32 rounding past the edge
    # of the support (a margin for the samplers' arithmetic); a pixel past it does not
    for name in NAMES:
        scene = rectbert.scene(name)
        scene.check(scene.sample(jax.random.key(5), 4000))
    over = edge[:1].astype(np.float32)
    over[0, 2] = np.nextafter(np.float32(160), np.float32(200))
    rot.check(over)
    refused(r"column 2 in \[32, 160\]; row 0 has 161", rot.check, over + [0, 0, 1, 0, 0])


@pytest.mark.slow  # 20,000 junctions x 24 points compiled in chunks
def test_large_batches_run_in_chunks_of_bounded_size(monkeypatch):
    # in_chunks with a spy: every call holds at most `pairs` (shape, point) pairs, all calls
    # have one shape (one compilation), and the rows come back in order (exact arithmetic)
    calls = []

    def spy(params, points):
        calls.append(points.shape[:2])
        return jnp.asarray(points[..., :1] * 1000 + params[:, None, :1])

    params = np.arange(7, dtype=np.float32)[:, None]
    points = np.arange(7 * 5 * 2, dtype=np.float32).reshape(7, 5, 2)
    want = points[..., :1] * 1000 + params[:, None, :1]
    for pairs, shape in [(10, (2, 5)), (3, (1, 3)), (35, (7, 5))]:
        calls.clear()
        np.testing.assert_array_equal(np.asarray(exact.in_chunks(spy, params, points, pairs)), want)
        assert set(calls) == {shape} and shape[0] * shape[1] <= pairs
    # junction coverage of 20,000 shapes x 24 points (15.8 GB at once): calls of at most
    # chunk_pairs pairs, whose compiled program's work memory is bounded (< 1 GiB)
    sizes = []
    monkeypatch.setattr(exact, "in_chunks", lambda fn, a, p, pairs: sizes.append(pairs))
    junction = rectbert.scene("junction")
    many = np.tile(good("junction", 1)[1], (20_000, 1))
    junction.coverage(many, np.full((20_000, 24, 2), 128.0, np.float32))
    rows = junction.chunk_pairs // 24
    assert sizes == [junction.chunk_pairs] and rows >= 1
    program = jax.jit(type(junction).coverage.__wrapped__, static_argnums=0)
    compiled = program.lower(junction, many[:rows], np.zeros((rows, 24, 2), np.float32))
    assert compiled.compile().memory_analysis().temp_size_in_bytes < 2**30


@pytest.mark.parametrize(
    "name",
    ["rotated", pytest.param("junction", marks=pytest.mark.slow)],  # junction: 4 s here
)
def test_chunked_coverage_equals_unchunked_and_shapely(monkeypatch, name):
    scene, params = good(name, 5)
    pts = np.random.default_rng(1).uniform(20, 236, (5, 6, 2)).astype(np.float32)
    whole = np.asarray(scene.coverage(params, pts))
    want = references.coverage(scene, params, pts)
    for pairs in (4, 13):  # blocks of points within a row; blocks of rows, the last padded
        monkeypatch.setattr(type(scene), "chunk_pairs", pairs)
        got = np.asarray(scene.coverage(params, pts))
        # XLA rounds a batch's float32 sums in an order that depends on its shape (the first
        # rows of a batch alone differ so too): equal to float32 rounding, not bitwise
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.fixture(scope="module")
def run(anycount_run):
    return rectbert.load_run(anycount_run)


def inputs(b=2, p=5, k=None):
    rng = np.random.default_rng(0)
    points = rng.uniform(32, 224, (b, p, 2)).astype(np.float32)
    tokens = rng.integers(0, k or 2, (b, p)).astype(np.int32)
    visible = np.arange(p)[None].repeat(b, 0) < 3
    return points, tokens, visible


def test_run_predict_and_sample_refuse_bad_inputs_in_one_line(run):
    k = run.model_config.num_tokens
    points, tokens, visible = inputs(k=k)
    probs = np.asarray(run.predict(points, tokens, visible))
    assert probs.shape == (2, 5, k)
    for pts, toks, vis, match in [
        (points[0], tokens, visible, r"points_BxPx2 must have shape \[B, P, 2\]"),  # unbatched
        (np.concatenate([points, points[..., :1]], -1), tokens, visible, "points_BxPx2"),
        (points, tokens[:1], visible, r"tokens_BxP must have shape \[B, P\] = \[2, 5\]"),
        (points, tokens[:, :4], visible, "tokens_BxP"),
        (points, tokens, visible[:, :4], "visible_BxP"),
        (points, np.where(visible, 99, tokens), visible, rf"in \[0, {k}\).*\[0, 0\] = 99"),
        (points, np.full_like(tokens, -1), visible, r"tokens_BxP\[0, 0\] = -1"),
        (points, tokens.astype(np.float32), visible, "integer token ids"),
        (points, tokens, visible * 3, "visible_BxP must be booleans"),
        (np.where(visible[..., None], np.nan, points), tokens, visible, "finite"),
        (points * np.inf, tokens, visible, "points_BxPx2 must be finite"),
        (None, tokens, visible, "points_BxPx2 must be an array"),
        (points, "tokens", visible, "tokens_BxP must be an array"),
    ]:
        refused(match, run.predict, pts, toks, vis)
        refused(match, run.sample, pts, toks, vis, jax.random.key(0))
    # sample's own arguments
    refused(
        "cfg must be a SampleConfig",
        run.sample,
        points,
        tokens,
        visible,
        jax.random.key(0),
        cfg={"method": "argmax"},
    )
    refused("key must be one PRNG key", run.sample, points, tokens, visible, 0)
    # hidden entries are ignored (any integer), and one [1, P] or [P] mask serves every example
    junk = np.where(visible, tokens, -7)
    np.testing.assert_array_equal(np.asarray(run.predict(points, junk, visible)), probs)
    np.testing.assert_array_equal(np.asarray(run.predict(points, tokens, visible[:1])), probs)
    np.testing.assert_array_equal(np.asarray(run.predict(points, tokens, visible[0])), probs)
    drawn = np.asarray(run.sample(points, junk, visible, jax.random.key(1)))
    np.testing.assert_array_equal(drawn[:, :3], tokens[:, :3])
    assert drawn.min() >= 0 and drawn.max() < k


def test_run_tokens_and_oracle_curve_refuse_bad_inputs(run, monkeypatch):
    shapes = np.array([[40.0, 32.0, 56.0, 96.0]])
    pts = np.array([[[64.0, 64.0], [200.0, 200.0]]])
    want = np.asarray(run.tokens(shapes, pts))
    assert want.shape == (1, 2)
    refused("points_BxPx2 must be finite", run.tokens, shapes, np.where(pts == 64, np.nan, pts))
    refused(r"shapes_BxD of scene 'rect' must have shape \[N, 4\]", run.tokens, shapes[0], pts)
    refused("shapes_BxD of scene 'rect' must lie in its support", run.tokens, shapes * 1e30, pts)
    # oracle_curve: a bare count is one count; other types and configs are refused before
    # any compute
    seen = []
    monkeypatch.setattr(trained.oracle_curve, "curve", lambda *a, **k: seen.append(a[3]) or a)
    run.oracle_curve(visible=3, examples=4)
    run.oracle_curve(visible=np.int64(2), examples=4)
    assert seen == [(3,), (2,)]
    refused("visible must be a visible count or a sequence", run.oracle_curve, visible=2.5)
    refused("visible must be", run.oracle_curve, visible=object())
    refused("cfg must be an oracle.OracleConfig", run.oracle_curve, cfg={"chains": 4})
    assert len(seen) == 2
    monkeypatch.undo()
    refused(
        "CurveConfig.visible",
        run.oracle_curve,
        visible=(0, 99),
        examples=4,
        cfg=oracle.OracleConfig(),
    )


def test_load_run_refuses_bad_arguments_and_a_mistyped_config(anycount_run, tmp_path):
    for workdir in (None, 3, ""):
        refused("workdir must be a trained run's directory", rectbert.load_run, workdir)
    for step in ("3", -1, True, 2.0):
        refused("step must be a checkpoint's step", rectbert.load_run, anycount_run, step)
    workdir = copy(anycount_run, tmp_path)
    path = os.path.join(workdir, "config.json")
    record = json.loads(open(path).read())
    for field, value, match in [
        ("embed_dim", "16", "model.embed_dim='16' must be an integer"),
        ("num_tokens", 8.5, "model.num_tokens=8.5 must be an integer"),
        ("dropout", None, "model.dropout=None must be a number"),
        ("position", 3, "model.position=3 must be a string"),
        ("embed_dim", 15, "model is refused.*ModelConfig.embed_dim=15"),
    ]:
        with open(path, "w") as f:
            json.dump({**record, "model": {**record["model"], field: value}}, f)
        msg = refused(match, rectbert.load_run, workdir)
        assert msg.startswith(f"workdir={workdir!r}: config.json's model")
    with open(path, "w") as f:
        json.dump({**record, "model": [1, 2]}, f)
    refused("model is not a record", rectbert.load_run, workdir)


# ----------------------------------------------------------------------------- property
ODD = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e300, -50.0, 0.0, 3e38])


@st.composite
def coverage_inputs(draw):
    name = draw(st.sampled_from(NAMES))
    scene = rectbert.scene(name)
    d = scene.param_dim + draw(st.sampled_from([0, 0, 0, -1, 1]))
    params = np.array(scene.sample(jax.random.key(draw(st.integers(0, 3))), 2), np.float64)
    params = np.pad(params, ((0, 0), (0, max(d - params.shape[1], 0))))[:, :d]
    if draw(st.booleans()):
        idx = draw(st.tuples(st.integers(0, 1), st.integers(0, d - 1)))
        params[idx] = draw(ODD)
    points = np.full((2, 3, 2), 128.0) + draw(st.floats(-120, 120))
    if draw(st.booleans()):
        points[draw(st.integers(0, 1)), draw(st.integers(0, 2)), 0] = draw(ODD)
    shape = draw(st.sampled_from(["ok", "ok", "unbatched", "3d", "n"]))
    points = {"ok": points, "unbatched": points[0], "3d": points[..., :1], "n": points[:1]}[shape]
    wrong = draw(st.sampled_from([None, None, None, None, "params", "points"]))
    other = draw(st.sampled_from([None, "text", {"a": 1}, [[1, 2], [3]], True]))
    if wrong == "params":
        params = other
    elif wrong == "points":
        points = other
    return scene, params, points


ROTATED = rectbert.scene("rotated")
SQUARES_D = np.array([[128.0, 128.0, 100.0, 60.0, 0.3]] * 2)


@settings(deadline=None)
@given(coverage_inputs())
@example((ROTATED, SQUARES_D, np.full((2, 3, 2), np.nan)))  # non-finite points
@example((ROTATED, SQUARES_D * [1, 1, 1e30, 1e30, 1], np.full((2, 3, 2), 128.0)))  # huge sides
@example((ROTATED, SQUARES_D, np.full((3, 2), 128.0)))  # unbatched points
def test_property_coverage_gives_a_result_or_one_value_error(case):
    scene, params, points = case
    try:
        out = np.asarray(scene.coverage(params, points))
    except ValueError as e:
        assert "\n" not in str(e)
        return
    # a result: the exact covered fractions, in [0, 1]
    assert out.shape == (2, 3, 16) and np.all((out >= 0) & (out <= 1))


@st.composite
def predict_inputs(draw):
    points, tokens, visible = inputs()
    points, tokens = points.astype(np.float64) + draw(st.floats(-300, 300)), tokens.astype(np.int64)
    if draw(st.booleans()):
        points[draw(st.integers(0, 1)), draw(st.integers(0, 4)), 1] = draw(ODD)
    if draw(st.booleans()):
        tokens[draw(st.integers(0, 1)), draw(st.integers(0, 4))] = draw(
            st.sampled_from([-1, 99, 2**40, 1])
        )
    cut = draw(st.sampled_from([None, None, "points", "tokens", "visible"]))
    if cut == "points":
        points = draw(st.sampled_from([points[0], points[:1], points[..., :1], None, "x"]))
    elif cut == "tokens":
        tokens = draw(st.sampled_from([tokens[:1], tokens[:, :2], tokens * 0.5, None]))
    elif cut == "visible":
        visible = draw(st.sampled_from([visible[:1], visible[0], visible * 2, [[1, 0]], 3]))
    return points, tokens, visible


@settings(deadline=None)
@given(predict_inputs())
@example((inputs()[0][0], *inputs()[1:]))  # unbatched points
@example((inputs()[0] * np.nan, *inputs()[1:]))  # non-finite points
def test_property_run_predict_gives_a_result_or_one_value_error(run, case):
    points, tokens, visible = case
    try:
        probs = np.asarray(run.predict(points, tokens, visible))
    except ValueError as e:
        assert "\n" not in str(e)
        return
    assert probs.shape == (2, 5, run.model_config.num_tokens) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_window_and_image_sizes_are_whole_and_bounded():
    rects = np.array([[40.0, 50.0, 120.0, 90.0]])
    pts = np.full((1, 2, 2), 100.0)
    for kwargs, name in [
        ({"grid": 10**5}, "grid"),
        ({"grid": 2.5}, "grid"),
        ({"cell": True}, "cell"),
        ({"cell": 1.5}, "cell"),
        ({"cell": float("nan")}, "cell"),
    ]:
        refused(f"{name} must be an integer in", rectbert.coverage, rects, pts, **kwargs)
    refused("size must be an integer in", rectbert.downsample, rects, size=10**6)
    refused("cell must be an integer in", rectbert.downsample, rects, cell=0)


def test_kmeans_and_sample_refuse_bad_arguments_in_one_line():
    x = np.random.default_rng(0).normal(size=(20, 3))
    key = jax.random.key(0)
    refused("x_NxD must be finite", rectbert.kmeans, key, x * np.nan, 4)
    refused("k must be an integer", rectbert.kmeans, key, x, 2.5)
    refused("k must be an integer", rectbert.kmeans, key, x, 21)
    refused("key must be one PRNG key", rectbert.kmeans, 0, x, 4)
    refused("tol must be", rectbert.kmeans, key, x, 4, tol=float("nan"))
    for w in (-np.ones(20), np.zeros(20), np.full(20, np.nan)):
        refused("weights_N must be finite", rectbert.kmeans, key, x, 4, weights_N=w)
    refused("predict must be a function", rectbert.sample, None, None, None, None)
    refused("cfg must be a SampleConfig", rectbert.sample, len, {}, None, key, {"x": 1})
