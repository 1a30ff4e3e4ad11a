"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed).

Each function takes numpy-convertible arrays and a path, and writes one PNG.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rectbert import shapes


def _save(fig: Figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def downsampled_rectangle(rect_4, path: str, *, size=shapes.CANVAS, cell=shapes.CELL) -> str:
    """The write-up's "DownsampledRectangle": full resolution beside the area-downsampled image."""
    rect = np.asarray(rect_4, np.float32).reshape(1, 4)
    full = np.asarray(shapes.rasterise(rect, size=size))[0]
    small = np.asarray(shapes.downsample(rect, size=size, cell=cell))[0]
    fig = Figure(figsize=(8, 4))
    ax_full, ax_small = fig.subplots(1, 2)
    ax_full.imshow(full, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_full.set_title(f"{size}x{size} rectangle")
    ax_full.add_patch(
        Rectangle(
            (rect[0, 0] - 0.5, rect[0, 1] - 0.5),
            rect[0, 2] - rect[0, 0],
            rect[0, 3] - rect[0, 1],
            fill=False,
            edgecolor="red",
            lw=1,
        )
    )
    n = size // cell
    ax_small.imshow(small, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_small.set_title(f"area-downsampled x{cell} to {n}x{n}")
    for ax in (ax_full, ax_small):
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def codebook_tiles(centroids_KxG, path: str, *, counts_K=None) -> str:
    """The write-up's "RectangleClusterCenters": each centroid as a grid x grid tile."""
    c = np.asarray(centroids_KxG, np.float32)
    k, g2 = c.shape
    g = int(round(g2**0.5))
    cols = min(k, 10)
    rows = -(-k // cols)
    fig = Figure(figsize=(1.2 * cols, 1.35 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= k:
            ax.axis("off")
            continue
        ax.imshow(c[i].reshape(g, g), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        label = f"{i}" if counts_K is None else f"{i} (n={int(counts_K[i])})"
        ax.set_title(label, fontsize=8)
    title = f"{k} k-means centroids of {g}x{g} patches"
    if counts_K is not None:
        title += " (n: uses on held-out rectangles)"
    fig.suptitle(title)
    return _save(fig, path)
