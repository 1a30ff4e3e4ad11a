"""`icon`: a line icon of Tabler's outline set (the optional extra `icons`), its paths and
circles flattened and drawn with a round pen into an exact polygon once, then placed as
`glyph`'s and `kanji`'s (drawn.py)."""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import numpy as np

from rectbert import config
from rectbert.geometry import drawings, sources
from rectbert.scenes.base import option, register
from rectbert.scenes.drawn import Drawn

# everyday things, one icon each (the default set; --icons=all is Tabler's 4,577)
ICONS = (
    "home", "star", "heart", "cloud", "sun", "moon", "bell", "key", "lock", "mail", "phone",
    "camera", "clock", "car", "bike", "tree", "leaf", "fish", "cup", "book", "flag",
    "umbrella", "anchor", "bulb",
)  # fmt: skip


@functools.cache
def _icon_library(icons: tuple[str, ...], weight: float, tolerance: float) -> drawings.Library:
    """The set's drawings, the polygon within `tolerance` ems of the true drawing: the pen's
    share of it to outline(), the rest to flattening the curves (in Tabler's units)."""
    pen = drawings.PEN_SHARE * tolerance

    def parts(name):
        return sources.icon_parts(name, (tolerance - pen) * sources.ICON_EM)

    chosen = sources.icon_selection(icons)
    return drawings.library(chosen, parts, sources.ICON_EM, weight, tolerance, pen)


@register
@dataclasses.dataclass(frozen=True)
class Icon(Drawn):
    """A Tabler outline icon, drawn as Tabler draws it and placed as glyph's letters are.

    Tabler Icons (tabler.io/icons, MIT) are the optional extra `icons`. `icons` names the set:
    icon names, 'category:<name>' (the category Tabler's file gives; several allowed; 753 icons
    have none) or 'all' (4,577). Every <path> and <circle> is flattened (lines exact; arcs,
    circles, quadratic and cubic Béziers to within 0.04 canvas pixel at the largest size) and
    drawn with a round pen, as Tabler's SVG says (stroke-linecap and stroke-linejoin round; a
    shape with a fill, Tabler's dots, filled too; arcs and simplification within 0.06): the
    polygon is within 0.1 pixel of the true drawing. stroke_weight is Tabler's 2 of its 24-unit
    grid by default; size is the side of that grid in canvas pixels. Parameters (icon index,
    size, angle, x, y). An icon whose polygon repeats an earlier one's is left out, with a
    warning. Held out of training, evaluated as unseen: unseen_categories (train on every other
    category) and/or unseen_fraction (by a stable hash of the name)."""

    name: ClassVar[str] = "icon"
    set_field: ClassVar[str] = "icons"
    requires: ClassVar[tuple[str, ...]] = ("pytablericons",)
    stroke_weight: float = option(
        2 / 24, "Stroke width, a fraction of the em (of the size), in [0.0001, 0.25]."
    )
    icons: tuple[str, ...] = option(
        ICONS, "Tabler outline icons: names, 'category:<name>' (several) or 'all'.", kind="names"
    )
    unseen_categories: tuple[str, ...] = option(
        (),
        "Icon categories held out of training, evaluated as unseen ('' : none).",
        kind="names",
    )
    tolerance_px: ClassVar[float] = 0.1  # the polygon from the true drawing, at the largest size
    _group_field: ClassVar[str] = "unseen_categories"

    def __post_init__(self):
        self._check_common(
            [
                (len(self.icons) > 0, "icons", "names, 'category:<name>' or 'all'"),
                (
                    len(set(self.unseen_categories)) == len(self.unseen_categories),
                    "unseen_categories",
                    "each category once",
                ),
            ]
        )

    def _check_common(self, extra_checks) -> None:
        for c in self.unseen_categories:  # before the set is built: one line, no compute
            try:
                found = sources.icon_category_named(c)
            except sources.MissingError as e:
                raise config.error(self, "icons", f"drawings the libraries have ({e})") from None
            if found is None:
                cats = sorted(set(sources.icon_categories().values()) - {""})
                raise config.error(self, "unseen_categories", f"Tabler's categories: {cats}")
        super()._check_common(extra_checks)

    def _drawings(self):
        tolerance = self.tolerance_px / float(self.glyph_size[1])  # ems
        return _icon_library(tuple(self.icons), float(self.stroke_weight), tolerance)

    def _held_out(self):
        return None  # by name: unseen_fraction; by group: unseen_categories

    def _grouped(self) -> bool:
        return bool(self.unseen_categories)

    def _held_rows(self, lib) -> np.ndarray:
        held = {sources.icon_category_named(c) for c in self.unseen_categories}
        cats = sources.icon_categories()
        return np.array([cats[n] in held for n in lib.names], bool)
