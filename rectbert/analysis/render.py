"""The model as an image: argmax tokens queried at any points given the visible ones, and
patch values painted over their windows into a picture (dense renderings, samples figures)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rectbert.data.tasks import Batch


def query(predict, params, visible_points_Vx2, visible_tokens_V, query_points_Qx2, *, chunk: int):
    """Argmax tokens [Q] at query points, given one example's visible (point, token) pairs.

    Queries go in chunks of `chunk` hidden positions beside all visible ones, as in training
    (so a full-attention model sees the number of hidden tokens it was trained with).
    `predict(params, batch) -> logits` is evaluation.make_predict's function.
    """
    vis_p = jnp.asarray(visible_points_Vx2, jnp.float32)
    vis_t = jnp.asarray(visible_tokens_V, jnp.int32)
    q = jnp.asarray(query_points_Qx2, jnp.float32)
    n_q, n_v = q.shape[0], vis_p.shape[0]
    n_chunks = -(-n_q // chunk)
    q = jnp.concatenate([q, jnp.broadcast_to(q[:1], (n_chunks * chunk - n_q, 2))])
    points = jnp.concatenate(
        [jnp.broadcast_to(vis_p, (n_chunks, n_v, 2)), q.reshape(n_chunks, chunk, 2)], axis=1
    )
    tokens = jnp.concatenate(
        [jnp.broadcast_to(vis_t, (n_chunks, n_v)), jnp.zeros((n_chunks, chunk), jnp.int32)], 1
    )
    mask = jnp.concatenate(
        [jnp.zeros((n_chunks, n_v), bool), jnp.ones((n_chunks, chunk), bool)], axis=1
    )
    logits = predict(params, Batch(points=points, tokens=tokens, mask=mask))
    return jnp.argmax(logits[:, n_v:], -1).reshape(-1)[:n_q]


def render(points_Nx2, values_NxG, *, size: int = 256, cell: int = 16):
    """[size, size] image: every point's grid x grid cell values painted over its window and
    averaged where windows overlap (at lattice spacing `cell` this is codebook.stitch)."""
    points = np.asarray(points_Nx2, np.float64)
    values = np.asarray(values_NxG, np.float64)
    grid = int(round(values.shape[1] ** 0.5))
    total, count = np.zeros((size, size)), np.zeros((size, size))
    half = grid * cell / 2
    for (px, py), v in zip(points, values.reshape(-1, grid, grid), strict=True):
        for r in range(grid):
            y0 = int(round(py - half + r * cell))
            for c in range(grid):
                x0 = int(round(px - half + c * cell))
                ys, xs = slice(max(y0, 0), max(y0 + cell, 0)), slice(max(x0, 0), max(x0 + cell, 0))
                total[ys, xs] += v[r, c]
                count[ys, xs] += 1
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def dense_lattice(spacing: float, *, lo: float = 32.0, hi: float = 224.0):
    """[M, 2] points on a square lattice over [lo, hi]^2 (the valid point region)."""
    t = np.arange(lo, hi + 1e-6, spacing, dtype=np.float32)
    ys, xs = np.meshgrid(t, t, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], -1)
