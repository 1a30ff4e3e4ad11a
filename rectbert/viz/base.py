"""What every figure shares: an atomic PNG write and shape outlines (matplotlib's object API:
no pyplot state, no display needed)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from rectbert.files import WriteError, check_live


def save(fig: Figure, path: str) -> str:
    """Write the PNG whole or not at all: to a temporary name beside it, then renamed (a
    reader, or a second run writing the same figure, never sees half a file)."""
    check_live()
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def outline(ax, polygons, **style) -> None:
    """Draw a shape's outline polygons ([V, 2] (x, y) each) unfilled."""
    for poly in polygons:
        ax.add_patch(Polygon(np.asarray(poly), closed=True, fill=False, **style))


def masked_rgb(gray_HxW, mask_HxW):
    """Gray image with hidden pixels shown in mid-grey blue so they read as 'unknown'."""
    rgb = np.repeat(np.asarray(gray_HxW, np.float32)[..., None], 3, axis=-1)
    rgb[np.asarray(mask_HxW, bool)] = (0.35, 0.45, 0.75)
    return rgb
