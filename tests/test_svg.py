"""rectbert.geometry.svg against svgelements, an independent SVG library: every point of its
dense evaluation of a path lies within the tolerance of our polyline, and our arc and line
vertices lie on its curves, over hand-picked tricky paths and a spread of Tabler icons and
KanjiVG kanji; with hand-computed cases, document reading, malformed input, and every Tabler
outline icon parsed."""

import glob
import importlib.metadata
import io
import math
import os
import re
import time

import numpy as np
import pytest

from rectbert.geometry import svg

DENSE = 2000  # evaluations per segment of the reference curve
EXACT = 1e-9  # rounding allowance: "within tolerance" is within tolerance + EXACT

# Each a trap for a flattener: the four flag combinations of one arc; rotated ellipses (one by
# over 360 degrees); radii too small for the chord (scaled up), negative, zero (a line); an
# arc between equal end points (drawn as nothing); arc flags without separators; S and T after
# commands that are not curves (no reflection), and after their own kind (reflection);
# relative commands after Z (from the subpath's start); numbers run together; implicit
# repeats.
TRICKY = [
    "M10 10 A7 7 0 0 0 20 10",
    "M10 10 A7 7 0 0 1 20 10",
    "M10 10 A7 7 0 1 0 20 10",
    "M10 10 A7 7 0 1 1 20 10",
    "M10 30 A20 10 30 1 1 50 40",
    "M10 30 a20 10 -60 0 0 40 10",
    "M0 0 A10 4 370 1 0 3 8",
    "M0 0 A1 1 0 0 1 10 5",
    "M0 0 A1 2 45 1 0 10 5 a.5.5 0 0 1 -4 -9",
    "M0 0 A-3-2 0 1 1 4 1",
    "M0 0 A0 5 0 0 1 10 10 l3 0",
    "M0 0 L1 1 A5 5 0 1 1 1 1 L2 0",
    "M2 2a.5.5 0 0 1 1 1a1 1 0 011 1a2 1 45 1 0 3-2a3,2,10,1,1,-1,4",
    "M0 0 L5 0 S10 10 15 0",
    "M0 0 h5 s5 10 10 0 s5-10 10 0",
    "M0 0 C0 5 5 5 5 0 S10-5 10 0 l2 2 s3 3 5 0",
    "M0 0 L5 0 T10 0 T15 5",
    "M0 0 Q2.5 5 5 0 T10 0 t5 0 l1 1 t3 3",
    "M5 5h4v4z m2 2 l3 0 c1 1 2 1 3 0z l-2 3 a2 2 0 0 0 4 0 z",
    "M-.5.5L1e1-2e-1 .5.5-.5-.5e1",
    "m1 1 2 2 3 0 0 3z",
    "M0 0 C1 2 3 4 5 0 6 -2 7 4 8 0",
    "M0,0 q1,1 2,0 3,-1 4,0",
    "M1 1H5V3h-2v-1",
    "M12 12m-9 0a9 9 0 1 0 18 0a9 9 0 1 0 -18 0",
    "M0 0 a1e-3 1e-3 0 0 1 2e-3 0",
    "M0 0 C40 -30 -30 -30 10 0",
]


# S after a quadratic and T after a cubic reflect nothing (SVG 1.1, 8.3.6 and 8.3.7: their
# control point is the current point), but svgelements reflects the other kind's control
# point: these are checked against svgelements' reading of the same curves written out.
SPELLED_OUT = [
    ("M0 0 Q5 10 10 0 S15 -10 20 0", "M0 0 Q5 10 10 0 C10 0 15 -10 20 0"),
    ("M0 0 C0 5 5 5 5 0 T10 0 t5 5", "M0 0 C0 5 5 5 5 0 Q5 0 10 0 Q15 0 15 5"),
    ("M0 0 q2 4 4 0 s3 -4 4 0 l1 0 t2 2", "M0 0 q2 4 4 0 c0 0 3 -4 4 0 l1 0 q0 0 2 2"),
]


def _se():
    return pytest.importorskip("svgelements")


def _distances(q: np.ndarray, lines: list[np.ndarray]) -> np.ndarray:
    """Each point's distance to the nearest of the polylines' segments (brute force)."""
    a = np.concatenate([line[:-1] for line in lines])
    ab = np.concatenate([line[1:] for line in lines]) - a
    inv = 1 / np.maximum(ab[:, 0] ** 2 + ab[:, 1] ** 2, 1e-300)
    out = np.empty(len(q))
    step = max(1, 2_000_000 // len(a))
    for i in range(0, len(q), step):  # x and y apart: numpy is slow to sum an axis of 2
        px, py = q[i : i + step, 0, None] - a[:, 0], q[i : i + step, 1, None] - a[:, 1]
        t = np.clip((px * ab[:, 0] + py * ab[:, 1]) * inv, 0.0, 1.0)
        px -= t * ab[:, 0]
        py -= t * ab[:, 1]
        out[i : i + step] = np.sqrt(np.min(px * px + py * py, axis=1))
    return out


def _nearest(q: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each point's distance to the nearest of `points` (brute force)."""
    out = np.empty(len(q))
    step = max(1, 2_000_000 // len(points))
    for i in range(0, len(q), step):
        dx, dy = q[i : i + step, 0, None] - points[:, 0], q[i : i + step, 1, None] - points[:, 1]
        out[i : i + step] = np.sqrt(np.min(dx * dx + dy * dy, axis=1))
    return out


def _reference(d: str):
    """svgelements' dense points of each drawing segment of the path, and each segment."""
    se = _se()
    segments = [s for s in se.Path(d) if not isinstance(s, se.Move)]
    t = np.linspace(0.0, 1.0, DENSE)
    return [(s, np.asarray(s.npoint(t), np.float64).reshape(-1, 2)) for s in segments]


def _off_curve(vertices: np.ndarray, reference) -> np.ndarray:
    """For each vertex, an upper bound on its distance to the reference's lines and arcs
    (inf when it lies on neither): a line's exact distance; for an arc, the distance to the
    point of its ellipse on the same ray from the centre, if that point is on the arc (near
    its dense points). Two corrections to svgelements, both from the SVG spec: an arc with a
    zero radius is a line (svgelements keeps a degenerate arc, its points its two ends); and
    an arc whose radii were scaled up to fit its chord (F.6.6) is centred on the chord's
    midpoint (svgelements takes the square root of the absolute value of the radicand, a
    rounding error there, which moves its centre by about 1e-8 of the radius)."""
    se = _se()
    best = np.full(len(vertices), np.inf)
    for seg, pts in reference:
        start, end = np.array([seg.start.x, seg.start.y]), np.array([seg.end.x, seg.end.y])
        if isinstance(seg, se.Line | se.Close) or (
            isinstance(seg, se.Arc) and (seg.rx == 0 or seg.ry == 0)
        ):
            best = np.minimum(best, _distances(vertices, [np.stack([start, end])]))
        elif isinstance(seg, se.Arc):
            centre = np.array([seg.center.x, seg.center.y])
            if np.linalg.norm(centre - (start + end) / 2) <= 1e-6 * max(seg.rx, seg.ry):
                centre = (start + end) / 2
            phi = float(seg.get_rotation())
            c, s = math.cos(phi), math.sin(phi)
            rel = vertices - centre
            q = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], -1)
            q /= np.array([seg.rx, seg.ry])
            r = np.hypot(q[:, 0], q[:, 1])[:, None]
            x, y = (np.array([seg.rx, seg.ry]) * q / r).T  # on the ellipse, in its axes
            foot = np.stack([c * x - s * y, s * x + c * y], -1) + centre
            spacing = np.max(np.linalg.norm(np.diff(pts, axis=0), axis=1))
            near = _nearest(foot, pts) <= spacing
            gap = np.abs(r[:, 0] - 1) * max(seg.rx, seg.ry)
            best = np.minimum(best, np.where(near, gap, np.inf))
    return best


def _check_path(d: str, tolerance: float, spelled_out: str | None = None):
    """Ours against svgelements (reading `spelled_out` if given, the same path written
    another way): every dense point of the true curve within `tolerance` of our polyline;
    every vertex near the dense curve, and on it (to EXACT) where the path has only lines
    and arcs."""
    se = _se()
    ours = svg.path(d, tolerance)
    reference = _reference(spelled_out or d)
    if not reference:
        assert ours == []
        return
    dense = np.concatenate([pts for _, pts in reference])
    gap = _distances(dense, ours)
    assert gap.max() <= tolerance + EXACT, (d, gap.max(), tolerance)
    # the reverse: no vertex strays from the curve (up to the dense sampling's spacing)
    spacing = max(np.max(np.linalg.norm(np.diff(p, axis=0), axis=1)) for _, p in reference)
    vertices = np.concatenate(ours)
    back = _nearest(vertices, dense)
    assert back.max() <= spacing + EXACT, (d, back.max())
    if all(isinstance(s, se.Line | se.Close | se.Arc) for s, _ in reference):
        off = _off_curve(vertices, reference)
        assert off.max() <= EXACT, (d, vertices[np.argmax(off)], off.max())


@pytest.mark.parametrize("d", TRICKY)
@pytest.mark.parametrize("tolerance", [0.01, 0.3])
def test_tricky_paths_match_svgelements(d, tolerance):
    _check_path(d, tolerance)


@pytest.mark.parametrize("d, spelled_out", SPELLED_OUT)
def test_no_reflection_across_curve_kinds(d, spelled_out):
    _check_path(d, 0.01, spelled_out)
    assert np.array_equal(
        np.concatenate(svg.path(d, 0.01)), np.concatenate(svg.path(spelled_out, 0.01))
    )


def _tabler_dir() -> str:
    try:
        dist = importlib.metadata.distribution("pytablericons")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pytablericons is not installed")
    return str(dist.locate_file("pytablericons/icons/outline"))


def _kanji_dir() -> str:
    try:
        dist = importlib.metadata.distribution("kanjivg")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("kanjivg is not installed")
    return str(dist.locate_file("kanji"))


def _spread(folder: str, count: int) -> list[str]:
    """Every k-th file of the sorted folder: `count` of them, spread across the set."""
    names = sorted(os.listdir(folder))
    return [os.path.join(folder, n) for n in names[:: max(1, len(names) // count)]]


def _d_attributes(text: str) -> list[str]:
    return re.findall(r'<path[^>]*\sd="([^"]*)"', text)


def test_tabler_sample_matches_svgelements():
    for file in _spread(_tabler_dir(), 40):
        with open(file, encoding="utf-8") as f:
            for d in _d_attributes(f.read()):
                _check_path(d, 0.01)


def test_kanji_sample_matches_svgelements():
    for file in _spread(_kanji_dir(), 20):
        with open(file, encoding="utf-8") as f:
            for d in _d_attributes(f.read().split('id="kvg:StrokeNumbers')[0]):
                _check_path(d, 0.05)


@pytest.mark.parametrize("every", [10, pytest.param(1, marks=pytest.mark.slow)])
def test_every_tabler_icon_reads(every):
    """All 4,577 outline icons parse (about 2 s: the slow tier; every 10th in the default
    one); every one draws something, within its 24 box."""
    files = sorted(glob.glob(os.path.join(_tabler_dir(), "*.svg")))
    assert len(files) > 4000
    for file in files[::every]:
        with open(file, encoding="utf-8") as f:
            drawing = svg.read(f.read(), 0.05)
        assert drawing.strokes, file
        lines = drawing.strokes + drawing.filled
        assert all(v.ndim == 2 and v.shape[1] == 2 and len(v) >= 2 for v in lines), file
        every = np.concatenate(lines)
        assert np.all(np.isfinite(every)) and np.all(np.abs(every - 12) <= 12.5), file


# ----------------------------------------------------------------------------- by hand
def test_circle_vertices_on_the_circle_and_sagitta_within_tolerance():
    for r, tol in [(1.0, 1e-3), (9.0, 0.01), (0.5, 0.2), (3.0, 10.0)]:
        ring = svg.circle(2.0, -1.0, r, tol)
        assert np.array_equal(ring[0], ring[-1]) and len(ring) >= 5
        assert np.abs(np.hypot(ring[:, 0] - 2, ring[:, 1] + 1) - r).max() <= EXACT
        chord = np.linalg.norm(np.diff(ring, axis=0), axis=1)
        sagitta = r - np.sqrt(np.maximum(r**2 - (chord / 2) ** 2, 0))
        assert sagitta.max() <= tol + EXACT
        # the whole circle is near the polygon
        t = np.linspace(0, 2 * np.pi, 4000)
        true = np.stack([2 + r * np.cos(t), -1 + r * np.sin(t)], -1)
        assert _distances(true, [ring]).max() <= tol + EXACT
    unit = svg.circle(0, 0, 1, 1e-4)
    assert np.allclose(unit[0], [1, 0], atol=0) and np.abs(np.hypot(*unit.T) - 1).max() < 1e-15


def test_vertex_counts_are_not_absurd():
    ring = svg.circle(12, 12, 9, 0.01)
    # the fewest equal steps with sagitta 9 (1 - cos(step / 2)) <= 0.01
    fewest = math.ceil(math.pi / math.acos(1 - 0.01 / 9))
    assert fewest <= len(ring) - 1 <= fewest + 1 < 200
    (drawn,) = svg.path("M12 12m-9 0a9 9 0 1 0 18 0a9 9 0 1 0 -18 0", 0.01)
    assert len(drawn) < 200
    (cubic,) = svg.path("M0 0 C0 10 10 10 10 0", 0.01)
    assert len(cubic) < 60
    assert len(svg.path("M0 0 L5 5 H9 V1 z", 1e-6)[0]) == 5  # lines are never cut


def test_semicircle_end_points_and_side():
    for sweep, side in [(1, -1), (0, 1)]:
        (arc,) = svg.path(f"M0 0 a5 5 0 0 {sweep} 10 0", 0.01)
        assert np.array_equal(arc[0], [0, 0]) and np.array_equal(arc[-1], [10, 0])
        assert np.abs(np.hypot(arc[:, 0] - 5, arc[:, 1]) - 5).max() <= EXACT
        # sweep 1 turns the positive-angle way: up the canvas (y down), through (5, -5)
        assert np.all(side * arc[:, 1] >= -EXACT) and side * arc[:, 1].max(initial=0) >= 0
        assert _distances(np.array([[5.0, 5.0 * side]]), [arc])[0] <= 0.01


def test_quadratic_midpoint():
    (q,) = svg.path("M0 0 Q1 2 2 0", 1e-3)
    # B(1/2) = (p0 + 2 p1 + p2) / 4 = (1, 1), the curve's highest point
    assert _distances(np.array([[1.0, 1.0]]), [q])[0] <= 1e-3
    assert q[:, 1].max() <= 1 + EXACT
    assert np.array_equal(q[0], [0, 0]) and np.array_equal(q[-1], [2, 0])


def test_numbers_implicit_commands_and_dots():
    (p,) = svg.path("M-.5.5L1e1-2e-1 .5.5", 1)
    assert np.array_equal(p, [[-0.5, 0.5], [10, -0.2], [0.5, 0.5]])
    (p,) = svg.path("m1 1 2 2 3 0", 1)  # after a moveto, pairs are linetos, relative here
    assert np.array_equal(p, [[1, 1], [3, 3], [6, 3]])
    assert [a.tolist() for a in svg.path("M5 5h4v4z l-2 3", 1)] == [
        [[5, 5], [9, 5], [9, 9], [5, 5]],
        [[5, 5], [3, 8]],  # relative to the closed subpath's start
    ]
    # a dot (a drawing command going nowhere, or nearly) is kept; a lone moveto is not
    assert [a.tolist() for a in svg.path("M12 12h.01", 1)] == [[[12, 12], [12.01, 12]]]
    assert [a.tolist() for a in svg.path("M5 5 l0 0", 1)] == [[[5, 5], [5, 5]]]
    assert [a.tolist() for a in svg.path("M5 5z", 1)] == [[[5, 5], [5, 5]]]
    assert [a.tolist() for a in svg.path("M5 5 M6 6 l1 0 M9 9", 1)] == [[[6, 6], [7, 6]]]
    assert svg.path("M5 5", 1) == [] and svg.path("", 1) == []
    # an arc between equal end points is nothing; a zero radius, a line
    assert svg.path("M1 1 A5 5 0 1 1 1 1", 1) == []
    assert svg.path("M1 1 A0 5 0 1 1 4 5", 1)[0].tolist() == [[1, 1], [4, 5]]


@pytest.mark.parametrize(
    "d, command",
    [
        ("M0 0 L1", "'L'"),
        ("M0 0 A1 1 0 2 0 1 1", "'A'"),
        ("M0 0 a1 1 0 0 1 1", "'a'"),
        ("M0 0 C1 2 3 4 5", "'C'"),
        ("M0 0 L1,,2", "'L'"),
        ("M0 0 l1 2,", "'l'"),
        ("M0 0 z 1 2", "'z'"),
        ("M0 0 h", "'h'"),
        ("M0 0 X1 1", "'M': malformed arguments '0 0 X1 1'"),
        ("L1 1", "moveto"),
        ("M0 0 L1 1e", "'L'"),
        ("M0 0 L1 # 2", "'L'"),
        ("M0 0 L1e400 2", "'L'"),
        ("M0 0 L" + "1   " * 13 + "x", "'L'"),  # fast: no backtracking over white space
    ],
)
def test_malformed_paths_raise_one_line(d, command):
    start = time.perf_counter()
    with pytest.raises(ValueError) as e:
        svg.path(d, 0.1)
    assert time.perf_counter() - start < 1.0
    assert command in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 120


def test_tolerance_must_be_positive():
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="tolerance"):
            svg.path("M0 0 L1 1", bad)


# ----------------------------------------------------------------------------- documents
def _tabler(name: str) -> str:
    with open(os.path.join(_tabler_dir(), f"{name}.svg"), encoding="utf-8") as f:
        return f.read()


def test_read_tabler_filled_circle_and_meta():
    text = _tabler("dice-1")
    drawing = svg.read(text, 0.01)
    cx, cy, r = (
        float(v) for v in re.search(r'<circle cx="(.+?)" cy="(.+?)" r="(.+?)"', text).groups()
    )
    (dot,) = drawing.filled
    assert np.array_equal(dot[0], dot[-1])
    assert np.abs(np.hypot(dot[:, 0] - cx, dot[:, 1] - cy) - r).max() <= EXACT
    # the dot is stroked too (it inherits the root's stroke): a filled disc with a rim
    assert any(np.array_equal(s, dot) for s in drawing.strokes)
    assert len(drawing.strokes) == 2
    # the opening comment's lines, as the raw text has them
    tags = re.search(r"^tags: \[(.*)\]$", text, re.M).group(1)
    assert drawing.meta["tags"] == [t.strip() for t in tags.split(",")]
    assert drawing.meta["category"] == re.search(r"^category: (.*)$", text, re.M).group(1)
    assert drawing.meta["version"] == re.search(r'^version: "(.*)"$', text, re.M).group(1)
    assert drawing.meta["unicode"] == re.search(r'^unicode: "(.*)"$', text, re.M).group(1)
    # quoted items lose their quotes; a missing key is not in the dict
    meta = svg.read(_tabler("toggle-left"), 0.1).meta
    assert "on" in meta["tags"] and "off" in meta["tags"]
    assert "category" not in svg.read("<!--\ntags: []\n--><svg/>", 0.1).meta


def test_read_tabler_filled_path_and_unstroked_box():
    # copy-check draws the 24 x 24 box with stroke="none" (and the root's fill="none"): unseen
    text = _tabler("copy-check")
    assert 'stroke="none" d="M0 0h24v24H0z"' in text
    drawing = svg.read(text, 0.05)
    drawn = np.concatenate(drawing.strokes)
    assert not np.any(np.all(drawn == 0, axis=1)) and not drawing.filled
    others = [d for d in _d_attributes(text) if d != "M0 0h24v24H0z"]
    assert len(drawing.strokes) == sum(len(svg.path(d, 0.05)) for d in others)
    # a path filled with fill="currentColor" is closed in `filled`
    text = _tabler("play-basketball")
    filled = svg.read(text, 0.05).filled
    assert len(filled) == text.count('fill="currentColor"')
    assert all(np.array_equal(f[0], f[-1]) for f in filled)


def test_read_kanji_strokes_text_left_out_and_style_fill():
    folder = _kanji_dir()
    with open(os.path.join(folder, f"{ord('漢'):05x}.svg"), encoding="utf-8") as f:
        text = f.read()
    assert "<text transform=" in text  # the stroke numbers: left out, transform and all
    drawing = svg.read(text, 0.05)
    strokes = _d_attributes(text.split('id="kvg:StrokeNumbers')[0])
    assert len(drawing.strokes) == len(strokes) == 13 and not drawing.filled
    for ours, d in zip(drawing.strokes, strokes, strict=True):
        assert np.array_equal(ours, svg.path(d, 0.05)[0])
    assert drawing.meta == {}  # the opening comment is the licence: no key: value lines
    # the full stop is a filled blob (the group's style says fill:#000000)
    with open(os.path.join(folder, "0002e.svg"), encoding="utf-8") as f:
        full_stop = svg.read(f.read(), 0.05)
    assert len(full_stop.filled) == 1 and len(full_stop.strokes) == 1


def test_read_every_element_against_svgelements():
    se = _se()
    text = """<svg xmlns="http://www.w3.org/2000/svg" fill="none" stroke="black">
      <g><line x1="1" y1="2" x2="30" y2="5"/>
        <polyline points="0,0 10,3 -2.5-4 7e0 1"/></g>
      <polygon points="40 40 50 45 45 60"/>
      <rect x="5" y="60" width="20" height="10"/>
      <rect x="35" y="5" width="20" height="10" rx="3"/>
      <rect x="35" y="25" width="20" height="8" rx="30" ry="2.5"/>
      <ellipse cx="70" cy="30" rx="12" ry="4"/>
      <circle cx="70" cy="60" r="7" style="fill:red"/>
      <path d="M80 80 q5 -10 10 0 t10 0"/>
    </svg>"""
    tolerance = 0.02
    drawing = svg.read(text, tolerance)
    shapes = [e for e in se.SVG.parse(io.StringIO(text)).elements() if isinstance(e, se.Shape)]
    assert len(shapes) == 9 == len(drawing.strokes)
    for shape, ours in zip(shapes, drawing.strokes, strict=True):
        d = se.Path(shape).d()
        _check_path(d, tolerance)
        assert _distances(np.concatenate([p for _, p in _reference(d)]), [ours]).max() <= (
            tolerance + EXACT
        )
    (disc,) = drawing.filled
    assert np.abs(np.hypot(disc[:, 0] - 70, disc[:, 1] - 60) - 7).max() <= EXACT


def test_read_svg_defaults_fill_closes_subpaths():
    # SVG's defaults: fill black, stroke none; a fill closes each subpath, and one enclosing
    # nothing (two points) is left out
    drawing = svg.read('<svg><path d="M0 0 L4 0 L4 3 M10 10 L12 12"/></svg>', 1.0)
    assert drawing.strokes == () and drawing.meta == {}
    assert [f.tolist() for f in drawing.filled] == [[[0, 0], [4, 0], [4, 3], [0, 0]]]
    drawing = svg.read('<svg stroke="red" fill="none"><g><path d="M0 0 L4 0"/></g></svg>', 1)
    assert [s.tolist() for s in drawing.strokes] == [[[0, 0], [4, 0]]] and not drawing.filled


@pytest.mark.parametrize(
    "text, words",
    [
        ('<svg><path transform="scale(2)" d="M0 0 L1 1"/></svg>', "transform"),
        ('<svg><g transform="translate(1 0)"><circle r="1"/></g></svg>', "transform"),
        ('<svg><use href="#a"/></svg>', "<use>"),
        ("<svg><style>path {fill: red}</style></svg>", "<style>"),
        ('<svg><path d="M0 0 L1"/></svg>', "'L'"),
        ('<svg><polyline points="1 2 3"/></svg>', "points"),
        ('<svg><circle r="-1"/></svg>', "radius"),
        ("<svg><path", "XML"),
    ],
)
def test_read_refuses_what_it_cannot_draw(text, words):
    with pytest.raises(ValueError) as e:
        svg.read(text, 0.1)
    assert words in str(e.value) and "\n" not in str(e.value)
