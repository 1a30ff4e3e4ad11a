"""SVG line drawings as polylines: path data (every command of SVG 1.1: M L H V C S Q T A Z,
absolute and relative, with implicit repeats and the full number grammar, arc flags written
without separators included), circles, and documents of paths, circles, lines, polylines,
polygons, rectangles and ellipses, such as KanjiVG's kanji and Tabler's outline icons.

Every curve is flattened so that no point of the true curve is farther than `tolerance` from
the polyline, and the polyline's end points are the curve's own: Bézier curves in equal
parameter steps (the chord error of a step h is at most h^2 / 8 x the largest second
derivative), elliptical arcs in equal angle steps (the sagitta of a step dθ is at most
max(rx, ry) (1 - cos(dθ / 2))), with every arc vertex on the ellipse. Coordinates are the
document's user units, y down. Malformed input raises ValueError with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET

import numpy as np

from rectbert.geometry.curves import arc, bezier, check_tolerance, circle, ellipse

__all__ = ["Drawing", "circle", "ellipse", "path", "read"]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}
# a command letter and its arguments: everything up to the next command letter (exponents'
# e and E are no command)
_COMMAND = re.compile(r"([MmZzLlHhVvCcSsQqTtAa])([^MmZzLlHhVvCcSsQqTtAa]*)")
# numbers (each replaced by #, split as SVG's greedy grammar splits "-.5.5" or "1e-3-2")
# separated by white space and at most one comma, none leading or trailing; possessive
# quantifiers, as backtracking over the ways to split white space takes exponential time
_LIST = re.compile(r"[ \t\r\n]*+(?:#(?:[ \t\r\n]*+,?+[ \t\r\n]*+#)*+)?+[ \t\r\n]*+")
_WSP = re.compile(r"[ \t\r\n]*")
_SEP = re.compile(r"[ \t\r\n]*,?[ \t\r\n]*")


def _commands(d: str):
    """The path data's commands, each (letter, its arguments as floats; arc flags 0.0, 1.0)."""
    pos = _WSP.match(d).end()
    if pos < len(d) and d[pos] not in "Mm":
        got = d[pos : pos + 12]
        raise ValueError(f"SVG path must start with a moveto (M or m); it starts {got!r}")
    while pos < len(d):
        # a command letter, as the first is and each command's arguments end before one
        m = _COMMAND.match(d, pos)
        cmd, args = m.groups()
        if cmd in "Aa":
            nums = _arc_args(cmd, args)
        else:
            if "#" in args or not _LIST.fullmatch(_NUMBER.sub("#", args)):
                raise ValueError(f"SVG path command {cmd!r}: malformed arguments {_cut(args)}")
            nums = [float(x) for x in _NUMBER.findall(args)]
        if not all(map(math.isfinite, nums)):
            raise ValueError(f"SVG path command {cmd!r}: a number overflows: {_cut(args)}")
        n = _ARGS[cmd.upper()]
        if (len(nums) % n or not nums) if n else nums:
            raise ValueError(
                f"SVG path command {cmd!r} takes "
                + (f"a multiple of {n} numbers" if n else "no numbers")
                + f", not {len(nums)}: {_cut(args)}"
            )
        yield cmd, nums
        pos = m.end()


def _cut(args: str) -> str:
    """A command's arguments for a message: quoted, at most about 40 characters."""
    args = args.strip()
    return repr(args if len(args) <= 40 else args[:37] + "...")


def _arc_args(cmd: str, args: str) -> list[float]:
    """An arc command's arguments: groups of 7, the 4th and 5th a flag of one digit, 0 or 1,
    which needs no separator after it ("a1 1 0 011 1" is radii 1 1, rotation 0, flags 0 1,
    end point 1 1)."""
    nums: list[float] = []
    pos = _WSP.match(args).end()
    while pos < len(args):
        if nums:  # a comma may separate arguments, never lead or trail them
            pos = _SEP.match(args, pos).end()
        flag = len(nums) % 7 in (3, 4)
        if flag:
            ok = args[pos : pos + 1] in ("0", "1")
            end = pos + 1
        else:
            m = _NUMBER.match(args, pos)
            ok, end = m is not None, m.end() if m else pos
        if not ok:
            what = "flag, 0 or 1," if flag else "number"
            raise ValueError(
                f"SVG path command {cmd!r}: expected a {what} in {_cut(args)} "
                f"at {args[pos : pos + 8] or 'the end'!r}"
            )
        nums.append(float(args[pos:end]))
        pos = _WSP.match(args, end).end()
    return nums


def path(d: str, tolerance: float) -> list[np.ndarray]:
    """The path's subpaths as float64 [V, 2] polylines, curves flattened to within
    `tolerance`. A subpath of a moveto alone is left out; one that draws but stays on one
    point (`M5 5 l0 0`, `M5 5 z`: a dot, with round caps) is two equal vertices. A closed
    subpath ends on its first vertex. Consecutive equal vertices are merged. ValueError (one
    line, naming the command) for malformed path data."""
    check_tolerance(tolerance)
    out: list[np.ndarray] = []
    pts: list = []  # the subpath's vertices, (x, y) pairs
    drawn = False  # whether the subpath has a drawing command (then kept, even as a dot)
    x = y = sx = sy = 0.0  # the current point and the subpath's start
    cubic = quad = None  # the last C/S or Q/T control point, which S and T reflect

    def finish():
        if drawn:
            v = np.asarray(pts, np.float64)
            v = v[np.concatenate([[True], np.any(v[1:] != v[:-1], axis=1)])]
            out.append(v if len(v) > 1 else np.concatenate([v, v]))

    for cmd, nums in _commands(d):
        c, rel = cmd.upper(), cmd.islower()
        if c == "Z":
            pts.append((sx, sy))
            drawn = True
            finish()
            # a command after Z starts a new subpath at the same start point
            pts, drawn, x, y, cubic, quad = [(sx, sy)], False, sx, sy, None, None
            continue
        n = _ARGS[c]
        for i in range(0, len(nums), n):
            g = nums[i : i + n]
            ox, oy = (x, y) if rel else (0.0, 0.0)
            new_cubic = new_quad = None
            if c == "M" and i == 0:
                finish()
                x = sx = ox + g[0]
                y = sy = oy + g[1]
                pts, drawn = [(x, y)], False
            else:
                step, (x, y), new_cubic, new_quad = _draw(
                    c, g, ox, oy, x, y, cubic, quad, tolerance
                )
                pts.extend(step)
                drawn = drawn or c != "A" or bool(step)
            cubic, quad = new_cubic, new_quad
    finish()
    return out


def _draw(c, g, ox, oy, x, y, cubic, quad, tolerance):
    """One drawing command (not M or Z) from (x, y), its numbers `g` (relative ones offset by
    (ox, oy)): (the vertices it adds after (x, y), the new current point, the C/S and Q/T
    control points S and T would reflect, or None)."""
    if c in "ML":  # after a moveto, further pairs are linetos
        return [(ox + g[0], oy + g[1])], (ox + g[0], oy + g[1]), None, None
    if c == "H":
        return [(ox + g[0], y)], (ox + g[0], y), None, None
    if c == "V":
        return [(x, oy + g[0])], (x, oy + g[0]), None, None
    if c in "CS":
        if c == "S":  # the first control mirrors the last C/S one, else is the current point
            c1 = (2 * x - cubic[0], 2 * y - cubic[1]) if cubic else (x, y)
            g = [*c1, ox + g[0], oy + g[1], ox + g[2], oy + g[3]]
        else:
            g = [ox + g[0], oy + g[1], ox + g[2], oy + g[3], ox + g[4], oy + g[5]]
        curve = bezier(np.reshape([x, y, *g], (4, 2)), tolerance)[1:].tolist()
        return curve, (g[4], g[5]), (g[2], g[3]), None
    if c in "QT":
        if c == "T":  # the control mirrors the last Q/T one, else is the current point
            c1 = (2 * x - quad[0], 2 * y - quad[1]) if quad else (x, y)
            g = [*c1, ox + g[0], oy + g[1]]
        else:
            g = [ox + g[0], oy + g[1], ox + g[2], oy + g[3]]
        curve = bezier(np.reshape([x, y, *g], (3, 2)), tolerance)[1:].tolist()
        return curve, (g[2], g[3]), None, (g[0], g[1])
    end = (ox + g[5], oy + g[6])  # A
    if end == (x, y):  # an arc between equal end points is omitted entirely
        return [], (x, y), None, None
    curve = arc((x, y), end, g[0], g[1], g[2], g[3], g[4], tolerance)
    return curve[1:].tolist(), end, None, None


@dataclasses.dataclass(frozen=True)
class Drawing:
    """An SVG document's drawing: `strokes` the centrelines its stroked shapes draw (to
    thicken by the stroke width), `filled` the closed outlines of its filled shapes (each
    subpath closed, as SVG fills it; one enclosing no area left out); a shape both filled and
    stroked is in both. `meta` the `key: value` lines of the file's opening comment (Tabler's
    `tags: [a, b]` a list of str; quotes around a value or an item dropped)."""

    strokes: tuple[np.ndarray, ...]
    filled: tuple[np.ndarray, ...]
    meta: dict


# Elements drawn, elements whose children are drawn, and elements that draw no line (text is
# left out: KanjiVG numbers its strokes with <text>).
_SHAPES = {"path", "circle", "ellipse", "line", "polyline", "polygon", "rect"}
_CONTAINERS = {"svg", "g"}  # <svg> as the root only
_IGNORED = {"text", "title", "desc", "metadata", "defs"}


def read(text: str, tolerance: float) -> Drawing:
    """The drawing of an SVG document's `<path>`, `<circle>`, `<ellipse>`, `<line>`,
    `<polyline>`, `<polygon>` and `<rect>` elements, inside `<g>` groups too, whether each is
    stroked and filled by its `stroke` and `fill` (attribute or `style`, inherited; SVG's
    defaults fill black and stroke nothing). ValueError for any other element that may draw,
    and for a `transform` on an element drawn or a group (neither KanjiVG nor Tabler has
    one; KanjiVG's stroke-number <text> elements have one, and text is left out)."""
    check_tolerance(tolerance)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"SVG document is not XML: {e}") from None
    strokes: list[np.ndarray] = []
    filled: list[np.ndarray] = []

    def visit(element, paint):
        tag = element.tag.rpartition("}")[2]
        if tag in _IGNORED:
            return
        # an <svg> inside the document would map its own viewBox: not supported
        if tag not in _SHAPES and tag != "g" and not (tag == "svg" and element is root):
            raise ValueError(f"SVG element <{tag}> is not supported")
        if "transform" in element.attrib:
            raise ValueError(f"SVG element <{tag}> has a transform, which is not supported")
        paint = _paint(element, paint)
        if tag in _CONTAINERS:
            for child in element:
                visit(child, paint)
            return
        lines = _shape(tag, element.attrib, tolerance)
        if paint["stroke"] != "none":
            strokes.extend(lines)
        if paint["fill"] != "none":
            for line in lines:
                if not np.array_equal(line[0], line[-1]):
                    line = np.concatenate([line, line[:1]])
                if len(np.unique(line, axis=0)) >= 3:
                    filled.append(line)

    visit(root, {"fill": "black", "stroke": "none"})
    return Drawing(tuple(strokes), tuple(filled), _meta(text))


def _paint(element, inherited: dict) -> dict:
    """The element's fill and stroke: its own attribute, overridden by its `style`, else
    its parent's."""
    paint = dict(inherited)
    for name in paint:
        if name in element.attrib:
            paint[name] = element.attrib[name].strip()
    for declaration in element.attrib.get("style", "").split(";"):
        name, _, value = declaration.partition(":")
        if name.strip() in paint:
            paint[name.strip()] = value.strip()
    return paint


def _number(attrib: dict, name: str, tag: str) -> float:
    """A length attribute in user units (absent: 0, SVG's default)."""
    value = attrib.get(name, "0").strip()
    m = _NUMBER.fullmatch(value.removesuffix("px"))
    if m is None:
        raise ValueError(f"SVG element <{tag}>: {name}={value!r} is not a number of user units")
    return float(value.removesuffix("px"))


def _shape(tag: str, attrib: dict, tolerance: float) -> list[np.ndarray]:
    """The polylines one shape element draws."""
    if tag == "path":
        return path(attrib.get("d", ""), tolerance) if attrib.get("d", "").strip() else []
    if tag in ("polyline", "polygon"):
        points = attrib.get("points", "")
        nums = [float(x) for x in _NUMBER.findall(points)]
        if _NUMBER.sub(" ", points).strip(" \t\r\n,") or len(nums) % 2 or len(nums) < 4:
            raise ValueError(f"SVG element <{tag}>: points must be two or more x, y pairs")
        pts = np.reshape(nums, (-1, 2))
        return [np.concatenate([pts, pts[:1]]) if tag == "polygon" else pts]
    get = {name: _number(attrib, name, tag) for name in ("x", "y", "x1", "y1", "x2", "y2")}
    if tag == "line":
        return [np.array([[get["x1"], get["y1"]], [get["x2"], get["y2"]]])]
    if tag in ("circle", "ellipse"):
        cx, cy = _number(attrib, "cx", tag), _number(attrib, "cy", tag)
        if tag == "circle":
            rx = ry = _number(attrib, "r", tag)
        else:
            rx, ry = _number(attrib, "rx", tag), _number(attrib, "ry", tag)
        if rx < 0 or ry < 0:
            raise ValueError(f"SVG element <{tag}>: a negative radius")
        return [ellipse(cx, cy, rx, ry, tolerance)] if rx > 0 and ry > 0 else []  # 0: none
    # rect: square corners, or quarter-ellipse ones of radii rx, ry (one given: both equal)
    x, y = get["x"], get["y"]
    w, h = _number(attrib, "width", tag), _number(attrib, "height", tag)
    if w < 0 or h < 0:
        raise ValueError(f"SVG element <{tag}>: a negative width or height")
    if w == 0 or h == 0:
        return []
    rx = _number(attrib, "rx", tag) if "rx" in attrib else None
    ry = _number(attrib, "ry", tag) if "ry" in attrib else None
    rx, ry = (rx if rx is not None else ry) or 0.0, (ry if ry is not None else rx) or 0.0
    rx, ry = min(abs(rx), w / 2), min(abs(ry), h / 2)
    if rx == 0 or ry == 0:
        return [np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]], np.float64)]
    corner = f"A{rx!r},{ry!r} 0 0 1"  # a quarter ellipse, clockwise on the canvas
    d = (
        f"M{x + rx!r},{y!r} H{x + w - rx!r} {corner} {x + w!r},{y + ry!r} V{y + h - ry!r} "
        f"{corner} {x + w - rx!r},{y + h!r} H{x + rx!r} {corner} {x!r},{y + h - ry!r} "
        f"V{y + ry!r} {corner} {x + rx!r},{y!r} Z"
    )
    return path(d, tolerance)


_COMMENT = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?<!--(.*?)-->", re.S)
_META_LINE = re.compile(r"^\s*([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$")


def _meta(text: str) -> dict:
    """The `key: value` lines of the document's opening comment (one before any element):
    `[a, "b"]` as a list of str, surrounding quotes dropped; the other lines ignored."""
    m = _COMMENT.match(text)
    if m is None:
        return {}
    meta: dict = {}
    for line in m.group(1).splitlines():
        kv = _META_LINE.match(line)
        if kv is None:
            continue
        key, value = kv.groups()
        if value.startswith("[") and value.endswith("]"):
            items = [item.strip() for item in value[1:-1].split(",")]
            meta[key] = [_unquote(item) for item in items if item]
        else:
            meta[key] = _unquote(value)
    return meta


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
