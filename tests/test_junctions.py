"""The junction finder (geometry/lines.py) against junction sets worked out by hand: small
drawings made here (L, T, Y, X, rings, a stroke ending on another, the corner angle, merging),
then real Hershey capitals of futural and two KanjiVG kanji, whose polylines are read from the
fonts and whose junctions are counted here by eye from the coordinates (comments say how).
Compared order-free; a junction is an end of an open stroke, a vertex turning sharper than the
corner angle, or a point where two strokes touch or cross."""

import math

import numpy as np
import pytest
from shapely.geometry import LineString

import rectbert
from rectbert.geometry import lines, sources
from tests.conftest import installed

needs_kanji = pytest.mark.skipif(not installed("kanji"), reason="needs the kanji extra")


def same_set(got, want, atol=1e-9, what=""):
    """got and want hold the same points, in any order: as many, each of one within atol of
    one of the other (the points of each set lie far further apart than atol)."""
    got = np.asarray(got, np.float64).reshape(-1, 2)
    want = np.asarray(want, np.float64).reshape(-1, 2)
    assert len(got) == len(want), f"{what}: {len(got)} junctions {got.tolist()}, want {want}"
    if not len(want):
        return
    d = np.linalg.norm(got[:, None] - want[None], axis=-1)
    assert np.all(d.min(0) <= atol), f"{what}: missing {want[d.min(0) > atol].tolist()}"
    assert np.all(d.min(1) <= atol), f"{what}: extra {got[d.min(1) > atol].tolist()}"
    assert np.all(np.sum(d <= atol, 0) == 1), f"{what}: a junction found twice {got.tolist()}"


def poly(*xy):
    return np.array(xy, np.float64)


# ----------------------------------------------------------------------------- made here
CIRCLE = poly(*[(10 * math.cos(t), 10 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 37)])
SQUARE = poly((0, 0), (10, 0), (10, 10), (0, 10), (0, 0))
HAND_MADE = {
    # one polyline turning by 90 degrees: both ends and the corner
    "L, one polyline": ([poly((0, 0), (10, 0), (10, 10))], [(0, 0), (10, 0), (10, 10)]),
    # the same L as two strokes meeting end to end: the shared end once
    "L, two strokes": (
        [poly((0, 0), (10, 0)), poly((10, 0), (10, 10))],
        [(0, 0), (10, 0), (10, 10)],
    ),
    # a bar and a stem ending on its middle (no vertex of the bar there)
    "T": (
        [poly((0, 10), (20, 10)), poly((10, 10), (10, 0))],
        [(0, 10), (20, 10), (10, 10), (10, 0)],
    ),
    # three strokes leaving one point
    "Y": (
        [poly((0, 0), (0, 10)), poly((0, 0), (-8, -6)), poly((0, 0), (8, -6))],
        [(0, 0), (0, 10), (-8, -6), (8, -6)],
    ),
    # two strokes crossing at (5, 5), a vertex of neither
    "X": (
        [poly((0, 0), (10, 10)), poly((0, 10), (10, 0))],
        [(0, 0), (10, 10), (0, 10), (10, 0), (5, 5)],
    ),
    # a closed 36-gon: every vertex turns by 10 degrees (meets at 170), its seam included
    "smooth ring": ([CIRCLE], []),
    # a closed square: its four corners, the seam (0, 0) once
    "square ring": ([SQUARE], [(0, 0), (10, 0), (10, 10), (0, 10)]),
    # a diagonal stem ending mid-segment on a slanted stroke (y = x / 3 at x = 12), and another
    # ending on a straight-on vertex (10, 0) of a three-vertex stroke: no corner there, but a
    # meeting
    "stroke ending on another": (
        [poly((0, 0), (30, 10)), poly((12, 4), (15, -6))],
        [(0, 0), (30, 10), (12, 4), (15, -6)],
    ),
    "stroke ending on a straight vertex": (
        [poly((0, 0), (10, 0), (20, 0)), poly((10, 0), (10, 5))],
        [(0, 0), (20, 0), (10, 0), (10, 5)],
    ),
    # crossings at a straight-on vertex: of one stroke (the other crosses mid-segment), and of
    # both (a vertex each, no end or corner there): found as meetings only
    "crossing at a vertex of one": (
        [poly((0, 0), (10, 0), (20, 0)), poly((10, -5), (10, 5))],
        [(0, 0), (20, 0), (10, -5), (10, 5), (10, 0)],
    ),
    "crossing at a vertex of both": (
        [poly((0, 0), (10, 0), (20, 0)), poly((10, -5), (10, 0), (10, 5))],
        [(0, 0), (20, 0), (10, -5), (10, 5), (10, 0)],
    ),
    # a line through a square ring: its ends, the ring's corners and the two crossings
    "line through a ring": (
        [SQUARE, poly((-5, 5), (15, 5))],
        [(0, 0), (10, 0), (10, 10), (0, 10), (-5, 5), (15, 5), (0, 5), (10, 5)],
    ),
    # strokes near one another but touching nowhere: their ends only
    "apart": ([poly((0, 0), (10, 0)), poly((0, 1), (10, 1))], [(0, 0), (10, 0), (0, 1), (10, 1)]),
}


@pytest.mark.parametrize("name", list(HAND_MADE))
def test_junctions_of_hand_made_drawings(name):
    strokes, want = HAND_MADE[name]
    same_set(lines.junctions(strokes), want, what=name)


def test_a_bend_is_a_corner_only_under_the_corner_angle():
    # the segments meet at 150 degrees at (10, 0) (the stroke turns by 30)
    turn = math.radians(30)
    bend = [poly((0, 0), (10, 0), (10 + 10 * math.cos(turn), 10 * math.sin(turn)))]
    ends = [(0, 0), tuple(bend[0][-1])]
    same_set(lines.junctions(bend, corner_angle=120.0), ends, what="at 120")
    same_set(lines.junctions(bend, corner_angle=170.0), [*ends, (10, 0)], what="at 170")
    same_set(lines.junctions(bend, corner_angle=180.0), [*ends, (10, 0)], what="at 180")
    # the same angle inside a closed ring (a triangle's corners meet at 60): corners() too
    tri = poly((0, 0), (10, 0), (5, 5 * math.sqrt(3)))
    same_set(lines.corners(tri, 70.0), tri, what="triangle at 70")
    same_set(lines.corners(tri, 50.0), [], what="triangle at 50")
    # a square's corners (90) but not the straight-on midpoints of its sides (180)
    square_mid = poly((0, 0), (5, 0), (10, 0), (10, 10), (0, 10))
    same_set(lines.corners(square_mid, 120.0), SQUARE[:4], what="square with midpoint")


def test_candidates_nearer_than_merge_are_one_at_their_mean():
    # two ends 0.5 apart: (10, 0) of one stroke, (10.5, 0) of another that does not touch it
    strokes = [poly((0, 0), (10, 0)), poly((10.5, 0), (10.5, 10))]
    same_set(lines.junctions(strokes), [(0, 0), (10, 0), (10.5, 0), (10.5, 10)], what="merge 0")
    same_set(lines.junctions(strokes, merge=0.4), [(0, 0), (10, 0), (10.5, 0), (10.5, 10)])
    same_set(lines.junctions(strokes, merge=1.0), [(0, 0), (10.25, 0), (10.5, 10)], what="merge 1")
    # single linkage: three ends 0.8 apart in a chain (the outer two 1.6) are one, at the mean
    chain = [poly((0, 0), (10, 0)), poly((10.8, 0), (10.8, 10)), poly((11.6, 0), (20, 0))]
    same_set(
        lines.junctions(chain, merge=1.0), [(0, 0), (10.8, 0), (10.8, 10), (20, 0)], what="chain"
    )


# ----------------------------------------------------------------------------- Hershey
# futural's capitals in font units (y down), read from hershey_strokes("futural", c):
HERSHEY = {
    # legs (9,-12)-(1,9) and (9,-12)-(17,9), bar (4,2)-(14,2): the bar's ends are a third of a
    # unit inside the legs (at y = 2 the legs are at x = 3.67 and 14.33), so they touch nothing
    "A": [(9, -12), (1, 9), (17, 9), (4, 2), (14, 2)],
    # stem (4,-12)-(4,9) and a bowl from (4,-12) round to (4,9): its vertices turn by at most
    # 27 degrees (153 or more), so only the two ends, where it meets the stem
    "D": [(4, -12), (4, 9)],
    # stem (4,-12)-(4,9); arms from (4,-12), (4,-2), (4,9) to x = 17, 12, 17
    "E": [(4, -12), (4, 9), (17, -12), (4, -2), (12, -2), (17, 9)],
    # stems x = 4 and x = 18 from y = -12 to 9, the bar (4,-2)-(18,-2) ending on both
    "H": [(4, -12), (4, 9), (18, -12), (18, 9), (4, -2), (18, -2)],
    # stem (4,-12)-(4,9); the arm (18,-12)-(4,2) ends on it; the leg (9,-3)-(18,9) starts on
    # the arm (x + y = 6 along it)
    "K": [(4, -12), (4, 9), (18, -12), (4, 2), (9, -3), (18, 9)],
    # stem (4,-12)-(4,9) and foot (4,9)-(16,9): two strokes meeting end to end
    "L": [(4, -12), (4, 9), (16, 9)],
    # one closed polyline of 20 vertices, each turning by at most 27 degrees: nothing
    "O": [],
    # stem (4,-12)-(4,9) and a bowl from (4,-12) to (4,-1) turning gently (153 or more): the
    # bowl's end meets the stem mid-segment
    "P": [(4, -12), (4, 9), (4, -1)],
    # stem (8,-12)-(8,9) hanging from the middle of the bar (1,-12)-(15,-12)
    "T": [(8, -12), (8, 9), (1, -12), (15, -12)],
    # (3,-12)-(17,9) and (17,-12)-(3,9) cross half way, at (10, -1.5)
    "X": [(3, -12), (17, 9), (17, -12), (3, 9), (10, -1.5)],
    # the polyline (1,-12),(9,-2),(9,9) bends by 39 degrees (meets at 141: no corner at 120);
    # the arm (17,-12)-(9,-2) ends on that bend
    "Y": [(1, -12), (17, -12), (9, -2), (9, 9)],
}
HERSHEY_PEN = 0.08 * sources.HERSHEY_EM  # the glyph scene's default stroke, in font units


@pytest.mark.parametrize("char", list(HERSHEY))
def test_hershey_capitals_junctions_by_hand(char):
    strokes = sources.hershey_strokes("futural", char)
    same_set(lines.junctions(strokes, 120.0, HERSHEY_PEN), HERSHEY[char], atol=1e-9, what=char)


def test_glyph_library_junctions_are_the_hand_counted_ones_centred():
    """The scene's library: its centrelines are the font's strokes in ems moved by the
    drawing's centre, and its padded junction table holds the hand-counted junctions there."""
    chars = "".join(HERSHEY)
    lib = rectbert.scene("glyph", glyphs=chars).library
    assert lib.names == tuple(f"futural:{c}" for c in chars)
    assert lib.pen == pytest.approx(0.08)
    table, counts = lib.junctions(120.0)
    for g, c in enumerate(chars):
        em, centre = sources.HERSHEY_EM, lib.centres[g]
        raw = sources.hershey_strokes("futural", c)
        assert len(lib.lines[g]) == len(raw), c
        for mine, theirs in zip(lib.lines[g], raw, strict=True):
            np.testing.assert_allclose(mine, theirs / em - centre, atol=1e-8, err_msg=c)
        want = np.asarray(HERSHEY[c], np.float64).reshape(-1, 2) / em - centre
        assert counts[g] == len(want), (c, counts[g])
        same_set(table[g, : counts[g]], want, atol=1e-6, what=c)  # float32 ems


# ----------------------------------------------------------------------------- KanjiVG
KANJI_PEN = 0.08 * sources.KANJI_EM  # the kanji scene's default stroke, in KanjiVG units


def kanji_hand(char: str, tolerance: float = 0.01):
    """The junctions of 十 and 人 worked out from KanjiVG's two strokes each: their four ends
    (the paths' first and last points), and for 十 the one crossing (shapely's intersection of
    the flattened curves). Both are drawn as gentle curves (no vertex turns by more than 7
    degrees), and 人's strokes do not touch (2.2 units apart, so its second stroke's start is
    the junction where they nearly meet)."""
    strokes = sources.kanji_strokes(char, tolerance)
    assert len(strokes) == 2, char
    ends = [s[i] for s in strokes for i in (0, -1)]
    a, b = (LineString(s) for s in strokes)
    meet = a.intersection(b)
    if char == "十":
        assert meet.geom_type == "Point", meet
        return strokes, [*ends, (meet.x, meet.y)]
    assert meet.is_empty and a.distance(b) > 2.0, (char, a.distance(b))
    return strokes, ends


@needs_kanji
@pytest.mark.parametrize("char", ["十", "人"])
def test_kanji_junctions_by_hand(char):
    strokes, want = kanji_hand(char)
    # the paths start where KanjiVG's SVG says (M x,y)
    first = {"十": [(11.88, 50.98), (52.22, 11.63)], "人": [(54.5, 20.0), (46.0, 54.25)]}[char]
    np.testing.assert_allclose([s[0] for s in strokes], first, atol=1e-9)
    same_set(lines.junctions(strokes, 120.0, KANJI_PEN), want, atol=1e-6, what=char)
    lib = rectbert.scene("kanji", kanji="十人").library
    g = lib.names.index(char)
    table, counts = lib.junctions(120.0)
    centred = np.asarray(want) / sources.KANJI_EM - lib.centres[g]
    # the library flattens more finely than 0.01 units: the crossing moves by less than that
    same_set(table[g, : counts[g]], centred, atol=2e-4, what=f"{char} in the library")


def test_junctions_of_no_strokes_and_of_points_are_none():
    assert lines.junctions([]).shape == (0, 2)
    assert lines.junctions([poly((1, 1)), poly((2, 2), (2, 2))]).shape == (0, 2)


@needs_kanji
def test_a_corner_drawn_as_a_tight_curve_is_one_junction_at_its_sharpest():
    # KanjiVG's 口: stroke 1 down the left, stroke 2 along the top and down the right (its
    # corner a tight curve: no vertex turns by more than about 17 degrees), stroke 3 along the
    # bottom. By hand: the strokes' ends meet in pairs at three corners (each junction the
    # mean of the two ends, within a stroke width of each other), and the curve's corner is
    # one junction on stroke 2 near where it turns most
    s = sources.kanji_strokes("口", 0.01)
    assert len(s) == 3
    step = np.diff(s[1], axis=0)
    heading = np.degrees(np.arctan2(step[:, 1], step[:, 0]))
    assert np.abs(np.diff(heading)).max() < 20  # no single sharp vertex anywhere
    turn = s[1][np.argmax(np.abs(np.diff(heading))) + 1]
    pairs = [(s[0][0], s[1][0]), (s[0][-1], s[2][0]), (s[1][-1], s[2][-1])]
    want = [(a + b) / 2 for a, b in pairs]
    got = lines.junctions(s, 120.0, KANJI_PEN)
    assert len(got) == 4, got
    ends = [g for g in got if min(np.linalg.norm(g - w) for w in want) < 1e-6]
    assert len(ends) == 3, got
    corner = [g for g in got if min(np.linalg.norm(g - w) for w in want) >= 1e-6][0]
    assert np.min(np.linalg.norm(s[1] - corner, axis=-1)) < 1e-9  # a vertex of stroke 2
    assert np.linalg.norm(corner - turn) < 4.0, (corner, turn)  # within half a stroke width
    # a right angle is not under 90 degrees: then only the three meetings
    assert len(lines.junctions(s, 90.0, KANJI_PEN)) == 3


def test_a_point_found_twice_counts_once_in_a_merged_junction():
    # the stem's end lies on the bar (an end and a meeting: one point found twice) and a third
    # stroke ends 0.5 from it: the junction is the mean of the two distinct points, by hand
    bar, stem, other = (
        poly((0, 10), (20, 10)),
        poly((10, 10), (10, 0)),
        poly((10.3, 10.4), (10.3, 20)),
    )
    got = lines.junctions([bar, stem, other], 120.0, merge=1.0)
    same_set(got, [(0, 10), (20, 10), (10, 0), (10.3, 20), (10.15, 10.2)], atol=1e-12, what="T")
