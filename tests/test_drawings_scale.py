"""Drawings by the thousand: KanjiVG's selections by stroke count, every Hershey glyph, Tabler's
outline icons. References: the packages' files parsed here (ElementTree for KanjiVG's strokes,
a regex for Tabler's categories), svgelements' dense evaluation of the true curves and shapely's
distances to them (the round pen's drawing is every point within half a width), shapely's
areas of the placed polygon, and SHA-256 computed here for the split."""

import hashlib
import importlib.metadata
import io
import re
import xml.etree.ElementTree as ET

import jax
import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely.geometry import Polygon

import rectbert
from rectbert import config
from rectbert.geometry import sources
from tests.conftest import installed
from tests.test_glyph import reference

RNG = np.random.default_rng(11)
needs_kanji = pytest.mark.skipif(not installed("kanji"), reason="needs the kanji extra")
needs_icons = pytest.mark.skipif(not installed("icon"), reason="needs the icons extra")


# ----------------------------------------------------------------------------- references
def kanji_stroke_counts() -> dict[str, int]:
    """Each base KanjiVG file's strokes: the <path> elements of its StrokePaths group."""
    dist = importlib.metadata.distribution("kanjivg")
    out = {}
    for f in dist.files:
        m = re.fullmatch(r"kanji/([0-9a-f]{5})\.svg", str(f))
        if not m:
            continue
        root = ET.parse(dist.locate_file(f)).getroot()
        groups = [g for g in root.iter() if g.get("id", "").startswith("kvg:StrokePaths")]
        out[chr(int(m.group(1), 16))] = sum(1 for e in groups[0].iter() if e.tag.endswith("path"))
    return out


def true_drawing(text: str):
    """(strokes, filled) as svgelements reads the SVG: every shape's segments evaluated at
    400 points each (its curves, arcs and circles as they are), and the shapes it fills."""
    svgelements = pytest.importorskip("svgelements")
    doc = svgelements.SVG.parse(io.StringIO(text), reify=True)
    strokes, filled = [], []
    for el in doc.elements():
        if not isinstance(el, svgelements.Shape) or isinstance(el, svgelements.SVG):
            continue
        path = svgelements.Path(el)
        for sub in path.as_subpaths():
            pts = []
            for seg in svgelements.Path(sub):
                if isinstance(seg, svgelements.Move):
                    continue
                t = np.linspace(0, 1, 400)
                pts += [(p.x, p.y) for p in (seg.point(v) for v in t)]
            if len(pts) >= 2:
                strokes.append(np.asarray(pts))
                if el.fill is not None and el.fill.value is not None and len(pts) >= 3:
                    filled.append(np.asarray(pts))
    return strokes, filled


def check_pen(scene, em: float, text_of, rows, tol_px: float = 0.1):
    """Whether each row's polygon is the round pen's drawing of the true curves to within
    tol_px canvas pixels at the largest size: every point of its boundary is half a width from
    the true strokes (svgelements' curves; the filled shapes' areas at distance 0) give or
    take tol_px, and of 6,000 points around it, those nearer than half a width less tol_px
    are inside it, those farther than half a width and tol_px outside. Returns the worst
    boundary distance error found, in canvas pixels."""
    px = scene.glyph_size[1] / em  # canvas pixels a library unit, at the largest size
    half, tol = scene.stroke_weight * em / 2, tol_px / px
    worst = 0.0
    for g in rows:
        strokes, filled = true_drawing(text_of(scene.library.names[g]))
        true = shapely.union_all(
            [shapely.MultiLineString([s.tolist() for s in strokes]), *map(Polygon, filled)]
        )
        ours = shapely.affinity.scale(scene.library.shapes[g], em, em, origin=(0, 0))
        ours = shapely.affinity.translate(ours, *(scene.library.centres[g] * em))  # uncentred
        x0, y0, x1, y1 = ours.bounds
        edge = shapely.get_coordinates(shapely.segmentize(ours.boundary, tol))
        edge = edge[RNG.choice(len(edge), min(len(edge), 3000), replace=False)]
        d = shapely.distance(true, shapely.points(edge))
        worst = max(worst, np.abs(d - half).max() * px)
        near = edge + RNG.normal(0, 3 * tol, edge.shape)
        box = RNG.uniform([x0, y0], [x1, y1], (3000, 2))
        probe = np.concatenate([near, box])
        d = shapely.distance(true, shapely.points(probe))
        inside = shapely.contains_xy(ours, probe[:, 0], probe[:, 1])
        assert inside[d < half - tol].all() and not inside[d > half + tol].any(), g
    return worst


def check_coverage(scene, rows):
    """The worst |coverage - shapely's area| over these rows of the set, each placed at random,
    at 40 points (the lattice's and random ones)."""
    params = np.array(scene.sample(jax.random.key(5), len(rows)))
    params[:, 0] = rows
    pts = RNG.uniform(0, 256, (len(rows), 40, 2))
    got = np.asarray(scene.coverage(params, pts))
    want = np.stack([reference(scene, params[r], pts[r]) for r in range(len(rows))])
    return np.abs(got - want).max()


def refused_in_one_line(family: str, opts: dict, field: str, says: str) -> None:
    """The family refuses these options in one line naming `field` and saying `says`."""
    with pytest.raises(config.ConfigError) as e:
        rectbert.scene(family, **opts)
    assert e.value.field == field and says in str(e.value) and "\n" not in str(e.value)


def spread(names, k: int) -> str | tuple:
    """k names spread evenly over a sorted set (not only its first ones)."""
    idx = np.linspace(0, len(names) - 1, k).round().astype(int)
    return tuple(names[i] for i in idx)


# ----------------------------------------------------------------------------- kanji
@needs_kanji
@pytest.mark.slow
def test_kanji_selection_by_stroke_count_is_kanjivgs():
    counts = kanji_stroke_counts()
    assert len(sources.kanji_all()) == len(counts) == 6703
    want = tuple(sorted(c for c, n in counts.items() if 1 <= n <= 8))
    assert sources.kanji_selection("strokes:1-8") == want and len(want) == 1602
    assert sources.kanji_selection("strokes:3") == tuple(
        sorted(c for c, n in counts.items() if n == 3)
    )
    assert sources.kanji_selection("all") == tuple(sorted(counts))


@needs_kanji
@pytest.mark.parametrize(
    "value, says",
    [
        ("strokes:8-1", "1 <= lo <= hi"),
        ("strokes:0-3", "1 <= lo <= hi"),
        ("strokes:a", "'strokes:lo-hi' or 'strokes:n'"),
        ("strokes:31-40", "KanjiVG draws no character of 31-40 strokes (1 to 30)"),
        ("All", "'all' and 'strokes:' are written in lower case"),
        ("STROKES:1-8", "'all' and 'strokes:' are written in lower case"),
        ("木☃", "KanjiVG has no drawing of"),
    ],
)
def test_kanji_selection_refused_in_one_line(value, says):
    refused_in_one_line("kanji", {"kanji": value}, "kanji", says)


@needs_kanji
@pytest.mark.slow
def test_kanji_across_the_set_is_the_round_pen_and_exact():
    """Kanji spread over the 1,602 of at most 8 strokes: the polygon within 0.1 px (at 224 px)
    of KanjiVG's strokes drawn with a round pen, and coverage shapely's area of it placed."""
    chars = "".join(spread(sources.kanji_selection("strokes:1-8"), 12))
    scene = rectbert.scene("kanji", kanji=chars, rotation=(-30.0, 30.0))
    assert scene.count == 12

    def text(c):
        with open(sources.kanji_file(c), encoding="utf-8") as f:
            body = f.read()
        # the strokes only: the stroke numbers are text, not drawing
        return re.sub(r'<g id="kvg:StrokeNumbers.*?</g>', "", body, flags=re.S)

    assert check_pen(scene, sources.KANJI_EM, text, range(12)) <= 0.1
    assert check_coverage(scene, np.arange(12)) < 2e-5


# ----------------------------------------------------------------------------- icons
@needs_icons
@pytest.mark.slow
def test_icons_across_the_set_are_the_round_pen_and_exact():
    """Icons spread over Tabler's 4,577, a filled dot among them: the polygon within 0.1 px of
    the SVG drawn with a round pen (svgelements' curves, arcs and circles), coverage exact."""
    # accessible: a filled dot; stack-front: a filled rhombus wider than the pen
    names = spread(sources.icon_names(), 14) + ("accessible", "stack-front")
    scene = rectbert.scene("icon", icons=names, rotation=(-30.0, 30.0))
    rows = range(scene.count)
    assert check_pen(scene, sources.ICON_EM, sources.icon_text, rows) <= 0.1
    assert check_coverage(scene, np.arange(scene.count)) < 2e-5


@needs_icons
@pytest.mark.slow
def test_icon_categories_are_the_files_own():
    cats = {}
    dist = importlib.metadata.distribution("pytablericons")
    for f in dist.files:
        m = re.fullmatch(r"pytablericons/icons/outline/(.+)\.svg", str(f))
        if m:
            head = dist.locate_file(f).read_text(encoding="utf-8").split("-->")[0]
            c = re.search(r"(?im)^category: (.*)", head)  # two write Category:
            cats[m.group(1)] = c.group(1).strip() if c else ""
    assert len(cats) == 4577
    food = sorted(n for n, c in cats.items() if c == "Food")
    assert sources.icon_selection(["category:Food"]) == tuple(food)
    assert sources.icon_selection(["category:food", "home"]) == (*food, "home")
    scene = rectbert.scene("icon", icons=("category:Food", "category:Animals"))
    unseen = scene.unseen  # no split: None
    assert unseen() is None
    split = rectbert.scene(
        "icon", icons=("category:Food", "category:Animals", "category:Mood"),
        unseen_categories=("Animals",),
    )  # fmt: skip
    held = split.unseen()
    assert {cats[n] for n in held.library.names} == {"Animals"}
    assert {cats[n] for n in split.library.names} == {"Food", "Mood"}
    for shape in held.library.shapes:  # not one held-out icon within 0.1 px of a trained one
        for other in split.library.shapes:
            assert shapely.hausdorff_distance(shape.boundary, other.boundary) > 0.1 / 224


@needs_icons
@pytest.mark.parametrize(
    "opts, field, says",
    [
        ({"icons": ("nope",)}, "icons", "Tabler has no outline icon 'nope'"),
        ({"icons": ("category:Nope",)}, "icons", "Tabler has no icon category 'Nope'"),
        ({"unseen_categories": ("Nope",)}, "unseen_categories", "Tabler's categories: ["),
        ({"icons": ("category:Food",), "unseen_categories": ("Food",)}, "unseen_categories",
         "holds out every one"),
        ({"icons": ("category:Food",), "unseen_categories": ("Animals",)}, "unseen_categories",
         "holds out none"),
    ],
)  # fmt: skip
def test_icon_refusals_in_one_line(opts, field, says):
    refused_in_one_line("icon", opts, field, says)


def test_icons_refused_without_the_extra(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    for fn in (sources.icon_names, sources._icon_set, sources.icon_categories):
        fn.cache_clear()
    from rectbert.scenes import icon

    icon._icon_library.cache_clear()
    try:
        with pytest.raises(config.ConfigError, match=r"pip install -e '\.\[icons\]'") as e:
            rectbert.scene("icon")
        assert "\n" not in str(e.value)
    finally:
        for fn in (sources.icon_names, sources._icon_set, sources.icon_categories):
            fn.cache_clear()
        icon._icon_library.cache_clear()


# ----------------------------------------------------------------------------- glyph
def test_every_glyph_of_several_fonts():
    from HersheyFonts import HersheyFonts

    want = []
    for font in ("futural", "greek"):
        h = HersheyFonts()
        h.load_default_font(font)
        drawn = [c for c in h.all_glyphs if not c.isspace()]
        want += [f"{font}:{c}" for c in drawn if any(len(s) > 1 for s in h.strokes_for_text(c))]
    with pytest.warns(rectbert.warn.RectbertWarning, match="repeat an earlier one"):
        scene = rectbert.scene("glyph", font=("futural", "greek"), glyphs="all")
    names = scene.library.names
    assert set(names) <= set(want) and len(names) > 100  # repeats merged (greek's A is futural's)
    assert names == tuple(n for n in want if n in set(names))  # font-major, the font's order
    rows = np.linspace(0, scene.count - 1, 20).round().astype(int)
    assert check_coverage(scene, rows) < 2e-5


# ----------------------------------------------------------------------------- the split
def sha_number(name: str) -> float:
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:16], 16) / 2**64


def test_hash_split_is_sha256_of_the_name_and_disjoint():
    scene = rectbert.scene("glyph", glyphs="all", unseen_fraction=0.25)
    whole = set(scene.library.names) | set(scene.unseen().library.names)
    held = scene.unseen().library.names
    assert set(held) == {n for n in whole if sha_number(n) < 0.25}
    assert not set(held) & set(scene.library.names)
    # by polygon too: every held-out drawing farther than 0.1 px (at the largest size) from
    # every training one, by shapely's Hausdorff distance of their boundaries, all pairs
    within = 0.1 / scene.glyph_size[1]
    for shape in scene.unseen().library.shapes:
        for other in scene.library.shapes:
            assert shapely.hausdorff_distance(shape.boundary, other.boundary) > within
    # stable across versions of the set: the same names held out of a larger set
    bigger = rectbert.scene("glyph", glyphs="all", font=("futural", "timesr"), unseen_fraction=0.25)
    assert set(held) <= set(bigger.unseen().library.names)


@needs_kanji
def test_kanji_hash_split_hand_computed():
    # SHA-256 numbers under 0.2 of the default 30 kanji, computed once by hand (hashlib)
    scene = rectbert.scene("kanji", unseen_fraction=0.2)
    assert scene.unseen().library.names == ("二", "七", "八", "口", "月", "水", "下", "右")
    assert scene.count == 22 and scene.unseen().unseen() is None
    assert "part" not in scene.record()
    again = rectbert.scenes.from_record(scene.record())
    assert again.library.names == scene.library.names


@pytest.mark.parametrize(
    "opts, field, says",
    [
        ({"unseen_fraction": 1.0}, "unseen_fraction", "in [0, 1)"),
        ({"unseen_fraction": -0.1}, "unseen_fraction", "in [0, 1)"),
        ({"glyphs": "AB", "unseen_fraction": 0.01}, "unseen_fraction", "holds out none"),
        ({"glyphs": "ALL"}, "glyphs", "'all' in lower case for every glyph"),
        ({"unseen_glyphs": "Z", "glyphs": "ABC", "unseen_fraction": 0.5}, "unseen_fraction",
         "one way of holding out at a time"),
    ],
)  # fmt: skip
def test_split_refusals_in_one_line(opts, field, says):
    refused_in_one_line("glyph", opts, field, says)


def test_a_held_drawing_that_is_a_trained_one_turned_trains():
    # futural's u is its n turned half a turn (test_drawings_unseen checks it with shapely);
    # SHA-256 numbers (hashlib, by hand): n 0.346, O 0.258, u 0.605, H 0.832. Held out at 0.5:
    # n and O upright; where placing turns a drawing half a turn, n is u and trains
    from tests.test_drawings_unseen import same

    upright = rectbert.scene("glyph", glyphs="nuHO", unseen_fraction=0.5)
    turning = rectbert.scene("glyph", glyphs="nuHO", unseen_fraction=0.5, rotation=(-90.0, 90.0))
    assert upright.unseen().library.names == ("futural:n", "futural:O")
    assert turning.unseen().library.names == ("futural:O",)
    assert "futural:n" in turning.library.names
    for shape in turning.unseen().library.shapes:
        for other in turning.library.shapes:
            turned = [shapely.affinity.rotate(other, t, origin=(0, 0)) for t in (90, -90, 180)]
            assert not any(same(shape, centred(t)) for t in [other, *turned])


def centred(shape):
    x0, y0, x1, y1 = shape.bounds
    return shapely.affinity.translate(shape, -(x0 + x1) / 2, -(y0 + y1) / 2)


@pytest.mark.slow
def test_hash_split_end_to_end(tmp_path):
    """A tiny run on a hash split: the unseen drawings' metrics and figure, and load_run gives
    the training part, whose unseen() is the held-out part, by name as SHA-256 says."""
    import json

    from experiments import cli
    from rectbert.recipes import sparse
    from tests.conftest import TINY, TINY_CODEBOOK

    workdir = tmp_path / "run"
    flags = ["--scene=glyph", "--unseen_fraction=0.3", "--num_train_rects=0"]
    cli.run(sparse, f"--workdir={workdir}", "--num_steps=3", "--dense_spacing=48", *TINY,
            *TINY_CODEBOOK, *flags)  # fmt: skip
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/unseen_masked_accuracy" in r for r in rows)
    assert (workdir / "figures" / "unseen_rendering.png").exists()
    run = rectbert.load_run(str(workdir))
    held = {
        f"futural:{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if sha_number(f"futural:{c}") < 0.3
    }
    assert set(run.scene.unseen().library.names) == held
    assert not held & set(run.scene.library.names) and run.scene.count == 26 - len(held)


@needs_icons
def test_one_drawing_written_two_ways_is_one_drawing():
    # Tabler's brand-vsco and poker-chip draw the same circles and strokes in another order:
    # their true drawings (svgelements, shapely) are one region, so the set keeps one
    a, b = (pen_region(sources.icon_text(n), 2.0) for n in ("brand-vsco", "poker-chip"))
    assert shapely.symmetric_difference(a, b).area < 1e-6 * a.area
    with pytest.warns(rectbert.warn.RectbertWarning, match="poker-chip is brand-vsco"):
        scene = rectbert.scene("icon", icons=("brand-vsco", "poker-chip", "home"))
    assert scene.library.names == ("brand-vsco", "home")


def pen_region(text: str, width: float):
    strokes, filled = true_drawing(text)
    parts = [shapely.LineString(s).buffer(width / 2, quad_segs=16) for s in strokes]
    return shapely.union_all(parts + [Polygon(f).buffer(width / 2, quad_segs=16) for f in filled])


def test_an_option_of_several_families_names_them_all():
    from experiments import cli
    from rectbert.recipes import sparse
    from tests.conftest import build

    with pytest.raises(cli.Error) as e:
        build(sparse, "--scene=rect", "--unseen_fraction=0.5")
    assert str(e.value).endswith("unset with --scene=rect (an option of glyph, icon, kanji)")


@needs_kanji
def test_one_drawing_moved_in_its_box_is_one_drawing():
    # KanjiVG draws ⻖ as 阝 moved 27.711864 units to the left (its paths, by hand): the round
    # pen's polygon must not depend on where in the box the drawing sits
    paths = [sources._kanji_paths(c) for c in "⻖阝"]
    first = [tuple(map(float, re.findall(r"-?[\d.]+", p.split()[1]))) for p in paths[0]]
    again = [tuple(map(float, re.findall(r"-?[\d.]+", p[1:].split("c")[0]))) for p in paths[1]]
    assert np.allclose(np.subtract(again, first), [27.711864, 0.0])
    with pytest.warns(rectbert.warn.RectbertWarning, match="阝 is ⻖"):
        scene = rectbert.scene("kanji", kanji="⻖阝口")
    assert scene.library.names == ("⻖", "口")


def test_a_chain_of_turned_drawings_leaves_none_held_that_trains():
    # Hershey's markers draws L, M, N, O as quarter turns of one another: where three are held
    # out and placing turns them, moving one to training must move the next as well
    scene = rectbert.scene("glyph", font=("markers",), glyphs="all", glyph_size=(64.0, 96.0),
                           unseen_fraction=0.7, rotation=(-60.0, 60.0))  # fmt: skip
    within = 0.1 / scene.glyph_size[1]
    for shape in scene.unseen().library.shapes:
        for other in scene.library.shapes:
            for t in (0, 90, -90, 180):
                turned = centred(shapely.affinity.rotate(other, t, origin=(0, 0)))
                assert shapely.hausdorff_distance(shape.boundary, turned.boundary) > within
