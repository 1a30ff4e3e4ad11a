"""Scene families: what an image is. Each family is one frozen dataclass in a module of its
own, registered by name; nothing else branches on a family's name.

    s = rectbert.scene("rotated")            # a family with its default options
    params_NxD = s.sample(key, n)
    values_NxPx16 = s.coverage(params_NxD, points_NxPx2)

Adding a family: a module here with one @register class, and its import below.
"""

from rectbert.scenes.base import (
    SCENES,
    Scene,
    compiled,
    from_record,
    implements,
    option,
    options,
    polygon_coverage,
    register,
    sampler,
    scene,
)
from rectbert.scenes.junction import Junction
from rectbert.scenes.rect import Rect
from rectbert.scenes.rects import Rects
from rectbert.scenes.rotated import Rotated

__all__ = [
    "SCENES",
    "Junction",
    "Rect",
    "Rects",
    "Rotated",
    "Scene",
    "compiled",
    "from_record",
    "implements",
    "option",
    "options",
    "polygon_coverage",
    "register",
    "sampler",
    "scene",
]
