"""The glyph and kanji scenes: coverage against shapely's areas of the placed polygon (placed by
shapely.affinity, intersected with every cell by shapely), the polygon against the raw strokes
the libraries give, Bézier flattening against dense evaluation, placement inside the canvas,
the unseen split and one-line refusals."""

import importlib.metadata
import math
import string

import jax
import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely.geometry import LineString, Point

import rectbert
from rectbert import config
from rectbert.geometry import curves, drawings, polygons, shapes, sources, svg

RNG = np.random.default_rng(7)


def reference(scene, params_D, points_Px2):
    """[P, 16] each window cell's covered fraction by shapely: the scene's em polygon scaled,
    rotated and moved by shapely.affinity, intersected with each cell box."""
    i, size, angle, x, y = (float(v) for v in params_D)
    poly = scene.library.shapes[int(round(i))]
    poly = shapely.affinity.scale(poly, size, size, origin=(0, 0))
    poly = shapely.affinity.rotate(poly, angle, origin=(0, 0), use_radians=True)
    poly = shapely.affinity.translate(poly, x, y)
    c, g = shapes.CELL, shapes.GRID
    boxes = []
    for px, py in points_Px2:
        x0, y0 = px - g * c / 2, py - g * c / 2
        boxes += [
            shapely.box(x0 + j * c, y0 + r * c, x0 + (j + 1) * c, y0 + (r + 1) * c)
            for r in range(g)
            for j in range(g)
        ]  # row-major: row = y
    area = shapely.area(shapely.intersection(poly, np.array(boxes)))
    return area.reshape(len(points_Px2), g * g) / c**2


def check_exact(scene, rows: int):
    params = np.array(scene.sample(jax.random.key(3), rows))
    params[:, 0] = np.arange(rows) % scene.count  # every drawing
    lattice = np.asarray(shapes.lattice_points())
    pts = np.stack([np.concatenate([lattice, RNG.uniform(0, 256, (24, 2))]) for _ in range(rows)])
    got = np.asarray(scene.coverage(params, pts))
    want = np.stack([reference(scene, params[r], pts[r]) for r in range(rows)])
    return np.abs(got - want).max()


@pytest.mark.parametrize("font", ["futural", "timesr"])
def test_glyph_coverage_is_shapely_area_for_every_glyph(font):
    scene = rectbert.scene("glyph", font=(font,), rotation=(-40.0, 40.0), glyph_size=(96.0, 160.0))
    assert scene.count == 26
    assert check_exact(scene, 26) < 2e-5


@pytest.mark.parametrize("font", ["futural", "timesr"])
def test_glyph_polygon_is_the_thickened_strokes(font):
    """Against the raw strokes HersheyFonts gives: every centreline point is inside, and no
    point is farther than 2.5 half-widths from all strokes (a square cap's corner is at
    sqrt 2; a mitre cut at the limit of 2 half-widths along a hairpin's bisector has corners
    at about sqrt 5 = 2.24, the most measured on timesr's serifs; futural's joins stay under
    sqrt 2). Spikes of the limit 5 (4.4-5 half-widths) fail it."""
    from HersheyFonts import HersheyFonts

    hershey = HersheyFonts()
    hershey.load_default_font(font)
    scene = rectbert.scene("glyph", font=(font,), stroke_weight=0.1)
    half = 0.1 * 32 / 2
    for i, char in enumerate(string.ascii_uppercase):
        lines = [LineString(s) for s in hershey.strokes_for_text(char) if len(s) > 1]
        raw = shapely.union_all(lines)
        em = shapely.affinity.scale(scene.library.shapes[i], 32, 32, origin=(0, 0))
        # the drawing was centred on its polygon's box: find that offset from the raw strokes
        bx0, by0, bx1, by1 = shapely.union_all(
            [raw.buffer(half, cap_style="square", join_style="mitre", mitre_limit=2.0)]
        ).bounds
        em = shapely.affinity.translate(em, (bx0 + bx1) / 2, (by0 + by1) / 2)
        for line in lines:
            for t in np.linspace(0, 1, 11):
                assert em.buffer(1e-6).contains(line.interpolate(t, normalized=True)), char
        box = np.array([bx0 - 5, by0 - 5]), np.array([bx1 + 5, by1 + 5])
        probe = [Point(p) for p in RNG.uniform(*box, (400, 2))]
        far = [p for p in probe if raw.distance(p) > 2.5 * half]
        assert not any(em.contains(p) for p in far), char
        vertices = np.concatenate([np.asarray(r.coords) for r in _rings(em)])
        assert max(raw.distance(Point(v)) for v in vertices) <= 2.5 * half, char


def _rings(shape):
    for poly in getattr(shape, "geoms", [shape]):
        yield poly.exterior
        yield from poly.interiors


def test_glyph_placement_fits_the_canvas_and_density_matches():
    scene = rectbert.scene("glyph", rotation=(-90.0, 90.0), glyph_size=(100.0, 150.0))
    p = np.array(scene.sample(jax.random.key(0), 300))
    assert np.all(np.isfinite(np.asarray(scene.log_density(p))))
    for row in p[:60]:
        ring = np.concatenate(scene.outlines(row))
        assert ring.min() >= -1e-3 and ring.max() <= 256 + 1e-3
    # (x, y)'s density: 1 / the span of places where the placed polygon fits, by shapely
    row = p[0].astype(np.float64)
    i, size, angle = int(row[0]), row[1], row[2]
    poly = shapely.affinity.rotate(
        shapely.affinity.scale(scene.library.shapes[i], size, size, origin=(0, 0)),
        angle,
        origin=(0, 0),
        use_radians=True,
    )
    bx0, by0, bx1, by1 = poly.bounds
    span = (256 - (bx1 - bx0)) * (256 - (by1 - by0))
    want = -math.log(26) - math.log(50) - math.log(math.pi) - math.log(span)
    assert float(scene.log_density(p[:1])[0]) == pytest.approx(want, abs=1e-3)
    moved = p[:1].copy()
    moved[0, 3] = -bx0 - 0.5  # half a pixel off the canvas
    assert float(scene.log_density(moved)[0]) == -np.inf


def test_glyph_components_cover_the_set_with_equal_prior():
    scene = rectbert.scene("glyph", glyphs="ABC", font=("futural", "timesr"))
    parts = scene.components()
    assert len(parts) == 6
    assert np.allclose(np.exp([w for w, _ in parts]), 1 / 6)
    part = parts[4][1]
    x = np.asarray(part.sample(jax.random.key(1), 8))
    assert x.shape == (8, 3)  # upright: size, x, y
    full = np.asarray(scene.lift(4, x))
    assert np.all(full[:, 0] == 4) and np.all(full[:, 2] == 0)
    # the component's density is the parent's given the glyph
    assert np.allclose(part.log_density(x), scene.log_density(full) + math.log(6), atol=1e-5)
    pts = np.asarray(scene.sample(jax.random.key(2), 8))[:, 3:5][:, None]
    assert np.allclose(part.coverage(x, pts), scene.coverage(full, pts), atol=1e-6)


def test_unseen_split():
    scene = rectbert.scene("glyph", glyphs="ABCDEFGHIJKLM", unseen_glyphs="NOPQRSTUVWXYZ")
    held = scene.unseen()
    assert held.library.names[0] == "futural:N" and held.count == 13 and held.unseen() is None
    fonts = rectbert.scene("glyph", unseen_fonts=("timesr", "scripts")).unseen()
    assert fonts.count == 52 and fonts.library.names[26] == "scripts:A"
    assert rectbert.scene("glyph").unseen() is None
    with pytest.raises(config.ConfigError, match="outside the training set"):
        rectbert.scene("glyph", glyphs="ABC", unseen_glyphs="CDE")
    with pytest.raises(config.ConfigError, match="outside the training set"):
        rectbert.scene("glyph", unseen_fonts=("futural",))


@pytest.mark.parametrize(
    "opts, says",
    [
        ({"font": ("nope",)}, "Hershey fonts"),
        ({"glyphs": ""}, "at least one character"),
        ({"glyphs": "é"}, "no glyph"),
        ({"glyph_size": (200.0, 100.0)}, "0 < lo < hi"),
        (
            {"glyph_size": (100.0, 256.0), "rotation": (0.0, 45.0), "stroke_weight": 0.25},
            "must fit",
        ),
        ({"rotation": (0.0, 400.0)}, "degrees"),
        ({"stroke_weight": 0.0}, "of the em"),
        ({"font": ("futural", "futural")}, "each font once"),
        ({"unseen_glyphs": " "}, "characters, or ''"),
        ({"unseen_glyphs": "é"}, "unseen_glyphs=.*no glyph"),  # names the flag the user set
        ({"unseen_fonts": ("markers",)}, "unseen_fonts=.*no glyph"),
    ],
)
def test_glyph_refuses_in_one_line(opts, says):
    with pytest.raises(config.ConfigError, match=says) as e:
        rectbert.scene("glyph", **opts)
    assert "\n" not in str(e.value)


def test_the_largest_size_said_to_fit_fits():
    opts = {"rotation": (0.0, 45.0), "stroke_weight": 0.25}
    with pytest.raises(config.ConfigError, match=r"at most (\d+\.\d)") as e:
        rectbert.scene("glyph", glyph_size=(100.0, 256.0), **opts)
    fit = float(e.value.allowed.split("at most ")[1].split()[0])
    rectbert.scene("glyph", glyph_size=(100.0, fit), **opts)  # accepted


def test_the_thinnest_stroke_allowed_is_still_the_drawing():
    """A stroke thinner than the bound is refused in one line naming stroke_weight, before any
    polygon is built (1e-300 was an IndexError from the empty union). At the bound, the
    polygon placed in float32 canvas pixels near (250, 250) keeps shapely's area of the em
    polygon x size^2 (measured: 0.03 % at 224 px, 1.3 % at 8 px; 1e-7 em: 3 %, 100 %)."""
    from rectbert.scenes import drawn

    thin = [("glyph", 1e-300), ("glyph", 1e-16), ("glyph", 5e-5)]
    for family, weight in thin + [("kanji", 1e-20)] * _has_kanjivg():
        with pytest.raises(config.ConfigError, match=r"stroke_weight=.*in \[0.0001, 0.25\]") as e:
            rectbert.scene(family, stroke_weight=weight)
        assert "\n" not in str(e.value)
    w = drawn.MIN_STROKE_WEIGHT
    scene = rectbert.scene("glyph", stroke_weight=w, glyph_size=(8.0, 224.0), rotation=(-180, 180))
    exact = np.array([g.area for g in scene.library.shapes])
    for size, xy, most in [(224.0, 128.0, 1e-3), (8.0, 250.0, 3e-2)]:
        rows = np.array([[i, size, 0.2 * i - 2.5, xy, xy] for i in range(26)], np.float32)
        a, b, weight = (np.asarray(x, np.float64) for x in jax.jit(scene.placed)(rows))
        area = 0.5 * np.sum(weight * (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]), -1)
        assert np.abs(area / (exact * size**2) - 1).max() < most, size


def test_an_outline_float64_cannot_thicken_is_refused_in_one_line():
    line = [np.array([[0.0, 0.0], [1.0, 0.0]])]
    # hand-computed: square caps add half a width at each end, (1 + w) x w
    assert drawings.outline(line, 0.1).area == pytest.approx(0.11)
    assert drawings.outline(line, 1e-9).area == pytest.approx(1e-9, rel=1e-6)
    slant = [np.array([[0.1, 0.2], [0.7, 0.5]])]  # shapely at 1e-16: 0.62 x its area
    for strokes, width in [(line, 1e-300), (slant, 1e-16), (line, 1e-13), (line, 0.0)]:
        with pytest.raises(ValueError, match="too thin") as e:
            drawings.outline(strokes, width)  # 1e-300: shapely's union is empty
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="make no polygon"):
        drawings.outline([], 0.1)
    with pytest.raises(ValueError, match="^bar: strokes 1e-300 wide"):
        drawings.library(["bar"], lambda name: (line, ()), 1.0, 1e-300, 1e-6)


def test_tokens_refuse_a_drawing_index_between_two_drawings():
    """run.tokens (scene.check) took index 2.7 and drew drawing 3, where log_density is -inf."""
    from rectbert.analysis import trained

    scene = rectbert.scene("glyph")
    run = trained.Run("run", {"task": {"scene": scene.record()}}, None, {}, 0, np.eye(16))
    rows = np.array([[2.0, 150.0, 0.0, 128.0, 128.0], [2.7, 150.0, 0.0, 128.0, 128.0]])
    points = np.full((2, 1, 2), 128.0)
    scene.check(rows[:1], points[:1])  # a whole index: inside
    for fn in (run.tokens, scene.coverage):
        with pytest.raises(
            ValueError,
            match=r"column 0, the drawing index, a whole number in "
            r"\[0, 25\]; row 1 has 2.7$",
        ) as e:
            fn(rows, points)
        assert "\n" not in str(e.value)


def test_a_range_of_another_type_is_told_what_is_allowed():
    """glyph_size (a range that must be given) was told '... or None', then refused None."""
    with pytest.raises(config.ConfigError) as e:
        rectbert.scene("glyph", glyph_size=5)
    assert e.value.allowed == "two numbers (lo, hi)"
    for value in (None, ()):  # indeed not allowed
        with pytest.raises(config.ConfigError, match="glyph_size"):
            rectbert.scene("glyph", glyph_size=value)
    with pytest.raises(config.ConfigError) as e:
        rectbert.scene("rect", aspect=5)
    assert e.value.allowed == "two numbers (lo, hi), or None"
    assert rectbert.scene("rect", aspect=None).aspect is None  # as it says


# ----------------------------------------------------------------------------- kanji
def _has_kanjivg():
    try:
        importlib.metadata.distribution("kanjivg")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_kanjivg = pytest.mark.skipif(not _has_kanjivg(), reason="needs the kanji extra")


@needs_kanjivg
def test_kanji_coverage_is_shapely_area():
    scene = rectbert.scene("kanji", rotation=(-20.0, 20.0))
    assert check_exact(scene, scene.count) < 2e-5


@needs_kanjivg
def test_kanji_coverage_of_a_few_shapes_is_shapely_area():
    # a batch under polygons.DENSE_WORK (the oracle's slice moves judge a few shapes at a
    # time) takes every segment, padding and all, not the counted chunks; one at a window
    # on each drawing's own boundary, where every segment near it counts
    scene = rectbert.scene("kanji", rotation=(-20.0, 20.0))
    params = np.array(scene.sample(jax.random.key(4), 3))
    params[:, 0] = [0, 7, scene.count - 1]
    a = np.asarray(scene.placed(params)[0])
    pts = RNG.uniform(0, 256, (3, 8, 2))
    pts[:, 0] = a[:, 5]
    s = scene.library.a.shape[1]
    small = 3 * 8 * s * 20 <= polygons.DENSE_WORK and s <= 2 * scene.library.counts.mean()
    assert s > polygons.CHUNK and small  # the dense path
    got = np.asarray(scene.coverage(params, pts))
    want = np.stack([reference(scene, params[r], pts[r]) for r in range(3)])
    assert np.abs(got - want).max() < 2e-5
    assert np.all(got[:, 0].max(-1) > 0)  # the windows on the boundary cover something


def test_svg_path_hand_computed():
    # M 10,20 then a relative line by (5, -5), a relative cubic that is a straight line
    # (control points on it), and S mirroring the last control point; Z closes
    lines = svg.path("M10,20l5-5c1,0,2,0,3,0s2,0,3,0Z", 0.01)
    (poly,) = lines
    assert np.allclose(poly[0], [10, 20]) and np.allclose(poly[1], [15, 15])
    assert np.allclose(poly[-2], [21, 15]) and np.allclose(poly[-1], [10, 20])
    assert np.allclose(poly[2:-1, 1], 15)  # the straight cubics stay on y = 15
    # a curved S: its first control point mirrors (10, 10) about (10, 0): (10, -10), so the
    # second cubic (10,0) (10,-10) (20,-10) (20,0) passes (15, -7.5) at t = 1/2; the same
    # written relative (s) and as an implicit repeat of C; then H and V (absolute, relative)
    for d in (
        "M0,0C0,10 10,10 10,0S20,-10 20,0",
        "M0,0c0,10 10,10 10,0s10,-10 10,0",
        "M0,0C0,10 10,10 10,0 10,-10 20,-10 20,0",
    ):
        (poly,) = svg.path(d, 1e-4)
        second = LineString(poly[poly[:, 0] >= 10])
        assert second.distance(Point(15, -7.5)) < 1e-3, d
        assert np.allclose(poly[-1], [20, 0])
    (poly,) = svg.path("M1,2H5v3h-2V0", 0.1)
    assert np.allclose(poly, [[1, 2], [5, 2], [5, 5], [3, 5], [3, 0]])


def test_bezier_flattening_within_tolerance():
    ctrl = np.array([[0.0, 0.0], [30.0, 80.0], [70.0, -60.0], [100.0, 10.0]])
    for tol in (1.0, 0.1, 0.01):
        poly = LineString(curves.bezier(ctrl, tol))
        t = np.linspace(0, 1, 2001)[:, None]
        dense = (
            (1 - t) ** 3 * ctrl[0]
            + 3 * (1 - t) ** 2 * t * ctrl[1]
            + 3 * (1 - t) * t**2 * ctrl[2]
            + t**3 * ctrl[3]
        )
        far = max(poly.distance(Point(p)) for p in dense)
        assert far <= tol
        assert len(poly.coords) < 4 * math.sqrt(1000 / tol)  # and not absurdly many


def test_kanji_refuses_without_the_extra(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    sources._kanji_paths.cache_clear()
    from rectbert.scenes import kanji

    kanji._kanji_library.cache_clear()
    with pytest.raises(config.ConfigError, match=r"pip install -e '\.\[kanji\]'") as e:
        rectbert.scene("kanji", kanji="木")
    assert "\n" not in str(e.value)
    kanji._kanji_library.cache_clear()


# ----------------------------------------------------------------------------- the split
def test_unseen_eval_set_draws_from_the_held_out_glyphs():
    """The unseen set's tokens are the codebook's nearest to shapely's areas of the held-out
    glyphs' polygons (N-Z), and none of the training glyphs."""
    from rectbert.data.sparse_task import SparseTask
    from rectbert.data.tasks import MaskSpec

    scene = rectbert.scene("glyph", glyphs="ABCDEFGHIJKLM", unseen_glyphs="NOPQRSTUVWXYZ")
    task = SparseTask(scene=scene, mask=MaskSpec(5), eval_examples=12, codebook_examples=10)
    task = task.with_codebook(task.fit_codebook()[0])
    seen, new = task.eval_set(), task.unseen_eval_set()
    held = scene.unseen()
    assert new.tokens.shape == seen.tokens.shape and not np.array_equal(new.points, seen.points)
    centroids = np.asarray(task.codebook)
    for r in range(4):
        values = reference(held, np.asarray(new.scenes[r]), np.asarray(new.points[r]))
        dist = ((values[:, None] - centroids[None]) ** 2).sum(-1)
        gap = np.take_along_axis(dist, np.asarray(new.tokens[r])[:, None], -1)[:, 0] - dist.min(-1)
        assert np.all(gap < 1e-4)
    names = {held.name_of(np.asarray(p)) for p in new.scenes}
    assert names <= {f"futural:{c}" for c in "NOPQRSTUVWXYZ"} and len(names) > 3
    plain = SparseTask(scene=rectbert.scene("glyph"), mask=MaskSpec(5), eval_examples=12)
    assert plain.unseen_eval_set() is None


@pytest.mark.slow
def test_unseen_split_end_to_end(tmp_path):
    """A tiny sparse run trained on A-M logs the unseen glyphs' accuracy, loss, baseline and
    gap, figures them, and loads (load_run) with its scene."""
    import json

    from experiments import cli
    from rectbert.recipes import sparse
    from tests.conftest import TINY, TINY_CODEBOOK

    workdir = tmp_path / "run"
    cli.run(
        sparse,
        f"--workdir={workdir}",
        "--num_steps=3",
        *TINY,
        *TINY_CODEBOOK,
        "--scene=glyph",
        "--glyphs=ABCDEFGHIJKLM",
        "--unseen_glyphs=NOPQRSTUVWXYZ",
        "--num_train_rects=0",
        "--dense_spacing=48",
    )
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "eval/unseen_masked_accuracy" in r][-1]
    gap = last["eval/masked_accuracy"] - last["eval/unseen_masked_accuracy"]
    assert last["eval/unseen_gap"] == pytest.approx(gap)
    assert 0 <= last["eval/unseen_nearest_accuracy"] <= 1 and last["eval/unseen_loss"] > 0
    assert (workdir / "figures" / "RectangleContinuousTrainingLoss.png").exists()
    assert (workdir / "figures" / "unseen_rendering.png").exists()
    run = rectbert.load_run(str(workdir))
    assert run.scene == rectbert.scene(
        "glyph", glyphs="ABCDEFGHIJKLM", unseen_glyphs="NOPQRSTUVWXYZ"
    )


def test_the_oracle_takes_a_set_as_one_batch_of_components():
    from rectbert.analysis import oracle

    many, one = rectbert.scene("glyph"), rectbert.scene("glyph", glyphs="A", rotation=(-10.0, 10.0))
    oracle.check(many)
    oracle.check(one)
    log_p, scene_of = many.component_batch()
    assert np.allclose(np.exp(log_p), 1 / 26) and scene_of(3) == many.components()[3][1]
    ((_, part),) = one.components()
    x = np.asarray(part.sample(jax.random.key(0), 4))
    assert x.shape == (4, 4)  # size, angle, x, y
    assert np.allclose(one.lift(0, x)[:, 1:], x) and np.all(np.asarray(one.lift(0, x))[:, 0] == 0)


@pytest.mark.slow
def test_batched_components_equal_components_one_by_one(monkeypatch):
    """The oracle's one program mapped over the glyph index (component_batch) gives what the
    components run one by one give, from the same keys (a planted batch that ignores the
    index fails); and the posterior over the letter follows the evidence."""
    from rectbert.analysis import mixture, oracle
    from rectbert.data.sparse_task import SparseTask
    from rectbert.data.tasks import MaskSpec
    from rectbert.scenes import drawn

    scene = rectbert.scene("glyph", glyphs="LOT")
    task = SparseTask(scene=scene, mask=MaskSpec(20), eval_examples=2, codebook_examples=20)
    task = task.with_codebook(task.fit_codebook()[0])
    b = task.eval_set()
    # unscreened: every component runs SMC (the screening orders the batch by evidence)
    cfg = oracle.OracleConfig(
        num_samples=256, chains=32, anneal_steps=6, mcmc_steps=2, screen=False
    )
    args = (b.points, b.tokens, ~b.mask, task.codebook, scene, cfg)
    batched = oracle.posterior(jax.random.key(0), *args)
    monkeypatch.setattr(drawn.Drawn, "component_batch", lambda self: None)
    jax.clear_caches()  # the compiled oracle of this scene and config would be reused
    # one by one, each with the budget a batch of 3 shares (mixture.shared_budget)
    shared = mixture.shared_budget(cfg, 3)
    assert (shared.num_samples, shared.chains) == (148, 18)  # 256 / sqrt 3, 32 / sqrt 3, even
    single = oracle.posterior(jax.random.key(0), *args[:-1], shared)
    assert np.allclose(batched.probs, single.probs, atol=1e-4)
    assert np.allclose(batched.components, single.components, atol=1e-4)
    assert np.allclose(batched.components.sum(-1), 1) and batched.components.shape == (2, 3)
    assert np.all(
        batched.samples[..., 0][batched.live] == np.round(batched.samples[..., 0][batched.live])
    )
