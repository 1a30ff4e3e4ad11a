"""The patch codebook: k-means (k-means++ then Lloyd, under jit), quantise, decode, stitch,
and its file (codebook.npy). Turns 4x4 patches of downsampled shapes into tokens and back.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.files import FileError, save_array
from rectbert.geometry import shapes


# ----------------------------------------------------------------------------- k-means
# Weighted k-means: a point of weight w counts as w copies. kmeans() first merges exact
# duplicate rows into one weighted row (patches of rectangles are ~70 % duplicates: all-black
# and all-white), which gives the same clustering at a fraction of the cost.
# Distances are |x|^2 - 2 c.x + |c|^2 with points on the last axis ([K, N]): one matmul and a
# reduction over the short axis, faster on CPU than [N, K] or explicit differences.
def _sq_dists_KxN(xt_DxN, x2_N, c_KxD):
    d = x2_N[None, :] - 2.0 * (c_KxD @ xt_DxN) + jnp.sum(c_KxD**2, axis=-1)[:, None]
    return jnp.maximum(d, 0.0)


def _draw(key, mass_N, shape=()):
    """Indices drawn with probability proportional to mass_N (zero mass is never drawn)."""
    cdf_N = jnp.cumsum(mass_N)
    u = jax.random.uniform(key, shape) * cdf_N[-1]
    return jnp.minimum(jnp.searchsorted(cdf_N, u, side="right"), mass_N.shape[0] - 1)


def _kmeans_plus_plus(key, xt_DxN, x2_N, w_N, k):
    """Greedy k-means++ (as scikit-learn): 2 + log(k) candidates per centre, keep the best."""
    trials = 2 + int(math.log(k))
    key, sub = jax.random.split(key)
    first = xt_DxN[:, _draw(sub, w_N)]
    closest_N = _sq_dists_KxN(xt_DxN, x2_N, first[None])[0]
    centroids = jnp.zeros((k, xt_DxN.shape[0]), xt_DxN.dtype).at[0].set(first)

    def body(i, state):
        key, centroids, closest_N = state
        key, sub = jax.random.split(key)
        cand_TxD = xt_DxN[:, _draw(sub, w_N * closest_N, (trials,))].T
        cand_closest_TxN = jnp.minimum(closest_N, _sq_dists_KxN(xt_DxN, x2_N, cand_TxD))
        best = jnp.argmin(cand_closest_TxN @ w_N)
        return key, centroids.at[i].set(cand_TxD[best]), cand_closest_TxN[best]

    return jax.lax.fori_loop(1, k, body, (key, centroids, closest_N))[1]


def _assign(xt_DxN, x2_N, c_KxD):
    # |x|^2 is the same for every centre: leave it out of the [K, N] array, add it to the min
    d_KxN = jnp.sum(c_KxD**2, axis=-1)[:, None] - 2.0 * (c_KxD @ xt_DxN)
    return jnp.argmin(d_KxN, axis=0), jnp.maximum(jnp.min(d_KxN, axis=0) + x2_N, 0.0)


def _exact_inertia(x_NxD, w_N, labels_N, c_KxD):
    # the expansion loses digits when |x|^2 is large and the distance small
    return jnp.sum(w_N * jnp.sum((x_NxD - c_KxD[labels_N]) ** 2, axis=-1))


def _lloyd_update(x_NxD, w_N, labels_N, min_N, k):
    """Centroids as weighted means; an empty cluster takes the farthest point from its centre."""
    sums_KxD = jax.ops.segment_sum(w_N[:, None] * x_NxD, labels_N, k)
    counts_K = jax.ops.segment_sum(w_N, labels_N, k)
    means_KxD = sums_KxD / jnp.maximum(counts_K, 1e-30)[:, None]
    empty_K = counts_K == 0
    far_K = jax.lax.top_k(jnp.where(w_N > 0, min_N, -1.0), k)[1]  # farthest first
    rank_K = jnp.cumsum(empty_K) - 1
    return jnp.where(empty_K[:, None], x_NxD[far_K[rank_K]], means_KxD)


@functools.partial(jax.jit, static_argnames=("k", "iters", "history"))
def _kmeans_single(key, x_NxD, w_N, k, iters, tol, history):
    xt_DxN = x_NxD.T
    x2_N = jnp.sum(x_NxD**2, axis=-1)
    # scikit-learn's stopping rule: the centres' total squared shift below tol * mean variance
    mean_D = (w_N @ x_NxD) / jnp.sum(w_N)
    shift_tol = tol * jnp.mean((w_N @ (x_NxD - mean_D) ** 2) / jnp.sum(w_N))
    init = _kmeans_plus_plus(key, xt_DxN, x2_N, w_N, k)
    inertia_I = jnp.full((iters if history else 1,), jnp.nan, x_NxD.dtype)

    def cond(state):
        it, _, shift, _ = state
        return (it < iters) & (shift > shift_tol)

    def body(state):
        it, c_KxD, _, inertia_I = state
        labels_N, min_N = _assign(xt_DxN, x2_N, c_KxD)
        if history:
            inertia_I = inertia_I.at[it].set(_exact_inertia(x_NxD, w_N, labels_N, c_KxD))
        new_KxD = _lloyd_update(x_NxD, w_N, labels_N, min_N, k)
        return it + 1, new_KxD, jnp.sum((new_KxD - c_KxD) ** 2), inertia_I

    state = (0, init, jnp.inf, inertia_I)
    _, c_KxD, _, inertia_I = jax.lax.while_loop(cond, body, state)
    inertia = _exact_inertia(x_NxD, w_N, _assign(xt_DxN, x2_N, c_KxD)[0], c_KxD)
    return c_KxD, inertia, inertia_I


@jax.jit
def _merge_duplicates(x_NxD, w_N):
    """Rows of x sorted so equal rows are adjacent, merged: (rows_NxD, weights_N, count).

    The first `count` rows are the distinct ones with summed weights; the rest have weight 0
    and repeat a real row (so a reseeded centre is always a data point).
    """
    n, d = x_NxD.shape
    bits_NxD = jax.lax.bitcast_convert_type(x_NxD, jnp.uint32)
    h_N = jnp.zeros((n,), jnp.uint32)
    for j in range(d):  # FNV-style hash: equal rows get equal hashes (collisions are harmless)
        h_N = (h_N ^ bits_NxD[:, j]) * jnp.uint32(16777619)
    order_N = jnp.argsort(h_N, stable=True)
    xs_NxD = x_NxD[order_N]
    new_N = jnp.concatenate([jnp.ones((1,), bool), jnp.any(xs_NxD[1:] != xs_NxD[:-1], axis=1)])
    group_N = jnp.cumsum(new_N) - 1
    rows_NxD = jnp.broadcast_to(xs_NxD[0], (n, d)).at[group_N].set(xs_NxD)
    weights_N = jnp.zeros((n,), w_N.dtype).at[group_N].add(w_N[order_N])
    return rows_NxD, weights_N, group_N[-1] + 1


def _check_kmeans(key, x_NxD, k, weights_N, iters, tol, n_init) -> None:
    """kmeans's arguments, in one ValueError naming the first that is wrong (values are
    checked where they are concrete: not inside a jit)."""
    shapes.check_key(key)
    shape = jnp.shape(x_NxD)
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"x_NxD must have shape [N, D] with N, D >= 1; got {shape}")
    shapes.check_whole("k", k, 1, shape[0])
    shapes.check_whole("iters", iters, 1)
    shapes.check_whole("n_init", n_init, 1)
    if not (isinstance(tol, int | float | np.floating) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}")
    if weights_N is not None and jnp.shape(weights_N) != shape[:1]:
        raise ValueError(f"weights_N must have shape [{shape[0]}]; got {jnp.shape(weights_N)}")
    if isinstance(x_NxD, jax.core.Tracer) or isinstance(weights_N, jax.core.Tracer):
        return
    shapes.finite(x_NxD, "x_NxD")
    if weights_N is not None:
        w = np.asarray(weights_N, np.float64)
        if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
            raise ValueError("weights_N must be finite and >= 0, with a positive sum")


def kmeans(
    key,
    x_NxD,
    k: int,
    *,
    weights_N=None,
    iters: int = 300,
    tol: float = 1e-4,
    n_init: int = 1,
    merge_duplicates: bool = True,
    return_history: bool = False,
):
    """k-means of the rows of x_NxD: greedy k-means++ initialisation, then Lloyd iterations.

    Lloyd stops after `iters` updates or when the centres' squared shift is below tol x the
    data's mean variance. Exact duplicate rows are merged into weighted rows first (the same
    clustering, faster). Deterministic for a key.

    Args:
        key: a jax.random key.
        x_NxD: the rows to cluster, finite, N >= k.
        k: the number of centroids.
        weights_N: None, or a weight >= 0 per row (as scikit-learn's sample_weight).
        iters: Lloyd updates at most; tol: the stopping shift, relative.
        n_init: runs from their own keys; the best (least inertia) is returned.
        merge_duplicates: merge identical rows first (False: as given).
        return_history: also return the inertia before each update.

    Returns:
        (centroids_KxD float32, inertia): the weighted sum of squared distances to the
        nearest centroid; with return_history also [n_init, iters] inertias (NaN after a run
        stopped).

    Raises:
        ValueError: one line naming the argument, before compute.
    """
    shape = jnp.shape(x_NxD)
    _check_kmeans(key, x_NxD, k, weights_N, iters, tol, n_init)
    x_NxD = jnp.asarray(x_NxD, jnp.float32)
    if weights_N is None:
        w_N = jnp.ones(shape[:1], jnp.float32)
    else:
        w_N = jnp.asarray(weights_N, jnp.float32)
    if merge_duplicates:
        rows_NxD, w_N, count = _merge_duplicates(x_NxD, w_N)
        # pad the distinct rows to a multiple of 4096 so few sizes compile
        n = min(shape[0], -(-max(int(count), k) // 4096) * 4096)
        x_NxD, w_N = rows_NxD[:n], w_N[:n]
    runs = [
        _kmeans_single(kk, x_NxD, w_N, k, iters, tol, return_history)
        for kk in jax.random.split(key, n_init)
    ]
    best = int(np.argmin([float(r[1]) for r in runs]))
    centroids, inertia, _ = runs[best]
    if return_history:
        return centroids, inertia, jnp.stack([r[2] for r in runs])
    return centroids, inertia


# ----------------------------------------------------------------------------- tokens
def quantise(x_xD, centroids_KxD):
    """Index of the nearest centroid (squared Euclidean distance) for every vector in x."""
    d = jnp.sum((x_xD[..., None, :] - centroids_KxD) ** 2, axis=-1)
    return jnp.argmin(d, axis=-1).astype(jnp.int32)


def decode(tokens, centroids_KxD):
    """The centroid of each token: [...] -> [..., D]."""
    return jnp.take(jnp.asarray(centroids_KxD), tokens, axis=0)


# ----------------------------------------------------------------------------- patches
@functools.cache
def _patch_index(h: int, w: int, grid: int):
    """[L, grid*grid] flat pixel index of every overlapping patch (row-major patches)."""
    rows = np.arange(h - grid + 1)[:, None, None, None] + np.arange(grid)[None, None, :, None]
    cols = np.arange(w - grid + 1)[None, :, None, None] + np.arange(grid)[None, None, None, :]
    return (rows * w + cols).reshape((h - grid + 1) * (w - grid + 1), grid * grid)


def extract_patches(images_xHxW, *, grid: int = shapes.GRID):
    """[..., H, W] -> [..., L, grid*grid]: every overlapping patch, L = (H-g+1)(W-g+1)."""
    *batch, h, w = jnp.shape(images_xHxW)
    if not 0 < grid <= min(h, w):
        raise ValueError(f"grid must be in [1, {min(h, w)}] for {h}x{w} images; got {grid}")
    flat = jnp.reshape(images_xHxW, (*batch, h * w))
    return flat[..., _patch_index(h, w, grid)]


def stitch(patches_xLxG, *, size: int = 16, grid: int = shapes.GRID):
    """[..., L, grid*grid] -> [..., size, size]: each pixel the mean of the patches over it."""
    index = _patch_index(size, size, grid)
    if jnp.shape(patches_xLxG)[-2:] != index.shape:
        raise ValueError(
            f"patches_xLxG must end in {index.shape} for size={size}, grid={grid}; "
            f"got {jnp.shape(patches_xLxG)}"
        )
    *batch, _, _ = jnp.shape(patches_xLxG)
    counts = np.bincount(index.ravel(), minlength=size * size).astype(np.float32)
    flat = jnp.zeros((*batch, size * size), jnp.float32)
    flat = flat.at[..., index.ravel()].add(jnp.reshape(patches_xLxG, (*batch, -1)))
    return jnp.reshape(flat / counts, (*batch, size, size))


def fit_codebook(key, images_NxHxW, k: int = 20, *, grid=shapes.GRID, **kmeans_kwargs):
    """k-means on every overlapping grid x grid patch of the (downsampled) images.

    Returns (centroids [k, grid*grid], inertia); the write-up uses 100 rectangles, k = 20.
    """
    patches = extract_patches(images_NxHxW, grid=grid).reshape(-1, grid * grid)
    return kmeans(key, patches, k, **kmeans_kwargs)


# ----------------------------------------------------------------------------- files
def load(path: str, shape: tuple[int, int]) -> np.ndarray:
    """A saved codebook (.npy), checked: readable, of `shape`, finite (FileError, one line)."""
    name = os.path.basename(path)
    try:
        centroids = np.load(path)
    except (OSError, ValueError) as e:
        raise FileError(f"its {name} is unreadable ({e}); delete it to refit") from e
    if centroids.shape != shape:
        raise FileError(f"its {name} has shape {centroids.shape}, not {shape}")
    if not np.all(np.isfinite(centroids)):
        raise FileError(f"its {name} holds non-finite values; delete it to refit")
    return centroids


def save(path: str, centroids) -> None:
    """The codebook as float32 .npy, written atomically."""
    save_array(path, np.asarray(centroids, np.float32))
