"""`glyph`: a letter of a Hershey stroke font, thickened into an exact polygon once, then placed
by a random similarity transform (what it shares with `kanji`: drawn.py)."""

from __future__ import annotations

import dataclasses
import functools
import string
from typing import ClassVar

from rectbert.geometry import drawings, sources
from rectbert.scenes.base import option, register
from rectbert.scenes.drawn import Drawn, names

CAPITALS = string.ascii_uppercase


ALL = "all"  # every glyph a font draws


def _chars(font: str, glyphs: str) -> str:
    return sources.hershey_glyphs(font) if glyphs == ALL else "".join(names(glyphs))


@functools.cache
def _hershey_library(
    fonts: tuple[str, ...], glyphs: str, weight: float, within: float
) -> drawings.Library:
    keys = tuple(f"{font}:{c}" for font in fonts for c in _chars(font, glyphs))

    def parts(key):
        font, c = key.split(":", 1)
        return sources.hershey_strokes(font, c), ()

    return drawings.library(keys, parts, sources.HERSHEY_EM, weight, within)


@register
@dataclasses.dataclass(frozen=True)
class Glyph(Drawn):
    """A letter of a Hershey stroke font, thickened and placed at a random size, angle and place.

    The fonts are the `Hershey-Fonts` package's (MIT); a random similarity transform places the
    letter: parameters (glyph index, size, angle, x, y).

    The set is every character of `glyphs` ('all': every glyph the font draws, 3,000 and
    more over the 32 fonts) in every font of `font` (index: font-major), each drawing once:
    one whose polygon repeats an earlier one's (futural's l is its I; rowmans' capitals are
    futural's) is left out, with a warning. Strokes are `stroke_weight` ems
    wide, square-capped and mitre-joined, the union's polygon exact. size is the em's side in
    canvas pixels (a Hershey em is 32 font units: a capital is about 2/3 of it).
    unseen_glyphs / unseen_fonts name drawings held out of training (unseen()): none of their
    polygons may be one of the training set's, whatever its name, at the angles the scene
    places them (drawn.py); or unseen_fraction holds out that fraction of the set by a stable
    hash of 'font:character'."""

    name: ClassVar[str] = "glyph"
    tolerance_px: ClassVar[float] = (
        0.1  # two drawings nearer than this, at the largest size, are one
    )
    set_field: ClassVar[str] = "glyphs"
    font: tuple[str, ...] = option(
        ("futural",), "Hershey fonts 'a,b' of the glyph set.", kind="names"
    )
    glyphs: str = option(
        CAPITALS, "Characters of the glyph set (each font's), or 'all' it draws.", kind="str"
    )
    unseen_glyphs: str = option(
        "", "Characters held out of training, evaluated as unseen ('' : none).", kind="str"
    )
    unseen_fonts: tuple[str, ...] = option(
        (), "Fonts held out of training, evaluated as unseen ('' : none).", kind="names"
    )

    def __post_init__(self):
        fonts = sources.hershey_fonts()
        self._check_common(
            [
                (
                    len(self.font) > 0 and all(f in fonts for f in self.font),
                    "font",
                    f"Hershey fonts 'a,b': of {list(fonts)}",
                ),
                (len(set(self.font)) == len(self.font), "font", "each font once"),
                (len(names(self.glyphs)) > 0, "glyphs", "at least one character"),
                (
                    self.glyphs == ALL or self.glyphs.strip().lower() != ALL,
                    "glyphs",
                    "'all' in lower case for every glyph (the characters A and L: 'AL')",
                ),
                (
                    all(f in fonts for f in self.unseen_fonts),
                    "unseen_fonts",
                    f"Hershey fonts 'a,b' (or empty): of {list(fonts)}",
                ),
                (
                    len(set(self.unseen_fonts)) == len(self.unseen_fonts),
                    "unseen_fonts",
                    "each font once",
                ),
                (
                    not self.unseen_glyphs or names(self.unseen_glyphs),
                    "unseen_glyphs",
                    "characters, or '' for none",
                ),
            ]
        )
        self._check_held_out("unseen_glyphs" if self.unseen_glyphs else "unseen_fonts")

    def _drawings(self):
        within = self.tolerance_px / float(self.glyph_size[1])  # ems: nearer, one drawing
        return _hershey_library(tuple(self.font), self.glyphs, float(self.stroke_weight), within)

    def _named(self) -> bool:
        return bool(self.unseen_glyphs or self.unseen_fonts)

    def _held_out(self):
        if not (self.unseen_glyphs or self.unseen_fonts):
            return None
        return dataclasses.replace(
            self,
            font=self.unseen_fonts or self.font,
            glyphs=self.unseen_glyphs or self.glyphs,
            unseen_glyphs="",
            unseen_fonts=(),
        )
