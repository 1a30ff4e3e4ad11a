"""Scene families: what an image is. Each family is one frozen dataclass with an @register
line, in a module of its own in this folder; every module here is imported (so registered)
with the package, and nothing else branches on a family's name.

    s = rectbert.scene("rotated")            # a family with its default options
    params_NxD = s.sample(key, n)
    values_NxPx16 = s.coverage(params_NxD, points_NxPx2)

Adding a family: one new module here (docs: extending).
"""

import importlib
import pkgutil

from rectbert.scenes.base import (
    SCENES,
    Scene,
    from_record,
    implements,
    option,
    options,
    register,
    sampler,
    scene,
)
from rectbert.scenes.exact import compiled, polygon_coverage

for _module in pkgutil.iter_modules(__path__):  # each family's module registers it
    if _module.name not in ("base", "exact"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "SCENES",
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
