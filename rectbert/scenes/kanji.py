"""`kanji`: a kanji of KanjiVG (the optional extra `kanji`), its Bézier strokes flattened and
thickened into an exact polygon once, then placed as `glyph`'s (drawn.py)."""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

from rectbert.geometry import drawings
from rectbert.scenes.base import option, register
from rectbert.scenes.drawn import Drawn, names

KANJI = "一二三四五六七八九十人入大小山川口日月木水火土中上下右左田石"  # 1-5 strokes, common


@functools.cache
def _kanji_library(kanji: str, weight: float, tolerance: float) -> drawings.Library:
    return drawings.library(
        names(kanji), lambda c: drawings.kanji_strokes(c, tolerance), drawings.KANJI_EM, weight
    )


@register
@dataclasses.dataclass(frozen=True)
class Kanji(Drawn):
    """A kanji of KanjiVG, its strokes thickened and placed as glyph's letters are.

    KanjiVG (CC BY-SA 3.0, kanjivg.tagaini.net) is the optional extra `kanji`. Its stroke
    centrelines (cubic Béziers, flattened to within 0.1 canvas pixel at the largest size) are
    thickened and placed as `glyph`'s: parameters (kanji index, size, angle, x, y); size is the
    side of KanjiVG's 109-unit box in canvas pixels. A kanji whose polygon repeats an earlier
    one's (KanjiVG draws the radical ⺉ as 刂) is left out of the set, with a warning; one in
    unseen_kanji may not be one of the training set's."""

    name: ClassVar[str] = "kanji"
    set_field: ClassVar[str] = "kanji"
    requires: ClassVar[tuple[str, ...]] = ("kanjivg",)
    kanji: str = option(KANJI, "Characters of the kanji set.", kind="str")
    unseen_kanji: str = option(
        "", "Kanji held out of training, evaluated as unseen ('' : none).", kind="str"
    )
    tolerance_px: ClassVar[float] = 0.1  # Bézier flattening, at the largest size

    def __post_init__(self):
        self._check_common(
            [
                (len(names(self.kanji)) > 0, "kanji", "at least one character"),
                (
                    not self.unseen_kanji or names(self.unseen_kanji),
                    "unseen_kanji",
                    "characters, or '' for none",
                ),
            ]
        )
        self._check_held_out("unseen_kanji")

    def _drawings(self):
        tolerance = self.tolerance_px * drawings.KANJI_EM / float(self.glyph_size[1])
        return _kanji_library(self.kanji, float(self.stroke_weight), tolerance)

    def _held_out(self):
        if not self.unseen_kanji:
            return None
        return dataclasses.replace(self, kanji=self.unseen_kanji, unseen_kanji="")
