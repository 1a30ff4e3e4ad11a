"""figures/samples.png: one example's few visible points completed by every method; and
figures/samples_by_count.png: a few examples at 2, 4 and 8 visible, the posterior's samples
beside the model's joint samples. Each completion rendered densely (sparse: the model queried
on a lattice every 8 px; grid: patches stitched)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from rectbert.analysis import oracle_curve, render
from rectbert.analysis.samples import output, sampler, scores
from rectbert.analysis.samples.scores import draw
from rectbert.analysis.samples.settings import ScoreConfig, scored
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


SHOWN = ("repair", "random")  # the joint samplers samples_by_count.png shows, where scored


def _example(task, c, n: int = 1):
    """The first example with a visible token other than the empty patch's (and a posterior,
    where the oracle scores the scene): a list of the first n such."""
    zero = int(codebook.quantise(jnp.zeros(task.codebook.shape[1]), task.codebook))
    vis, tokens = ~np.asarray(c.batch.mask), np.asarray(c.batch.tokens)
    found = None if c.posterior is None else c.posterior.found
    usable = [e for e in range(vis.shape[0]) if found is None or found[e]] or [0]
    informative = [e for e in usable if np.any(tokens[e][vis[e]] != zero)]
    ranked = informative + [e for e in usable if e not in informative]
    return ranked[:n]


def _renderers(task, predict, params, batch, e: int, spacing: float):
    """(completion renderer (tokens, key) -> image, visible-points renderer (cfg, key) ->
    image) for example e: grid stitches patches; sparse queries the model on a lattice."""
    centroids = np.asarray(task.codebook)
    if task.name == "grid":

        def completion(t_L, _):
            return np.asarray(codebook.stitch(jnp.asarray(centroids[t_L])))

        def visible(cfg, k):
            return completion(np.asarray(draw(predict, params, batch, k, cfg, 1))[e, 0], k)

        return completion, visible
    lattice = render.dense_lattice(spacing)
    points, tokens = np.asarray(batch.points[e]), np.asarray(batch.tokens[e])
    known = ~np.asarray(batch.mask[e])

    def completion(t_L, k):
        every = np.ones(len(t_L), bool)
        argmax = sampler.SampleConfig(method="argmax")
        drawn = dense(task, predict, params, points, t_L, every, lattice, k, argmax)
        return render.render(lattice, centroids[drawn])

    def visible(cfg, k):
        drawn = dense(task, predict, params, points, tokens, known, lattice, k, cfg)
        return render.render(lattice, centroids[drawn])

    return completion, visible


def figure(task, predict, params, kept: dict, path: str, *, shown: int = 8, spacing: float = 8.0):
    """figures/samples.png: from one example's few visible points (the smallest count >= 2),
    `shown` posterior samples, joint samples (each sampler scored), independent samples and the
    independent argmax, each rendered densely (sparse: the model queried on a lattice given
    the completion; grid: the completion's patches stitched). `kept`: scores.score's."""
    v = next((c for c in sorted(kept) if c >= 2), min(kept))
    c, scene = kept[v], task.scene
    e = _example(task, c)[0]
    completion, visible = _renderers(task, predict, params, c.batch, e, spacing)
    key = jax.random.fold_in(keys.key(task.seed, "figures"), 1000 + v)
    rows = []
    if c.posterior is not None and c.posterior.found[e]:
        size = 16 if task.name == "grid" else 64
        drawn = scene.rasterise(jnp.asarray(c.posterior.params[e, 0, :shown]), size=size)
        rows.append(("oracle: posterior samples", list(np.asarray(drawn))))
    for label in [m for m in c.made if m.startswith("joint")]:  # those scored
        comp = c.made[label][e, :shown]
        images = [completion(t, jax.random.fold_in(key, i)) for i, t in enumerate(comp)]
        rows.append((f"model: {label} samples", images))
    indep, argmax = (sampler.SampleConfig(method=m) for m in ("independent", "argmax"))
    images = [visible(indep, jax.random.fold_in(key, 100 + i)) for i in range(shown)]
    rows.append(("model: independent samples", images))
    rows.append(("model: independent argmax", [visible(argmax, key)]))
    truth = np.asarray(scene.rasterise(c.batch.scenes[e : e + 1], size=64))[0]
    shown_points = np.asarray(c.batch.points[e])[~np.asarray(c.batch.mask[e])]
    title = f"{task.name}: {scene.name}, {v} visible points (orange); the truth at left"
    return panels.samples(truth, shown_points, rows, path, title=title, extent=float(scene.size))


def by_count(task, predict, params, kept: dict, path: str, *, examples=2, shown=6, spacing=8.0):
    """figures/samples_by_count.png: for `examples` held-out examples at each of the first
    three counts >= 2, `shown` posterior samples (exact rasters) above the model's joint
    samples by each sampler of SHOWN that was scored, each rendered densely."""
    counts = [v for v in sorted(kept) if v >= 2][:3] or sorted(kept)[:1]
    key = jax.random.fold_in(keys.key(task.seed, "figures"), 2000)
    blocks = []
    for e in _example(task, kept[counts[0]], examples):
        truth = np.asarray(task.scene.rasterise(kept[counts[0]].batch.scenes[e : e + 1], 64))[0]
        for v in counts:
            c = kept[v]
            completion, _ = _renderers(task, predict, params, c.batch, e, spacing)
            rows = []
            if c.posterior is not None and c.posterior.found[e]:
                size = 16 if task.name == "grid" else 64
                drawn = task.scene.rasterise(jnp.asarray(c.posterior.params[e, 0, :shown]), size)
                rows.append((f"{v} visible: posterior samples", list(np.asarray(drawn))))
            for label in [f"joint ({o})" for o in SHOWN if f"joint ({o})" in c.made]:
                comp = c.made[label][e, :shown]
                images = [completion(t, jax.random.fold_in(key, i)) for i, t in enumerate(comp)]
                rows.append((f"{v} visible: model, {label}", images))
            visible = np.asarray(c.batch.points[e])[~np.asarray(c.batch.mask[e])]
            if rows:
                blocks.append((truth, visible, rows))
    if not blocks:
        return None  # neither a posterior nor a sampler of SHOWN to draw
    title = f"{task.name}: {task.scene.name}, completions at {counts} visible (orange)"
    extent = float(task.scene.size)
    return panels.completions(blocks, path, title=title, extent=extent, height=1.3)


def run(task, predict, params, step: int, workdir: str, cfg: ScoreConfig, log=output.say):
    """Score the completions of the run at `step` and write samples.json,
    figures/samples.png and figures/samples_by_count.png into `workdir`; says what it does
    and where it wrote."""
    counts = cfg.counts(task)
    log(
        f"samples: {oracle_curve.count_list(counts)} x {cfg.examples} held-out examples x "
        f"{cfg.per_example} completions per method (step {step})"
    )
    if not scored(task):
        why = task.scene.oracle_unsupported()
        log(f"note: the oracle does not support {why}: accuracy and diversity only")
    rows, kept = scores.score(task, predict, params, cfg, log=log)
    for r in rows:
        r["step"], r["mask_schedule"] = step, task.mask.schedule
    log(f"wrote {output.write(workdir, rows)}")  # the JSON first: drawing may fail
    path = os.path.join(workdir, "figures", "samples.png")
    log(f"wrote {figure(task, predict, params, kept, path)}")
    path = by_count(
        task, predict, params, kept, os.path.join(workdir, "figures", "samples_by_count.png")
    )
    if path is not None:
        log(f"wrote {path}")
    return rows
