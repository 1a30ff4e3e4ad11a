"""Figures of examples: shapes and their downsampled images, the codebook, inpainted squares,
grids and sparse points, dense renderings, oracle posteriors and joint samples. Each takes
numpy-convertible arrays and a path, and writes one PNG."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rectbert.geometry import shapes
from rectbert.viz.base import masked_rgb, outline, save


def downsampled_shape(full_HxW, small_hxw, polygons, path: str) -> str:
    """The write-up's "DownsampledRectangle": full resolution beside the area-downsampled image."""
    full, small = np.asarray(full_HxW), np.asarray(small_hxw)
    fig = Figure(figsize=(8, 4))
    ax_full, ax_small = fig.subplots(1, 2)
    ax_full.imshow(full, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_full.set_title(f"{full.shape[0]}x{full.shape[1]} shape")
    # pixel (r, c) covers [c, c + 1): imshow centres it on c, so outlines shift by half a pixel
    outline(ax_full, [np.asarray(p) - 0.5 for p in polygons], edgecolor="red", lw=1)
    ax_small.imshow(small, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell = full.shape[0] // small.shape[0]
    ax_small.set_title(f"area-downsampled x{cell} to {small.shape[0]}x{small.shape[1]}")
    for ax in (ax_full, ax_small):
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)


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
        title += " (n: uses on held-out shapes)"
    fig.suptitle(title)
    return save(fig, path)


def square_panels(tokens_NxL, mask_NxL, pred_NxL, path: str, *, n: int = 8) -> str:
    """Rows of (masked input, prediction, truth); wrong predictions outlined in red."""
    tokens, mask, pred = (np.asarray(a) for a in (tokens_NxL, mask_NxL, pred_NxL))
    rows = len(tokens)
    fig = Figure(figsize=(6, 2 * rows))
    axes = np.asarray(fig.subplots(rows, 3)).reshape(rows, 3)
    for i in range(rows):
        filled = np.where(mask[i], pred[i], tokens[i]).reshape(n, n)
        panels = (
            masked_rgb(tokens[i].reshape(n, n), mask[i].reshape(n, n)),
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
    return save(fig, path)


def grid_panels(images_NxHxW, tokens_NxL, mask_NxL, pred_NxL, centroids_KxG, path: str) -> str:
    """The write-up's "RectangleGridInpainting": truth, masked tokens, stitched prediction."""
    from rectbert.geometry import codebook

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
            (masked_rgb(visible[i], vis_cover[i] == 0), f"input ({int(mask[i].sum())} masked)"),
            (recon[i], f"stitched prediction (acc {acc:.2f})"),
        )
        for ax, (img, name) in zip(axes[i], panels, strict=True):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    return save(fig, path)


def sparse_results(
    outlines_N,
    points_NxPx2,
    tokens_NxP,
    mask_NxP,
    pred_NxP,
    centroids_KxG,
    path: str,
    *,
    size=shapes.CANVAS,
    tile: float = 22.0,
) -> str:
    """The write-up's "RectangleTestResults": every point's token as a small tile at its
    coordinate — visible (grey frame), predicted right (green), predicted wrong (red, with
    the true token beside it) — and the true shape's outline (polygons per example) in red."""
    points, tokens, mask, pred = (
        np.asarray(a) for a in (points_NxPx2, tokens_NxP, mask_NxP, pred_NxP)
    )
    c = np.asarray(centroids_KxG)
    n = len(outlines_N)
    fig = Figure(figsize=(4.2 * n, 4.6))
    axes = np.atleast_1d(fig.subplots(1, n))
    for i, ax in enumerate(axes):
        ax.set_facecolor("#202020")
        for p in range(points.shape[1]):
            truth = tokens[i, p]
            guess = pred[i, p] if mask[i, p] else None
            _token_tile(ax, c, points[i, p], truth, guess, tile)
        outline(ax, outlines_N[i], edgecolor="red", lw=1.5, ls="--", zorder=4)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        right = int((mask[i] & (pred[i] == tokens[i])).sum())
        ax.set_title(f"{right}/{int(mask[i].sum())} hidden tokens right", fontsize=10)
    fig.suptitle(
        "held-out shapes: grey = visible, green = predicted right, red = wrong "
        "(true token beside it); dashed red = true shape",
        fontsize=9,
    )
    return save(fig, path)


def _token_tile(ax, centroids_KxG, point, truth: int, guess, tile: float) -> None:
    """One point's token as a tile at its coordinate: the truth framed grey where visible
    (guess None); else the guess, framed green if right, red if wrong with the truth beside."""
    c = np.asarray(centroids_KxG)
    g = int(round(c.shape[1] ** 0.5))
    x, y = point

    def image(token, extent):
        style = dict(cmap="gray", vmin=0, vmax=1, interpolation="nearest", zorder=2)
        ax.imshow(c[token].reshape(g, g), extent=extent, **style)

    image(
        truth if guess is None else guess, (x - tile / 2, x + tile / 2, y + tile / 2, y - tile / 2)
    )
    color = "0.6" if guess is None else ("lime" if guess == truth else "red")
    frame = Rectangle((x - tile / 2, y - tile / 2), tile, tile, fill=False, ec=color, zorder=3)
    frame.set_linewidth(0.8 if guess is None else 2.2)
    ax.add_patch(frame)
    if guess is not None and guess != truth:  # the true token, small, right of the guess
        image(truth, (x + tile / 2 + 2, x + tile, y, y - tile / 2))


def dense_rendering(
    rows: list[tuple], path: str, *, title: str = "", outlines: list | None = None
) -> str:
    """Rows of (true image, visible points [V,2], rendered image, label, dashed region or
    None): the model queried on a dense lattice given only the visible points, stitched into
    an image; `outlines` (a row's list of [V, 2] rings, canvas pixels) drawn over the
    rendering, where the true shape's edge is."""
    fig = Figure(figsize=(8.4, 4.2 * len(rows)))
    axes = np.asarray(fig.subplots(len(rows), 2)).reshape(len(rows), 2)
    for r, ((truth, visible, rendered, label, region), (ax_t, ax_r)) in enumerate(
        zip(rows, axes, strict=True)
    ):
        ax_t.imshow(truth, cmap="gray", vmin=0, vmax=1)
        ax_t.scatter(visible[:, 0], visible[:, 1], s=14, c="orange", edgecolors="k", lw=0.5)
        ax_t.set_title("truth and the visible points", fontsize=9)
        ax_r.imshow(np.nan_to_num(rendered, nan=0.0), cmap="gray", vmin=0, vmax=1)
        ax_r.set_title(label, fontsize=9)
        for ring in outlines[r] if outlines else ():
            closed = np.concatenate([ring, ring[:1]])
            ax_r.plot(closed[:, 0] - 0.5, closed[:, 1] - 0.5, c="tab:orange", lw=0.9, ls="--")
        for ax in (ax_t, ax_r):
            if region is not None:
                x0, y0, x1, y1 = region
                ax.add_patch(
                    Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1.2, ls="--")
                )
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def oracle_posterior(
    outlines_N,
    sample_outlines_N,
    points_NxPx2,
    tokens_NxP,
    mask_NxP,
    model_pred_NxP,
    oracle_pred_NxP,
    path: str,
    *,
    size=shapes.CANVAS,
) -> str:
    """Posterior samples (each a list of outline polygons) over the visible points, the true
    shape in red, and the model's and the oracle's hidden-token predictions side by side."""
    points, tokens, mask, mp, op = (
        np.asarray(a) for a in (points_NxPx2, tokens_NxP, mask_NxP, model_pred_NxP, oracle_pred_NxP)
    )
    n = len(outlines_N)
    fig = Figure(figsize=(4.2 * n, 4.6))
    axes = np.atleast_1d(fig.subplots(1, n))
    for i, ax in enumerate(axes):
        ax.set_facecolor("#151515")
        for sample in sample_outlines_N[i]:
            outline(ax, sample, edgecolor="deepskyblue", lw=0.6, alpha=0.35)
        outline(ax, outlines_N[i], edgecolor="red", lw=1.6)
        vis = ~mask[i]
        ax.scatter(
            points[i, vis, 0], points[i, vis, 1], s=12, c="orange", zorder=3, label="visible"
        )
        for p in np.flatnonzero(mask[i]):
            x, y = points[i, p]
            for dx, pred, rim in ((-5, mp[i, p], "k"), (5, op[i, p], "w")):
                if pred == tokens[i, p]:
                    ax.scatter([x + dx], [y], marker="o", s=40, zorder=4, c="lime", edgecolors=rim)
                else:  # an unfilled marker: no rim
                    ax.scatter([x + dx], [y], marker="x", s=40, zorder=4, c="red")
        model_acc = (mp[i] == tokens[i])[mask[i]].mean()
        oracle_acc = (op[i] == tokens[i])[mask[i]].mean()
        ax.set_title(f"model {model_acc:.0%} | oracle {oracle_acc:.0%} of hidden right", fontsize=9)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "blue: posterior samples; red: truth; at each hidden point model (left, black "
        "rim) and oracle (right, white rim): o right, x wrong",
        fontsize=9,
    )
    return save(fig, path)


def samples(truth, visible_Vx2, rows: list[tuple], path: str, *, title: str = "", extent=256.0):
    """A grid of dense renderings: the truth with the visible points, then one row per method
    (label, images); every image spans the canvas [0, extent]^2."""
    return completions([(truth, visible_Vx2, rows)], path, title=title, extent=extent)


def completions(blocks: list[tuple], path: str, *, title: str = "", extent=256.0, height=1.6):
    """Blocks of rows of dense renderings, one block per (example, visible set): (truth, its
    visible points [V, 2], rows of (label, images)); the truth at the left of the block's
    first row, the visible points (orange) on every image; each spans [0, extent]^2."""
    rows = [(label, images, b) for b, (_, _, block) in enumerate(blocks) for label, images in block]
    cols = max(len(images) for _, images, _ in rows)
    tall = height * len(rows) + 0.4
    fig = Figure(figsize=(1.5 * (cols + 1), tall))
    axes = np.asarray(fig.subplots(len(rows), cols + 1, squeeze=False))
    fig.subplots_adjust(top=1 - 0.45 / tall, bottom=0.1 / tall, hspace=0.3)  # title: 0.45 in
    box = (0, extent, extent, 0)

    def points(ax, b):
        v = np.asarray(blocks[b][1]).reshape(-1, 2)
        ax.scatter(v[:, 0], v[:, 1], s=9, c="orange", edgecolors="k", lw=0.4)

    for r, (label, images, b) in enumerate(rows):
        first = axes[r, 0]
        if r == 0 or rows[r - 1][2] != b:
            first.imshow(blocks[b][0], cmap="gray", vmin=0, vmax=1, extent=box)
            first.set_title("truth", fontsize=8)
            points(first, b)
        else:
            first.set_visible(False)
        for c in range(cols):
            ax = axes[r, c + 1]
            if c < len(images):
                img = np.nan_to_num(np.asarray(images[c], np.float64), nan=0.0)
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=box)
                points(ax, b)
            else:
                ax.set_visible(False)
            if c == 0:
                ax.set_title(label, fontsize=8, loc="left")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(0, extent)
            ax.set_ylim(extent, 0)
    if title:  # in the 0.45 in kept above the rows, however tall the figure
        fig.suptitle(title, fontsize=9, y=1 - 0.1 / tall, va="top")
    return save(fig, path)


def point_samplers(image, junctions_Jx2, columns: list[tuple], path: str, *, title: str = ""):
    """One drawing seen by several point samplers: columns of (label, points [P, 2]) over its
    image (canvas pixels), its junctions ringed in every panel."""
    fig = Figure(figsize=(2.6 * len(columns), 2.9))
    axes = np.atleast_1d(fig.subplots(1, len(columns)))
    box = (0, shapes.CANVAS, shapes.CANVAS, 0)
    j = np.asarray(junctions_Jx2, np.float64).reshape(-1, 2)
    for ax, (label, pts) in zip(axes, columns, strict=True):
        ax.imshow(1 - np.asarray(image), cmap="gray", vmin=0, vmax=1, extent=box)
        ax.scatter(j[:, 0], j[:, 1], s=70, facecolors="none", edgecolors="tab:blue", lw=0.8)
        p = np.asarray(pts)
        ax.scatter(p[:, 0], p[:, 1], s=12, c="tab:orange", edgecolors="k", lw=0.4)
        lo, hi = shapes.point_bounds()
        ax.add_patch(Rectangle((lo, lo), hi - lo, hi - lo, fill=False, ec="0.6", lw=0.6, ls=":"))
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)
