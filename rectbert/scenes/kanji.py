"""`kanji`: a kanji of KanjiVG (the optional extra `kanji`), its curved strokes flattened and
drawn with a round pen into an exact polygon once, then placed as `glyph`'s (drawn.py)."""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

from rectbert.geometry import drawings, sources
from rectbert.scenes.base import option, register
from rectbert.scenes.drawn import Drawn

KANJI = "一二三四五六七八九十人入大小山川口日月木水火土中上下右左田石"  # 1-5 strokes, common


@functools.cache
def _kanji_library(kanji: str, weight: float, tolerance: float) -> drawings.Library:
    """The set's drawings, the polygon within `tolerance` ems of the true strokes: the pen's
    share of it to outline(), the rest to flattening the Béziers (in KanjiVG's units)."""
    pen = drawings.PEN_SHARE * tolerance

    def parts(c):
        return sources.kanji_strokes(c, (tolerance - pen) * sources.KANJI_EM), ()

    chars = sources.kanji_selection(kanji)
    return drawings.library(chars, parts, sources.KANJI_EM, weight, tolerance, pen)


@register
@dataclasses.dataclass(frozen=True)
class Kanji(Drawn):
    """A kanji of KanjiVG, its strokes drawn with a round pen and placed as glyph's letters are.

    KanjiVG (CC BY-SA 3.0, kanjivg.tagaini.net) is the optional extra `kanji`. `kanji` names the
    set: characters, 'strokes:lo-hi' (every character KanjiVG draws with lo to hi strokes, by
    code point: strokes:1-8 is 1,602) or 'all' (6,703); 'All' or 'STROKES:' are refused. Each
    stroke's centreline (cubic Béziers) is flattened to within 0.04 canvas pixel at the largest
    size and drawn with a round pen as KanjiVG's SVG draws it (round caps and joins; arcs and
    simplification within 0.06: drawings.outline): the polygon is within 0.1 pixel of the true
    stroke. Parameters (kanji index, size, angle, x, y); size is the side of KanjiVG's 109-unit
    box in canvas pixels. A kanji whose polygon repeats an earlier one's (KanjiVG draws the
    radical ⺉ as 刂) is left out of the set, with a warning. Held out of training, evaluated as
    unseen: unseen_kanji (none of the training set's polygons) or unseen_fraction."""

    name: ClassVar[str] = "kanji"
    set_field: ClassVar[str] = "kanji"
    requires: ClassVar[tuple[str, ...]] = ("kanjivg",)
    kanji: str = option(
        KANJI, "The kanji set: characters, 'strokes:lo-hi' or 'all' (KanjiVG's).", kind="str"
    )
    unseen_kanji: str = option(
        "",
        "Kanji held out of training, evaluated as unseen: as --kanji, or '' for none.",
        kind="str",
    )
    tolerance_px: ClassVar[float] = 0.1  # the polygon from the true stroke, at the largest size

    def __post_init__(self):
        self._check_common(
            [
                (self.kanji.strip() != "", "kanji", "characters, 'strokes:lo-hi' or 'all'"),
                (
                    not self.unseen_kanji or self.unseen_kanji.strip(),
                    "unseen_kanji",
                    "characters, 'strokes:lo-hi' or 'all', or '' for none",
                ),
            ]
        )
        self._check_held_out("unseen_kanji")

    def _drawings(self):
        tolerance = self.tolerance_px / float(self.glyph_size[1])  # ems
        return _kanji_library(self.kanji, float(self.stroke_weight), tolerance)

    def _named(self) -> bool:
        return bool(self.unseen_kanji)

    def _held_out(self):
        if not self.unseen_kanji:
            return None
        return dataclasses.replace(self, kanji=self.unseen_kanji, unseen_kanji="")
