"""Where the drawings come from, read from the installed packages at run time (nothing derived
from them is committed): Hershey stroke fonts (`Hershey-Fonts`, MIT), KanjiVG's kanji (the
optional extra `kanji`: CC BY-SA 3.0) and Tabler's outline icons (the optional extra `icons`:
MIT). Each gives a drawing's strokes as polylines in its own units, y down, and its sets by
name (every glyph of a font, kanji by stroke count, icons by category). drawings.py makes
their polygons."""

from __future__ import annotations

import functools
import importlib.metadata
import re

import numpy as np

from rectbert.geometry import svg

KANJI_EXTRA = "pip install -e '.[kanji]'"  # KanjiVG: CC BY-SA 3.0, kanjivg.tagaini.net
ICONS_EXTRA = "pip install -e '.[icons]'"  # Tabler Icons: MIT, tabler.io/icons
HERSHEY_EM = 32.0  # font units of a Hershey em: its glyphs span about -16..16 vertically
KANJI_EM = 109.0  # KanjiVG's drawing box
ICON_EM = 24.0  # Tabler's grid


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


@functools.cache
def hershey_glyphs(font: str) -> str:
    """Every character the font draws (with at least one stroke), in the font's order."""
    h = _hershey(font)
    drawn = (c for c in h.all_glyphs if len(c) == 1 and not c.isspace())
    return "".join(c for c in drawn if any(len(s) >= 2 for s in h.strokes_for_text(c)))


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


@functools.cache
def _kanji_paths(char: str) -> tuple[str, ...]:
    with open(kanji_file(char), encoding="utf-8") as f:
        text = f.read()
    body = text.split('id="kvg:StrokeNumbers')[0]  # the stroke paths, not the numbers
    return tuple(re.findall(r'<path[^>]*\sd="([^"]+)"', body))


def kanji_strokes(char: str, tolerance: float) -> list[np.ndarray]:
    """The character's strokes from KanjiVG as polylines in its 109-unit box, curves within
    `tolerance` of the polylines (svg.path)."""
    return [s for d in _kanji_paths(char) for s in svg.path(d, tolerance)]


def _distribution(package: str, why: str):
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingError(why) from None


@functools.cache
def kanji_all() -> tuple[str, ...]:
    """Every character KanjiVG draws (its base files, not the variants), by code point."""
    dist = _distribution("kanjivg", f"the kanji scene needs KanjiVG: {KANJI_EXTRA}")
    found = (re.fullmatch(r"kanji/([0-9a-f]{5})\.svg", str(f)) for f in dist.files or ())
    return tuple(sorted(chr(int(m.group(1), 16)) for m in found if m))


def kanji_stroke_count(char: str) -> int:
    return len(_kanji_paths(char))


STROKES = re.compile(r"strokes:(\d+)(?:-(\d+))?")


def kanji_selection(text: str) -> tuple[str, ...]:
    """The characters a --kanji value names: 'all' (every character KanjiVG draws),
    'strokes:lo-hi' or 'strokes:n' (those of lo to hi strokes, by code point), or characters
    (in order, each once, white space left out). MissingError (one line) for a stroke range
    that is not one, or a character KanjiVG does not draw."""
    text = text.strip()
    if text == "all":
        return kanji_all()
    if text.lower() == "all" or (text.lower().startswith("strokes:") and text[:8] != "strokes:"):
        raise MissingError(f"'all' and 'strokes:' are written in lower case; got {text!r}")
    m = STROKES.fullmatch(text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= lo <= hi:
            raise MissingError(f"a stroke range 'strokes:lo-hi' has 1 <= lo <= hi; got {text!r}")
        chars = tuple(c for c in kanji_all() if lo <= kanji_stroke_count(c) <= hi)
        if not chars:
            most = max(map(kanji_stroke_count, kanji_all()))
            raise MissingError(f"KanjiVG draws no character of {text[8:]} strokes (1 to {most})")
        return chars
    if text.startswith("strokes:"):
        raise MissingError(f"a stroke range is 'strokes:lo-hi' or 'strokes:n'; got {text!r}")
    chars = tuple(dict.fromkeys(c for c in text if not c.isspace()))
    for c in chars:
        kanji_file(c)  # MissingError: no such drawing
    return chars


# ----------------------------------------------------------------------------- Tabler icons
def _icons():
    return _distribution("pytablericons", f"the icon scene needs Tabler Icons: {ICONS_EXTRA}")


@functools.cache
def icon_names() -> tuple[str, ...]:
    """Every outline icon Tabler draws, by name (sorted)."""
    found = (
        re.fullmatch(r"pytablericons/icons/outline/([^/]+)\.svg", str(f))
        for f in _icons().files or ()
    )
    return tuple(sorted(m.group(1) for m in found if m))


@functools.cache
def icon_text(name: str) -> str:
    if name not in _icon_set():
        raise MissingError(f"Tabler has no outline icon {name!r}")
    path = _icons().locate_file(f"pytablericons/icons/outline/{name}.svg")
    with open(path, encoding="utf-8") as f:
        return f.read()


@functools.cache
def _icon_set() -> frozenset[str]:
    return frozenset(icon_names())


_CATEGORY = re.compile(r"^category:\s*(.+?)\s*$", re.M | re.I)  # two files write Category:


@functools.cache
def icon_categories() -> dict[str, str]:
    """Each icon's category, from the comment that opens its file ('' where it has none)."""
    out = {}
    for name in icon_names():
        head = icon_text(name).split("-->", 1)[0]
        m = _CATEGORY.search(head)
        out[name] = m.group(1) if m else ""
    return out


def icon_selection(items) -> tuple[str, ...]:
    """The icons an --icons value names: names, 'category:<name>' (case as Tabler writes it,
    or any case), 'all'; in order, each once. MissingError (one line) for a name or a
    category Tabler lacks."""
    cats = icon_categories()
    by_lower = {c.lower(): c for c in cats.values() if c}
    out = []
    for item in items:
        item = item.strip()
        if item == "all":
            out.extend(icon_names())
        elif item.startswith("category:"):
            want = by_lower.get(item[len("category:") :].strip().lower())
            if want is None:
                raise MissingError(
                    f"Tabler has no icon category {item[len('category:') :]!r}: one of "
                    f"{sorted(by_lower.values())}"
                )
            out.extend(n for n in icon_names() if cats[n] == want)
        else:
            icon_text(item)  # MissingError: no such icon
            out.append(item)
    return tuple(dict.fromkeys(out))


def icon_category_named(text: str) -> str | None:
    """The category Tabler writes for `text` (any case), or None."""
    by_lower = {c.lower(): c for c in icon_categories().values() if c}
    return by_lower.get(text.strip().lower())


def icon_parts(name: str, tolerance: float):
    """(strokes, filled) of the icon in its 24-unit grid: the centrelines to thicken and the
    closed shapes filled as well (Tabler's dots), curves within `tolerance` (svg.read)."""
    drawing = svg.read(icon_text(name), tolerance)
    return list(drawing.strokes), list(drawing.filled)
