"""Line drawings people made, as exact polygons: Hershey stroke fonts (the `Hershey-Fonts`
package) and KanjiVG's kanji (the optional `kanjivg` package), their stroke centrelines
thickened (square caps, mitre joins) and united with shapely, once per drawing, in numpy.

The scenes (rectbert/scenes/glyph.py and kanji.py, on drawn.py) only move these polygons by a
similarity transform inside jit, so their coverage is exact for the polygon built here.
Coordinates are the library's own (Hershey font units, KanjiVG's 109-unit box), y down as on
the canvas.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import math
import re

import numpy as np

from rectbert import warn

KANJI_EXTRA = "pip install -e '.[kanji]'"  # KanjiVG: CC BY-SA 3.0, kanjivg.tagaini.net
HERSHEY_EM = 32.0  # font units of a Hershey em: its glyphs span about -16..16 vertically
KANJI_EM = 109.0  # KanjiVG's drawing box
# Two drawings are one when their centred em-unit polygons agree on this grid (key()): coarse
# enough that the float64 noise of thickening a translated copy (~1e-16 em) never tells them
# apart, fine enough that no two drawings merge (Hershey's coordinates step by 1/32 em); and
# 2^6 divides 10^6, so the multiples of 1/64 em a centred Hershey drawing has sit on the grid.
KEY_GRID = 1e-6


class MissingError(ValueError):
    """A font, glyph or character the installed libraries do not have (one line)."""


# ----------------------------------------------------------------------------- Hershey
@functools.cache
def hershey_fonts() -> tuple[str, ...]:
    from HersheyFonts import HersheyFonts

    return tuple(HersheyFonts().default_font_names)


@functools.cache
def _hershey(font: str):
    from HersheyFonts import HersheyFonts

    if font not in hershey_fonts():
        raise MissingError(f"font {font!r} is not a Hershey font: one of {list(hershey_fonts())}")
    h = HersheyFonts()
    h.load_default_font(font)
    return h


def hershey_strokes(font: str, char: str) -> list[np.ndarray]:
    """The glyph's strokes, each a [V, 2] polyline in font units (MissingError if the font
    has no such glyph, or it is blank)."""
    strokes = [np.asarray(s, np.float64) for s in _hershey(font).strokes_for_text(char)]
    strokes = [s for s in strokes if len(s) >= 2]
    if len(char) != 1 or not strokes:
        raise MissingError(f"font {font!r} has no glyph {char!r} with strokes")
    return strokes


# ----------------------------------------------------------------------------- KanjiVG
def kanji_file(char: str) -> str:
    """The path of the character's KanjiVG drawing (MissingError naming the extra when the
    package is missing, or naming the character when it has no drawing)."""
    if len(char) != 1:
        raise MissingError(f"a kanji is one character; got {char!r}")
    try:
        dist = importlib.metadata.distribution("kanjivg")
    except importlib.metadata.PackageNotFoundError:
        raise MissingError(f"the kanji scene needs KanjiVG: {KANJI_EXTRA}") from None
    path = dist.locate_file(f"kanji/{ord(char):05x}.svg")
    if not path.exists():
        raise MissingError(f"KanjiVG has no drawing of {char!r} (U+{ord(char):04X})")
    return str(path)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_COMMAND = re.compile(r"([MmLlCcSsZzHhVv])([^MmLlCcSsZzHhVv]*)")


def svg_path(d: str, tolerance: float) -> list[np.ndarray]:
    """An SVG path's subpaths as polylines [V, 2]: its cubic Béziers flattened so that no
    point of a curve is farther than `tolerance` from the polyline (each cubic cut into
    enough equal parameter steps: the chord error of a step h is at most h^2 / 8 x the
    largest second derivative, which a cubic's control polygon bounds)."""
    out, pts, cur, start, ctrl = [], [], np.zeros(2), np.zeros(2), None
    for cmd, args in _COMMAND.findall(d):
        nums = [float(x) for x in _NUMBER.findall(args)]
        rel = cmd.islower()
        c = cmd.upper()
        if c == "Z":
            pts.append(start.copy())
            cur, ctrl = start.copy(), None
            continue
        step = {"M": 2, "L": 2, "C": 6, "S": 4, "H": 1, "V": 1}[c]
        if len(nums) % step or not nums:
            raise ValueError(f"malformed SVG path command {cmd}{args!r}")
        for i in range(0, len(nums), step):
            v = np.asarray(nums[i : i + step], np.float64)
            if c == "H":
                v = np.array([v[0] + (cur[0] if rel else 0.0), cur[1]])
                c_eff, rel_eff = "L", False
            elif c == "V":
                v = np.array([cur[0], v[0] + (cur[1] if rel else 0.0)])
                c_eff, rel_eff = "L", False
            else:
                c_eff, rel_eff = c, rel
            v = v.reshape(-1, 2) + (cur if rel_eff else 0.0)
            if c_eff == "M" and i == 0:
                if len(pts) >= 2:
                    out.append(np.asarray(pts))
                pts, cur, start, ctrl = [v[0]], v[0], v[0], None
            elif c_eff in ("L", "M"):
                pts.append(v[0])
                cur, ctrl = v[0], None
            else:
                if c_eff == "S":  # the first control point mirrors the last one
                    first = 2 * cur - ctrl if ctrl is not None else cur
                    v = np.concatenate([first[None], v])
                pts.extend(_flatten(np.concatenate([cur[None], v]), tolerance)[1:])
                cur, ctrl = v[2], v[1]
    if len(pts) >= 2:
        out.append(np.asarray(pts))
    return out


def _flatten(ctrl_4x2: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """A cubic Bézier as a polyline within `tolerance` of it (its end points exact)."""
    p = ctrl_4x2
    # |B''(t)| <= 6 max(|p0 - 2 p1 + p2|, |p1 - 2 p2 + p3|); chord error <= h^2 |B''| / 8
    bend = 6 * max(np.linalg.norm(p[0] - 2 * p[1] + p[2]), np.linalg.norm(p[1] - 2 * p[2] + p[3]))
    n = max(1, math.ceil(math.sqrt(bend / (8 * tolerance)))) if bend > 0 else 1
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    curve = (
        (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    )
    curve[0], curve[-1] = p[0], p[3]
    return list(curve)


@functools.cache
def _kanji_paths(char: str) -> tuple[str, ...]:
    with open(kanji_file(char), encoding="utf-8") as f:
        text = f.read()
    body = text.split('id="kvg:StrokeNumbers')[0]  # the stroke paths, not the numbers
    return tuple(re.findall(r'<path[^>]*\sd="([^"]+)"', body))


def kanji_strokes(char: str, tolerance: float) -> list[np.ndarray]:
    """The character's strokes from KanjiVG as polylines in its 109-unit box."""
    return [s for d in _kanji_paths(char) for s in svg_path(d, tolerance)]


# ----------------------------------------------------------------------------- polygons
def outline(strokes: list[np.ndarray], width: float):
    """The strokes thickened to `width` (square caps, mitre joins: no arcs, so the polygon is
    exact) and united: a shapely Polygon or MultiPolygon, rings oriented counter-clockwise
    (holes clockwise) in the (x, y) sense of polygons.signed_area. A join sharper than the
    mitre limit 2 is cut there (serif fonts draw serifs as hairpins, which would spike): no
    point lies farther than about sqrt 5 half-widths from a centreline. ValueError (one line)
    for a width float64 cannot thicken by (under 1e-12 of the coordinates: from about 1e-16
    the union is empty, or a sliver of the wrong area)."""
    import shapely
    from shapely.geometry import MultiLineString, Polygon
    from shapely.geometry.polygon import orient

    scale = max((float(np.abs(s).max()) for s in strokes if np.size(s)), default=0.0)
    if not width > 1e-12 * scale:
        raise ValueError(
            f"strokes {width:g} wide are too thin to thicken at coordinates up to {scale:g}: "
            "at least 1e-12 of them"
        )

    lines = MultiLineString([s.tolist() for s in strokes])
    shape = lines.buffer(width / 2, cap_style="square", join_style="mitre", mitre_limit=2.0)
    shape = shapely.make_valid(shape)
    parts = [g for g in getattr(shape, "geoms", [shape]) if isinstance(g, Polygon) and g.area]
    merged = shapely.union_all([orient(g, 1.0) for g in parts])
    parts = [
        orient(g, 1.0)
        for g in getattr(merged, "geoms", [merged])
        if isinstance(g, Polygon) and g.area > 0
    ]
    if not parts:  # no strokes, or none with a length or a width
        raise ValueError(f"strokes {width:g} wide make no polygon: their union is empty")
    return shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]


def key(shape) -> bytes:
    """The drawing's polygon in a canonical form, as bytes: equal for two polygons that cover
    the same region to within KEY_GRID (whatever their vertices' order, start, or collinear
    vertices), so a set can tell a drawing it repeats. `shape` in em units, centred."""
    import shapely

    snapped = shapely.normalize(shapely.set_precision(shape, KEY_GRID))
    snapped = shapely.set_precision(shapely.simplify(snapped, KEY_GRID), KEY_GRID)
    snapped = shapely.transform(shapely.normalize(snapped), lambda xy: xy + 0.0)  # -0 is 0
    return shapely.to_wkb(snapped)


def turned_key(shape, degrees: float) -> bytes:
    """key() of the centred polygon turned by `degrees` about its centre, then centred again
    on its box (as library() centres a drawing)."""
    import shapely.affinity

    turned = shapely.affinity.rotate(shape, degrees, origin=(0.0, 0.0))
    x0, y0, x1, y1 = turned.bounds
    return key(shapely.affinity.translate(turned, -(x0 + x1) / 2, -(y0 + y1) / 2))


def rings(shape) -> list[np.ndarray]:
    """Every ring of a (Multi)Polygon as [V, 2] vertices (the closing vertex dropped),
    exteriors counter-clockwise, holes clockwise."""
    out = []
    for poly in getattr(shape, "geoms", [shape]):
        for ring in (poly.exterior, *poly.interiors):
            out.append(np.asarray(ring.coords, np.float64)[:-1])
    return out


@dataclasses.dataclass(frozen=True)
class Library:
    """Drawings as fixed-size arrays, one row per distinct drawing, centred on their boxes'
    centres: the boundary segments a -> b [G, S, 2] (region on the left; padding segments
    weigh 0), their weights [G, S], the vertices [G, V, 2] (padding repeats a vertex) and the
    half-extent radius [G] (the farthest vertex from the centre), all in em units (the
    library's em = 1); and each drawing's polygon key() (what tells two sets' drawings
    apart)."""

    names: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray
    vertices: np.ndarray
    radius: np.ndarray
    shapes: tuple  # the shapely polygons, centred and in em units (tests, figures)
    keys: tuple[bytes, ...]  # key() of each shape


def library(names, strokes_of, em: float, weight: float) -> Library:
    """The Library of the distinct drawings of `names`, strokes_of(name) -> polylines in units
    where one em is `em`; strokes `weight` em wide. A drawing whose polygon repeats one before
    it (key(): Hershey's rowmans capitals are futural's, futural's l is its I) is left out,
    and one warning (once a process) says how many, naming a few."""
    import shapely.affinity

    first: dict[bytes, str] = {}  # key -> the name kept
    kept, shapes_, repeats = [], [], []
    for name in names:
        strokes = [s / em for s in strokes_of(name)]  # MissingError: no such drawing
        try:
            shape = outline(strokes, weight)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        x0, y0, x1, y1 = shape.bounds
        shape = shapely.affinity.translate(shape, -(x0 + x1) / 2, -(y0 + y1) / 2)
        k = key(shape)
        if k in first:
            repeats.append(f"{name} is {first[k]}")
            continue
        first[k] = name
        kept.append(name)
        shapes_.append(shape)
    if repeats:
        n, total = len(repeats), len(repeats) + len(kept)
        verb = "repeats an earlier one and is" if n == 1 else "repeat an earlier one and are"
        distinct = f"{len(kept)} distinct drawing" + "s" * (len(kept) != 1)
        warn.warn_once(
            f"{n} of the {total} drawings {verb} left out (the set is {distinct}): "
            f"{listed(repeats)}"
        )
    return _arrays(tuple(kept), tuple(shapes_), tuple(first))


def listed(items, most: int = 6) -> str:
    """The first `most` items joined by commas, then 'and N more' for the rest."""
    items = list(items)
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def _arrays(names, shapes_, keys) -> Library:
    """The Library of these centred polygons: their rings as padded arrays."""
    ring_sets = [rings(shape) for shape in shapes_]
    s = max(sum(len(r) for r in rs) for rs in ring_sets)
    g = len(names)
    a, b = np.zeros((g, s, 2)), np.zeros((g, s, 2))
    w, verts = np.zeros((g, s)), np.zeros((g, s, 2))
    for i, rs in enumerate(ring_sets):
        starts = np.concatenate(rs)
        ends = np.concatenate([np.roll(r, -1, 0) for r in rs])
        n = len(starts)
        a[i, :n], b[i, :n], w[i, :n] = starts, ends, 1.0
        verts[i, :n], verts[i, n:] = starts, starts[0]
    radius = np.max(np.linalg.norm(verts, axis=-1), -1)
    f32 = np.float32
    return Library(
        names,
        a.astype(f32),
        b.astype(f32),
        w.astype(f32),
        verts.astype(f32),
        radius.astype(f32),
        shapes_,
        keys,
    )
