"""A drawing is told from another by its polygon, not its name: an unseen set that shares a
drawing with the training set is refused, and a set that repeats a drawing keeps it once. The
references are the fonts' raw strokes and shapely's symmetric difference of two polygons."""

import string
import warnings

import numpy as np
import pytest
import shapely
import shapely.affinity

import rectbert
from experiments import cli
from rectbert import config, warn
from rectbert.geometry import drawings, sources
from rectbert.recipes import sparse
from rectbert.scenes import glyph
from tests.conftest import build, installed

# Hand-checked: the greek capitals (by the key typed) drawn as a Latin capital of futural,
# greek -> Latin: Alpha ... Zeta as themselves, Rho (typed R) as P, Chi (typed C) as X
GREEK_AS_LATIN = dict(zip("ABEHIKMNOTZRC", "ABEHIKMNOTZPX", strict=True))


def same(a, b) -> bool:
    """Two polygons cover the same region (shapely: their symmetric difference is empty)."""
    return shapely.symmetric_difference(a, b).area < 1e-9 * max(a.area, b.area)


def polygon(font: str, char: str):
    """The centred em-unit polygon of one glyph, from a set of that glyph alone."""
    return rectbert.scene("glyph", font=(font,), glyphs=char).library.shapes[0]


def polygons(font: str, chars: str) -> dict:
    return {c: polygon(font, c) for c in chars}


def refused(field: str, **opts) -> str:
    with pytest.raises(config.ConfigError) as e:
        rectbert.scene("glyph", **opts)
    assert e.value.field == field and "\n" not in str(e.value)
    return e.value.allowed


@pytest.fixture
def fresh_warnings(monkeypatch):
    """warn_once and the libraries' cache as in a new process (each set warns once)."""
    monkeypatch.setattr(warn, "_WARNED", set())
    glyph._hershey_library.cache_clear()
    yield
    glyph._hershey_library.cache_clear()


def test_rowmans_capitals_are_futurals_so_rowmans_is_not_unseen():
    from HersheyFonts import HersheyFonts

    def raw(font):
        h = HersheyFonts()
        h.load_default_font(font)
        return [[list(s) for s in h.strokes_for_text(c)] for c in string.ascii_uppercase]

    assert raw("rowmans") == raw("futural")
    allowed = refused("unseen_fonts", glyphs="ABC", unseen_fonts=("rowmans",))
    assert allowed.endswith(
        "(these are in it: rowmans:A is futural:A, rowmans:B is futural:B, rowmans:C is futural:C)"
    )
    assert allowed.startswith("drawings outside the training set")
    assert "and 20 more" in refused("unseen_fonts", unseen_fonts=("rowmans",))
    # the command line's line, before any compute
    with pytest.raises(cli.Error, match=r"^--unseen_fonts=rowmans is not allowed: drawings ") as e:
        build(sparse, "--scene=glyph", "--glyphs=ABC", "--unseen_fonts=rowmans")
    assert "rowmans:B is futural:B" in str(e.value) and "\n" not in str(e.value)


def test_greek_capitals_drawn_as_latin_ones():
    # the reference: every pair of capitals, compared by shapely
    latin = polygons("futural", string.ascii_uppercase)
    greek = polygons("greek", string.ascii_uppercase)
    found = {g: c for g, a in greek.items() for c, b in latin.items() if same(a, b)}
    assert found == GREEK_AS_LATIN
    allowed = refused("unseen_fonts", unseen_fonts=("greek",))
    assert "greek:C is futural:X" in allowed and "and 7 more" in allowed  # 13 in all
    # no name in common, two drawings in common
    allowed = refused("unseen_glyphs", glyphs="PX", unseen_fonts=("greek",), unseen_glyphs="RC")
    assert allowed.endswith("(these are in it: greek:R is futural:P, greek:C is futural:X)")
    # greek's P (Pi) and X (Xi) are new drawings; so are the greek letters that look Latin
    # beside a training set without those Latin ones
    assert rectbert.scene("glyph", glyphs="PX", unseen_fonts=("greek",)).unseen().count == 2
    others = "".join(c for c in string.ascii_uppercase if c not in GREEK_AS_LATIN.values())
    held = rectbert.scene(
        "glyph", glyphs=others, unseen_fonts=("greek",), unseen_glyphs="".join(GREEK_AS_LATIN)
    )
    assert held.unseen().count == 13


def test_futurals_l_is_its_I_and_underscore_its_hyphen():
    assert same(polygon("futural", "l"), polygon("futural", "I"))
    assert same(polygon("futural", "_"), polygon("futural", "-"))  # centred: one bar
    allowed = refused("unseen_glyphs", unseen_glyphs="l")
    assert allowed.endswith("(these are in it: futural:l is futural:I)")
    assert "futural:_ is futural:-" in refused("unseen_glyphs", glyphs="-", unseen_glyphs="_")
    # every other small letter is a drawing the capitals do not have
    small = polygons("futural", string.ascii_lowercase.replace("l", ""))
    capitals = polygons("futural", string.ascii_uppercase).values()
    assert not any(same(a, b) for a in small.values() for b in capitals)
    assert rectbert.scene("glyph", unseen_glyphs="".join(small)).unseen().count == 25


def test_the_same_region_drawn_by_other_strokes_is_the_same_drawing():
    """futuram's and timesib's asterisks cover one region with other vertices (collinear ones
    where strokes meet): one drawing, whatever the vertices."""
    a, b = polygon("futuram", "*"), polygon("timesib", "*")
    raw = [drawings.outline([s / 32 for s in sources.hershey_strokes(f, "*")], 0.08) for f in
           ("futuram", "timesib")]  # fmt: skip
    assert same(a, b) and len(raw[0].exterior.coords) != len(raw[1].exterior.coords)
    allowed = refused("unseen_fonts", font=("futuram",), glyphs="*", unseen_fonts=("timesib",))
    assert allowed.endswith("(these are in it: timesib:* is futuram:*)")


def region(rings):
    """The region outlines() bound: counter-clockwise rings add, clockwise ones cut holes."""
    ccw = [shapely.LinearRing(r).is_ccw for r in rings]
    add = shapely.union_all([shapely.Polygon(r) for r, c in zip(rings, ccw, strict=True) if c])
    cut = shapely.union_all([shapely.Polygon(r) for r, c in zip(rings, ccw, strict=True) if not c])
    return add.difference(cut)


def test_a_set_keeps_a_repeated_drawing_once(fresh_warnings):
    with pytest.warns(warn.RectbertWarning, match=r"1 of the 3 .* futural:l is futural:I$"):
        scene = rectbert.scene("glyph", glyphs="IlO")
    assert scene.library.names == ("futural:I", "futural:O") and scene.count == 2
    shape_of = {"futural:I": polygon("futural", "I"), "futural:O": polygon("futural", "O")}
    # the prior's index, the names and outlines (figures), the oracle's mixture: two drawings
    rows = np.array([[0, 150, 0, 128, 128], [1, 140, 0, 100, 120], [2, 140, 0, 100, 120]], float)
    assert scene.support()[0].tolist() == [0.0, 1.0]
    scene.check(rows[:2])
    with pytest.raises(ValueError, match=r"column 0 in \[0, 1\]; row 2 has 2"):
        scene.check(rows)
    assert [scene.name_of(r) for r in rows[:2]] == ["futural:I", "futural:O"]
    want = shapely.affinity.scale(shape_of["futural:O"], 140, 140, origin=(0, 0))
    want = shapely.affinity.translate(want, 100, 120)
    assert shapely.symmetric_difference(region(scene.outlines(rows[1])), want).area < 1e-2
    log_p, scene_of = scene.component_batch()
    assert len(scene.components()) == 2 and np.allclose(log_p, np.log(1 / 2))
    drawn = region(scene_of(1).outlines(rows[1, [1, 3, 4]]))  # upright: (size, x, y)
    assert shapely.symmetric_difference(drawn, want).area < 1e-2  # of O's ~2,900 px^2
    # two fonts whose capitals are one: the first kept, 26 drawings
    with pytest.warns(
        warn.RectbertWarning, match=r"26 of the 52 .*rowmans:A is futural:A.* 20 more"
    ):
        both = rectbert.scene("glyph", font=("futural", "rowmans"))
    assert both.library.names == tuple(f"futural:{c}" for c in string.ascii_uppercase)
    assert both.support()[0].tolist() == [0.0, 25.0]
    # futural and greek: the 13 greek capitals that are Latin ones left out
    with pytest.warns(warn.RectbertWarning, match=r"13 of the 52 .*greek:C is futural:X"):
        mixed = rectbert.scene("glyph", font=("futural", "greek"))
    greek = [n[-1] for n in mixed.library.names if n.startswith("greek:")]
    assert mixed.count == 39 and set(greek) == set(string.ascii_uppercase) - set(GREEK_AS_LATIN)


@pytest.mark.skipif(not installed("kanji"), reason="kanji needs its extra")
def test_kanji_are_told_apart_by_polygon_too(monkeypatch):
    """KanjiVG draws the radical U+2E89 as the character U+5202 (both 刂)."""
    from rectbert.scenes import kanji

    radical, char = "\u2e89", "\u5202"
    shapes = [rectbert.scene("kanji", kanji=c).library.shapes[0] for c in (radical, char)]
    assert same(*shapes)
    with pytest.raises(config.ConfigError) as e:
        rectbert.scene("kanji", kanji=char + "一", unseen_kanji=radical)
    assert e.value.field == "unseen_kanji" and e.value.allowed.endswith(f"{radical} is {char})")
    monkeypatch.setattr(warn, "_WARNED", set())
    kanji._kanji_library.cache_clear()
    with pytest.warns(warn.RectbertWarning, match=f"{radical} is {char}$"):
        scene = rectbert.scene("kanji", kanji=char + "一" + radical)
    assert scene.library.names == (char, "一")


def test_a_drawing_the_scene_turns_into_a_trained_one_is_not_unseen():
    # futural's u is its n turned half a turn (shapely: the turned n, re-centred, covers the
    # u's region): unseen upright, not where the scene places both at angles 180 apart
    n, u = polygon("futural", "n"), polygon("futural", "u")
    turned = shapely.affinity.rotate(n, 180, origin=(0, 0))
    x0, y0, x1, y1 = turned.bounds
    assert same(shapely.affinity.translate(turned, -(x0 + x1) / 2, -(y0 + y1) / 2), u)
    assert not same(n, u)
    rectbert.scene("glyph", glyphs="n", unseen_glyphs="u")  # upright: never the n
    rectbert.scene("glyph", glyphs="n", unseen_glyphs="u", rotation=(0.0, 90.0))
    allowed = refused("unseen_glyphs", glyphs="n", unseen_glyphs="u", rotation=(-90.0, 90.0))
    assert "futural:u is futural:n turned 180 degrees" in allowed


def test_a_refused_set_is_one_line_its_repeats_said_only_when_it_runs(fresh_warnings, tmp_path):
    # the training set repeats 26 drawings and the unseen l is its I: the command says only
    # its refusal; the same set accepted says its repeats once, as a warning
    args = ["--scene=glyph", "--font=futural,rowmans", f"--workdir={tmp_path / 'run'}"]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(cli.Error, match="futural:l is futural:I"):
            build(sparse, *args, "--unseen_glyphs=l")
        assert not [w for w in said if issubclass(w.category, warn.RectbertWarning)]
        warn._WARNED.clear()  # a new process
        glyph._hershey_library.cache_clear()
        build(sparse, *args)
    told = [str(w.message) for w in said if issubclass(w.category, warn.RectbertWarning)]
    assert len(told) == 1 and told[0].startswith("26 of the 52 drawings repeat"), told


def test_a_held_warning_still_obeys_a_filter_by_module(fresh_warnings, tmp_path):
    # the checks' warnings are issued again after them, from the module that raised them
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module="rectbert")
        build(sparse, "--scene=glyph", "--font=futural,rowmans", f"--workdir={tmp_path / 'run'}")
    assert not [w for w in said if issubclass(w.category, warn.RectbertWarning)]
