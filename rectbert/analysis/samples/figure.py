"""figures/samples.png: one example's few visible points completed by every method, each
completion rendered densely (sparse: the model queried on a lattice; grid: patches stitched)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.analysis import render
from rectbert.analysis.samples import sampler
from rectbert.analysis.samples.scores import draw
from rectbert.data import keys
from rectbert.data.tasks import Batch
from rectbert.geometry import codebook
from rectbert.viz import panels


def dense(task, predict, params, points_Px2, tokens_P, known_P, lattice_Mx2, key, cfg):
    """[M] tokens drawn at every lattice point given an example's known tokens, in sequences
    of the task's length (what the model was trained on): each holds the n = min(known, L - 1)
    known points nearest its first query and L - n queries, drawn independently by `cfg`
    (argmax or independent). With every token known (a completion), each query is drawn
    beside the L - 1 completed points nearest it."""
    length = task.seq_len
    pts = np.asarray(points_Px2, np.float32)[np.asarray(known_P, bool)]
    toks = np.asarray(tokens_P, np.int32)[np.asarray(known_P, bool)]
    n = min(len(pts), length - 1)
    c = length - n
    lattice = np.asarray(lattice_Mx2, np.float32)
    m = len(lattice)
    chunks = -(-m // c)
    q = np.concatenate([lattice, np.repeat(lattice[:1], chunks * c - m, 0)]).reshape(chunks, c, 2)
    dist = np.linalg.norm(q[:, :1] - pts[None], axis=-1)  # [chunks, known]
    near = np.argsort(dist, axis=1, kind="stable")[:, :n]
    batch = Batch(
        points=jnp.asarray(np.concatenate([pts[near], q], 1)),
        tokens=jnp.asarray(np.concatenate([toks[near], np.zeros((chunks, c), np.int32)], 1)),
        mask=jnp.asarray(
            np.concatenate([np.zeros((chunks, n), bool), np.ones((chunks, c), bool)], 1)
        ),
    )
    return np.asarray(sampler.sample(predict, params, batch, key, cfg))[:, n:].reshape(-1)[:m]


def figure(task, predict, params, kept: dict, path: str, *, shown: int = 8, spacing: float = 8.0):
    """figures/samples.png: from one example's few visible points (the smallest count >= 2),
    `shown` posterior samples, joint samples (both orders), independent samples and the
    independent argmax, each rendered densely (sparse: the model queried on a lattice given
    the completion; grid: the completion's patches stitched)."""
    counts = sorted(kept)
    v = next((c for c in counts if c >= 2), counts[0])
    batch, made, post = kept[v]["batch"], kept[v]["made"], kept[v]["posterior"]
    zero = int(codebook.quantise(jnp.zeros(task.codebook.shape[1]), task.codebook))
    vis = ~np.asarray(batch.mask)
    found = kept[v]["found"]
    # the first example with a visible token other than the empty patch's, and a posterior
    usable = [e for e in range(vis.shape[0]) if found is None or found[e]] or [0]
    informative = [e for e in usable if np.any(np.asarray(batch.tokens)[e][vis[e]] != zero)]
    e = (informative or usable)[0]
    centroids = np.asarray(task.codebook)
    scene = task.scene
    truth = np.asarray(scene.rasterise(batch.scenes[e : e + 1], size=64))[0]
    points, tokens = np.asarray(batch.points[e]), np.asarray(batch.tokens[e])
    key = jax.random.fold_in(keys.key(task.seed, "figures"), 1000 + v)
    if task.name == "grid":

        def render_completion(t_L, _):
            return np.asarray(codebook.stitch(jnp.asarray(centroids[t_L])))

        def render_visible(cfg, k):
            return render_completion(np.asarray(draw(predict, params, batch, k, cfg, 1))[e, 0], k)

    else:
        lattice = render.dense_lattice(spacing)

        def render_completion(t_L, k):
            cfg = sampler.SampleConfig(method="argmax")
            drawn = dense(
                task, predict, params, points, t_L, np.ones(len(t_L), bool), lattice, k, cfg
            )
            return render.render(lattice, centroids[drawn])

        def render_visible(cfg, k):
            drawn = dense(task, predict, params, points, tokens, vis[e], lattice, k, cfg)
            return render.render(lattice, centroids[drawn])

    rows = []
    if post is not None and (found is None or found[e]):
        size = 16 if task.name == "grid" else 64
        rows.append(
            (
                "oracle: posterior samples",
                list(np.asarray(scene.rasterise(jnp.asarray(post[e, 0, :shown]), size=size))),
            )
        )
    for label in ("joint (random)", "joint (confident)"):
        comp = made[label][e, :shown]
        rows.append(
            (
                f"model: {label} samples",
                [render_completion(c, jax.random.fold_in(key, i)) for i, c in enumerate(comp)],
            )
        )
    indep = sampler.SampleConfig(method="independent")
    rows.append(
        (
            "model: independent samples",
            [render_visible(indep, jax.random.fold_in(key, 100 + i)) for i in range(shown)],
        )
    )
    rows.append(
        ("model: independent argmax", [render_visible(sampler.SampleConfig(method="argmax"), key)])
    )
    title = f"{task.name}: {scene.name}, {v} visible points (orange); the truth at left"
    return panels.samples(truth, points[vis[e]], rows, path, title=title, extent=float(scene.size))
