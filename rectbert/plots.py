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


def training_curves(rows: list[dict], path: str, *, title: str = "") -> str:
    """Loss and masked accuracy against step: train (logged windows) and held-out eval."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, ax in (("loss", ax_loss), ("masked_accuracy", ax_acc)):
        for split, style in (("train", "-"), ("eval", "o-")):
            pts = [(r["step"], r[f"{split}/{key}"]) for r in rows if f"{split}/{key}" in r]
            if pts:
                s, v = zip(*pts, strict=True)
                ax.plot(s, v, style, ms=3, label=split)
        ax.set_xlabel("step")
        ax.set_title(f"masked {key.replace('masked_', '')}")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_yscale("log")
    ax_acc.set_ylim(0, 1.02)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _masked_rgb(gray_HxW, mask_HxW):
    """Gray image with hidden pixels shown in mid-grey blue so they read as 'unknown'."""
    rgb = np.repeat(np.asarray(gray_HxW, np.float32)[..., None], 3, axis=-1)
    rgb[np.asarray(mask_HxW, bool)] = (0.35, 0.45, 0.75)
    return rgb


def square_panels(tokens_NxL, mask_NxL, pred_NxL, path: str, *, n: int = 8) -> str:
    """Rows of (masked input, prediction, truth); wrong predictions outlined in red."""
    tokens, mask, pred = (np.asarray(a) for a in (tokens_NxL, mask_NxL, pred_NxL))
    rows = len(tokens)
    fig = Figure(figsize=(6, 2 * rows))
    axes = np.asarray(fig.subplots(rows, 3)).reshape(rows, 3)
    for i in range(rows):
        filled = np.where(mask[i], pred[i], tokens[i]).reshape(n, n)
        panels = (
            _masked_rgb(tokens[i].reshape(n, n), mask[i].reshape(n, n)),
            filled,
            tokens[i].reshape(n, n),
        )
        for j, (ax, img, name) in enumerate(
            zip(axes[i], panels, ("input", "predicted", "truth"), strict=True)
        ):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
            if j == 1:
                for r, c in zip(
                    *np.nonzero((mask[i] & (pred[i] != tokens[i])).reshape(n, n)), strict=True
                ):
                    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=2))
    return _save(fig, path)


def grid_panels(images_NxHxW, tokens_NxL, mask_NxL, pred_NxL, centroids_KxG, path: str) -> str:
    """The write-up's "RectangleGridInpainting": truth, masked tokens, stitched prediction."""
    from rectbert import codebook

    images, tokens, mask, pred = (
        np.asarray(a) for a in (images_NxHxW, tokens_NxL, mask_NxL, pred_NxL)
    )
    c = np.asarray(centroids_KxG)
    recon = np.asarray(codebook.stitch(codebook.decode(np.where(mask, pred, tokens), c)))
    # the input as the model sees it: the mean of the visible patches over each pixel, and
    # blue where every patch over a pixel is masked
    vis = (~mask)[..., None].astype(np.float32)
    vis_sum = np.asarray(codebook.stitch(codebook.decode(tokens, c) * vis))
    vis_cover = np.asarray(codebook.stitch(np.broadcast_to(vis, (*mask.shape, c.shape[1]))))
    visible = np.where(vis_cover > 0, vis_sum / np.maximum(vis_cover, 1e-9), 0.0)
    rows = len(images)
    fig = Figure(figsize=(8, 2.1 * rows))
    axes = np.asarray(fig.subplots(rows, 3)).reshape(rows, 3)
    for i in range(rows):
        acc = (pred[i] == tokens[i])[mask[i]].mean() if mask[i].any() else 1.0
        panels = (
            (images[i], "true 16x16"),
            (_masked_rgb(visible[i], vis_cover[i] == 0), f"input ({int(mask[i].sum())} masked)"),
            (recon[i], f"stitched prediction (acc {acc:.2f})"),
        )
        for ax, (img, name) in zip(axes[i], panels, strict=True):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, path)
