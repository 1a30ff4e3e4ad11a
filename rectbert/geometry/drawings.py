"""Line drawings people made, as exact polygons: the strokes sources.py reads (Hershey stroke
fonts, KanjiVG's kanji, Tabler's outline icons), their centrelines thickened and united with
shapely, once per drawing, in numpy; a set's drawings as arrays (Library), each once, and the
stable hash that holds some out of training.

Two pens (outline()): Hershey's polylines are the font's design, thickened with square caps
and mitre joins (no arcs: the polygon is the strokes' own); KanjiVG and Tabler draw curves with
a round pen (their SVGs say stroke-linecap and stroke-linejoin round), so theirs are every
point within half a width of the curve: round caps and joins, the joins of a flattened curve
then following the curve (a mitre on a tight hook sticks out by up to 1.4 px at 224 px).

The scenes (rectbert/scenes/glyph.py, kanji.py, icon.py, on drawn.py) only move these polygons
by a similarity transform inside jit, so their coverage is exact for the polygon built here.
Coordinates are the library's own (Hershey font units, KanjiVG's 109-unit box, Tabler's
24-unit grid), y down as on the canvas.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math

import numpy as np

from rectbert import rate, warn
from rectbert.geometry import lines

# A round pen's polygon is snapped to this grid before it is simplified, so that float64 noise
# (~1e-16 em) cannot make one region simplify two ways; far below the 0.1 px a drawing is
# accurate to (0.0002 px at 224 px). Two drawings are one by near_pairs, not by this grid.
KEY_GRID = 1e-6
PEN_SHARE = 0.6  # of a round-pen drawing's tolerance: the pen (outline); the rest flattens curves


# ----------------------------------------------------------------------------- the split
def hashed(names) -> np.ndarray:
    """[G] a number in [0, 1) for each name, the same on every machine, in every version of a
    set: the first 8 bytes of the SHA-256 of its UTF-8 text, big-endian, over 2^64. A set
    holds out of training the drawings whose number is under unseen_fraction."""
    return np.array(
        [int.from_bytes(hashlib.sha256(n.encode()).digest()[:8], "big") / 2**64 for n in names],
        np.float64,
    )


# ----------------------------------------------------------------------------- polygons
def quad_segs(radius: float, tolerance: float) -> int:
    """Segments a quarter circle of `radius` needs so that no chord is farther than
    `tolerance` from its arc (shapely's arcs put their vertices on the circle: a chord
    spanning angle t is radius x (1 - cos t/2) inside it)."""
    if tolerance >= radius:
        return 1
    return max(1, math.ceil((math.pi / 2) / (2 * math.acos(1 - tolerance / radius))))


def outline(strokes: list[np.ndarray], width: float, tolerance: float | None = None, filled=()):
    """The strokes thickened to `width` and united: a shapely Polygon or MultiPolygon, rings
    oriented counter-clockwise (holes clockwise) in the (x, y) sense of polygons.signed_area.

    tolerance None: square caps, mitre joins (no arcs, so the polygon is the strokes' own); a
    join sharper than the mitre limit 2 is cut there (serif fonts draw serifs as hairpins,
    which would spike): no point lies farther than about sqrt 5 half-widths from a centreline.
    tolerance t: a round pen, every point within width/2 of a stroke (round caps and joins),
    its arcs chords no farther than t/2 inside the true circle, then simplified to within t/2
    (Douglas-Peucker, topology kept: the tiny arcs of a flattened curve's joins go, halving
    the vertices); `filled` closed polylines are filled as well as stroked.

    ValueError (one line) for a width float64 cannot thicken by (under 1e-12 of the
    coordinates: from about 1e-16 the union is empty, or a sliver of the wrong area)."""
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
    if tolerance is None:
        shape = lines.buffer(width / 2, cap_style="square", join_style="mitre", mitre_limit=2.0)
    else:
        q = quad_segs(width / 2, tolerance / 2)
        pen = dict(cap_style="round", join_style="round", quad_segs=q)
        shape = lines.buffer(width / 2, **pen)
        if len(filled):
            areas = [Polygon(f).buffer(width / 2, **pen) for f in filled]
            shape = shapely.union_all([shape, *areas])
        # snapped to the key grid and normalised first, so that the same region drawn in
        # another order (float noise apart) simplifies alike and stays one drawing (near_pairs)
        shape = shapely.normalize(shapely.set_precision(shapely.make_valid(shape), KEY_GRID))
        shape = shapely.simplify(shape, tolerance / 2, preserve_topology=True)
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


def turned(shape, degrees: float):
    """The centred polygon turned by `degrees` about its centre, centred again on its box."""
    import shapely.affinity

    out = shapely.affinity.rotate(shape, degrees, origin=(0.0, 0.0))
    x0, y0, x1, y1 = out.bounds
    return shapely.affinity.translate(out, -(x0 + x1) / 2, -(y0 + y1) / 2)


def near_pairs(shapes_a, shapes_b, within: float, *, later=False) -> list[tuple[int, int]]:
    """Every (i, j) whose centred polygons a_i and b_j are within `within` ems of each other:
    the Hausdorff distance of their boundaries (densified) at most that. What tells two
    drawings apart beyond the accuracy of the polygons themselves (Tabler's clipboard-off and
    report-off differ by 0.004 px). Measured only where necessary conditions hold: box sides
    within 2 `within`, areas within `within` x their perimeters, and eight of a_i's vertices
    within `within` of b_j's boundary. later: shapes_b is shapes_a, and only j > i is asked."""
    import shapely

    def prints(shapes_):
        b = np.array([s.bounds for s in shapes_]).reshape(-1, 4)
        size = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], -1)
        return size, np.array([s.area for s in shapes_]), np.array([s.length for s in shapes_])

    (size_a, area_a, len_a), (size_b, area_b, len_b) = prints(shapes_a), prints(shapes_b)
    edges_b = [s.boundary for s in shapes_b]
    order = np.argsort(area_b, kind="stable")
    sorted_area, longest = area_b[order], float(len_b.max(initial=0.0))
    out = []
    for i, a in enumerate(shapes_a):
        reach = within * (len_a[i] + longest)
        lo, hi = np.searchsorted(sorted_area, [area_a[i] - reach, area_a[i] + reach])
        js = order[lo:hi]
        ok = np.abs(size_a[i] - size_b[js]).max(-1) <= 2 * within
        ok &= np.abs(area_a[i] - area_b[js]) <= within * (len_a[i] + len_b[js])
        if not ok.any():
            continue
        verts = shapely.get_coordinates(a.boundary)
        probe = shapely.points(verts[np.linspace(0, len(verts) - 1, 8).astype(int)])
        for j in js[ok]:
            if later and j <= i:
                continue
            if shapely.distance(edges_b[j], probe).max() > within:
                continue
            if shapely.hausdorff_distance(a.boundary, edges_b[j], densify=0.5) <= within:
                out.append((i, int(j)))
    return out


def rings(shape) -> list[np.ndarray]:
    """Every ring of a (Multi)Polygon as [V, 2] vertices (the closing vertex dropped),
    exteriors counter-clockwise, holes clockwise."""
    out = []
    for poly in getattr(shape, "geoms", [shape]):
        for ring in (poly.exterior, *poly.interiors):
            out.append(np.asarray(ring.coords, np.float64)[:-1])
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Library:
    """Drawings as fixed-size arrays, one row per distinct drawing, centred on their boxes'
    centres: the boundary segments a -> b [G, S, 2] (region on the left; a row's first
    counts[g] are its own, the rest padding that weighs 0), their weights [G, S], the vertices
    [G, V, 2] (padding repeats a vertex) and the half-extent radius [G] (the farthest vertex
    from the centre), all in em units (the library's em = 1); and `within`, the distance in
    ems under which two drawings are one (near_pairs). The centrelines the polygons were drawn
    around (`lines`: each drawing's polylines, the same frame; filled parts' rings too) as
    segments c_a -> c_b [G, T, 2] (a row's first line_counts[g] its own), and `pen`, the
    stroke width in ems. Compared by identity (junctions() is cached per library)."""

    names: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray
    vertices: np.ndarray
    radius: np.ndarray
    counts: np.ndarray  # [G] int32: each drawing's own boundary segments
    centres: np.ndarray  # [G, 2] float64: where each box centre was, in the library's em units
    shapes: tuple  # the shapely polygons, centred and in em units (tests, figures)
    within: float = 0.0  # ems: two drawings nearer than this are one (near_pairs)
    lines: tuple = ()  # per drawing, its centrelines: a tuple of [V, 2] float64 polylines
    c_a: np.ndarray | None = None  # [G, T, 2] float32 centreline segment starts
    c_b: np.ndarray | None = None  # [G, T, 2] ends
    line_counts: np.ndarray | None = None  # [G] int32: each drawing's own centreline segments
    pen: float = 0.0  # ems: the stroke width

    @functools.lru_cache(maxsize=8)  # noqa: B019 (a library lives as long as its scene's cache)
    def junctions(self, corner_angle: float) -> tuple[np.ndarray, np.ndarray]:
        """([G, J, 2] float32 each drawing's junctions in ems (lines.junctions: candidates
        nearer than one stroke width are one), padded; [G] int32 how many are its own)."""
        found = [lines.junctions(ls, corner_angle, self.pen) for ls in self.lines]
        most = max([len(f) for f in found] + [1])
        out = np.zeros((len(found), most, 2), np.float32)
        for g, f in enumerate(found):
            out[g, : len(f)] = f
        return out, np.array([len(f) for f in found], np.int32)

    @functools.lru_cache(maxsize=2)  # noqa: B019
    def corners(self) -> np.ndarray:
        """[G, C, 2] float32 each polygon's corners in ems (lines.corners of its rings: where
        the boundary turns, not a round pen's arcs), NaN for padding."""
        found = [
            np.concatenate([lines.corners(r) for r in rings(shape)] + [np.zeros((0, 2))])
            for shape in self.shapes
        ]
        out = np.full((len(found), max([len(f) for f in found] + [1]), 2), np.nan, np.float32)
        for g, f in enumerate(found):
            out[g, : len(f)] = f
        return out


def library(
    names, parts_of, em: float, weight: float, within: float, tolerance=None, say=None
) -> Library:
    """The Library of the distinct drawings of `names`: parts_of(name) -> (strokes, filled),
    polylines in units where one em is `em`; strokes `weight` em wide, thickened by outline()
    (`tolerance` in ems: None, square caps and mitre joins; a number, a round pen). A drawing
    within `within` ems of one before it (near_pairs: Hershey's rowmans capitals are
    futural's, futural's l is its I, Tabler's report-off is clipboard-off to 0.004 px) is left
    out, and one warning (once a process) says how many, naming a few. A build of more than
    rate.EVERY seconds says its progress to `say` (default stdout)."""
    import shapely.affinity

    names = tuple(names)
    progress = rate.Rate("building the drawings", len(names), say or rate.SAY, unit="drawings")
    shapes_, centres, drawn = [], [], []
    for i, name in enumerate(names):
        strokes, filled = parts_of(name)  # MissingError: no such drawing
        # centred on the strokes' box and snapped to SNAP ems before thickening: shapely's
        # buffer is not translation-invariant to the vertex, so the same drawing elsewhere in
        # its box (KanjiVG's ⻖ is 阝 moved by 27.71 units) would differ by more than noise
        mid = _middle([*strokes, *filled]) / em
        strokes, filled = ([_snapped(s / em - mid) for s in part] for part in (strokes, filled))
        try:
            shape = outline(strokes, weight, tolerance, filled)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        x0, y0, x1, y1 = shape.bounds
        box = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        shapes_.append(shapely.affinity.translate(shape, -box[0], -box[1]))
        centres.append(mid + box)
        drawn.append(tuple(np.asarray(s, np.float64) - box for s in (*strokes, *filled)))
        progress.done(i + 1)
    first = {}  # a repeat -> the earliest drawing it is
    for i, j in near_pairs(shapes_, shapes_, within, later=True):
        first[j] = min(first.get(j, i), first.get(i, i))
    kept = [i for i in range(len(names)) if i not in first]
    repeats = [f"{names[j]} is {names[i]}" for j, i in sorted(first.items())]
    if repeats:
        n, total = len(repeats), len(names)
        verb = "repeats an earlier one and is" if n == 1 else "repeat an earlier one and are"
        distinct = f"{len(kept)} distinct drawing" + "s" * (len(kept) != 1)
        warn.warn_once(
            f"{n} of the {total} drawings {verb} left out (the set is {distinct}): "
            f"{listed(repeats)}"
        )
    return _arrays(
        tuple(names[i] for i in kept),
        tuple(shapes_[i] for i in kept),
        within,
        np.asarray(centres)[kept],
        tuple(drawn[i] for i in kept),
        weight,
    )


SNAP = 1e-9  # ems: the grid a drawing's centred strokes are snapped to before thickening


def _middle(polylines) -> np.ndarray:
    """The centre of the polylines' box (0, 0 for none)."""
    pts = [p for p in polylines if np.size(p)]
    if not pts:
        return np.zeros(2)
    pts = np.concatenate(pts)
    return (pts.min(0) + pts.max(0)) / 2


def _snapped(v: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(v, np.float64) / SNAP) * SNAP


def subset(lib: Library, rows) -> Library:
    """The Library of these rows of `lib` (a bool mask or indices), in their order."""
    rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, int)
    return _arrays(
        tuple(lib.names[i] for i in rows),
        tuple(lib.shapes[i] for i in rows),
        lib.within,
        lib.centres[rows],
        tuple(lib.lines[i] for i in rows),
        lib.pen,
    )


def listed(items, most: int = 6) -> str:
    """The first `most` items joined by commas, then 'and N more' for the rest."""
    items = list(items)
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def _arrays(names, shapes_, within, centres, lines_=None, pen=0.0) -> Library:
    """The Library of these centred polygons and centrelines: their rings and segments as
    padded arrays."""
    ring_sets = [rings(shape) for shape in shapes_]
    s = max(sum(len(r) for r in rs) for rs in ring_sets)
    g = len(names)
    a, b = np.zeros((g, s, 2)), np.zeros((g, s, 2))
    w, verts = np.zeros((g, s)), np.zeros((g, s, 2))
    counts = np.zeros(g, np.int32)
    for i, rs in enumerate(ring_sets):
        starts = np.concatenate(rs)
        ends = np.concatenate([np.roll(r, -1, 0) for r in rs])
        n = counts[i] = len(starts)
        a[i, :n], b[i, :n], w[i, :n] = starts, ends, 1.0
        verts[i, :n], verts[i, n:] = starts, starts[0]
    radius = np.max(np.linalg.norm(verts, axis=-1), -1)
    lines_ = tuple(lines_) if lines_ is not None else tuple(() for _ in names)
    segs = [lines.segments(ls) for ls in lines_]
    t = max([len(sa) for sa, _ in segs] + [1])
    c_a, c_b = np.zeros((g, t, 2)), np.zeros((g, t, 2))
    line_counts = np.zeros(g, np.int32)
    for i, (sa, sb) in enumerate(segs):
        line_counts[i] = len(sa)
        c_a[i, : len(sa)], c_b[i, : len(sb)] = sa, sb
    f32 = np.float32
    return Library(
        names,
        a.astype(f32),
        b.astype(f32),
        w.astype(f32),
        verts.astype(f32),
        radius.astype(f32),
        counts,
        np.asarray(centres, np.float64).reshape(g, 2),
        shapes_,
        within,
        lines_,
        c_a.astype(f32),
        c_b.astype(f32),
        line_counts,
        float(pen),
    )
