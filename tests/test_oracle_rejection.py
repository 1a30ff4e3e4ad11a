"""The oracle against plain rejection sampling from each scene's prior: the obviously-correct
(slow) posterior, on the task's own held-out examples at the visible counts of the curve
where rejection accepts at least 200 shapes.

Rejection: draw shapes from the scene's sampler, keep those whose tokens at the visible
points equal the example's; the kept shapes are exact posterior samples, and their tokens at
the hidden points give the posterior-predictive distribution. Nothing of the oracle (bounds,
proposals, weights, tempering, slice moves) is used.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert import scenes
from rectbert.analysis import oracle, oracle_curve
from rectbert.data import tasks
from rectbert.data.sparse_task import SparseTask
from rectbert.geometry import codebook
from tests.conftest import family_param, installed

KEEP = 2_000  # accepted shapes used for the predictive (the first ones: still exact)
MIN_ACCEPT = 200


def tokens(scene, centroids, shapes_MxD, points_Qx2, chunk=20_000):
    """[M, Q] the task's tokens of M shapes at Q points, in chunks (memory)."""
    fn = jax.jit(
        lambda s: codebook.quantise(
            scene.coverage(s, jnp.broadcast_to(points_Qx2, (s.shape[0], *points_Qx2.shape))),
            centroids,
        )
    )
    return np.concatenate(
        [np.asarray(fn(shapes_MxD[i : i + chunk])) for i in range(0, len(shapes_MxD), chunk)]
    )


def rejection(tokens_MxP, tokens_P, visible_P, k):
    """(accepted count, [P, K] posterior-predictive frequencies of the first KEEP accepted,
    [A] which draws were accepted), from the tokens of M prior draws at the example's
    points."""
    vis = np.flatnonzero(visible_P)
    accepted = np.flatnonzero(np.all(tokens_MxP[:, vis] == np.asarray(tokens_P)[vis], axis=1))
    kept = tokens_MxP[accepted[:KEEP]]
    freq = np.zeros((len(tokens_P), k))
    if len(kept):
        for p in range(len(tokens_P)):
            freq[p] = np.bincount(kept[:, p], minlength=k) / len(kept)
    return len(accepted), freq, accepted


CASES = {  # scene (options), held-out examples, visible counts (of 24), prior draws, mean TV
    "rect": ("rect", {}, 12, (1, 2, 4), 100_000, 0.05),
    # where the curve and --eval_oracle live: 10^6 draws give >= 200 accepts on ~3/4 of the
    # examples at 8 visible and ~1/2 at 12 (measured on 12)
    "rect-8-12": ("rect", {}, 8, (8, 12), 1_000_000, 0.05),
    "rotated": ("rotated", {}, 4, (1, 2, 4), 100_000, 0.05),
    "rects": ("rects", {"num_rects": 2}, 8, (1, 2, 4), 100_000, 0.08),
    # mixtures: the count of strokes / rectangles varies, the oracle weighs its components
    "rects-1-3": ("rects", {"num_rects": 3, "min_rects": 1}, 6, (1, 2, 4), 100_000, 0.08),
    "junction": ("junction", {}, 4, (1, 2, 4), 100_000, 0.08),
    "junction-small": ("junction", {}, 2, (1, 2), 100_000, 0.08),
    # the drawing is the component (one sampler program mapped over them, a shared budget)
    "glyph": ("glyph", {"glyphs": "AHLOTX"}, 4, (1, 2, 4), 100_000, 0.08),
    "glyph-small": ("glyph", {"glyphs": "LOT"}, 2, (1, 2), 50_000, 0.08),
    # letters that share strokes, where SMC runs (importance alone is not enough): the
    # screening of components (mixture.screened, a floor under which SMC stops) checked
    "glyph-shared": ("glyph", {"glyphs": "EFLT"}, 4, (4, 8), 100_000, 0.08),
    "kanji": ("kanji", {"kanji": "一二人口日木"}, 4, (1, 2, 4), 100_000, 0.08),
    "kanji-small": ("kanji", {"kanji": "一人口"}, 2, (1, 2), 20_000, 0.08),  # 5e4: 2 min a draw set
    "icon-small": ("icon", {"icons": ("home", "star", "heart")}, 2, (1, 2), 50_000, 0.08),
    # where the curve's mixtures get hard: 8 visible, 10^6 draws (>= 200 accepted on some
    # examples only: the case needs half its (example, count) pairs to qualify), and a set of
    # 8 letters. Measured: glyph-8 holds; junction-8 and rects-1-3-8 hold, p(k | visible) off
    # by 0.082 and 0.051 (3 qualifying examples each; an earlier revision failed them, 0.117
    # and 0.131): near the 0.1, the mixtures' weighing is barely converged there (RESULTS.md)
    "junction-8": ("junction", {}, 6, (8,), 1_000_000, 0.08),
    "rects-1-3-8": ("rects", {"num_rects": 3, "min_rects": 1}, 6, (8,), 1_000_000, 0.08),
    "glyph-8": ("glyph", {"glyphs": "ACEFHLOT"}, 4, (1, 2, 4, 8), 100_000, 0.08),
}
# the cases of minutes each (measured: rect-8-12 2 min, junction 11, glyph 7, kanji 21,
# glyph-8 8, rects-1-3-8 1, junction-8 5; three icons of some 300 segments each over 8
# minutes, unfinished) run by
# `python -m benchmarks.oracle_rejection --cases=...` (RESULTS.md); the slow tier runs the rest
HARD = (
    "glyph-8",
    "rects-1-3-8",
    "junction-8",
)  # hard: p(k | v) within 0.1 (rects 0.051, junction 0.082)
BENCHMARK_ONLY = ("rect-8-12", "junction", "glyph", "kanji", "icon-small", *HARD)
# every registered family the oracle serves and no case above pins: checked at its defaults
# on two examples, so a family added is a family checked against rejection (a family whose
# oracle is slow at its defaults pins a small case here, as glyph and kanji do)
for _name in sorted(scenes.SCENES):
    if _name in {c[0] for c in CASES.values()} or not installed(_name):
        continue
    if not scenes.scene(_name).oracle_unsupported():
        CASES[_name] = (_name, {}, 2, (1, 2), 100_000, 0.08)
IN_SUITE = [family_param(c, id=c, family=CASES[c][0]) for c in CASES if c not in BENCHMARK_ONLY]
COMPONENT_TOL = 0.1  # mean |p(k | visible) - accepted share of k| over examples and counts
EVIDENCE_TOL = 0.25  # median |log(oracle's evidence / rejection's acceptance rate)|


def compare(case):
    """The oracle against rejection on the case's held-out examples: (examples qualified,
    [T] argmax agreements, [T] total variations, ESSs, [E] mean |p(k|v) - accepted share|
    per (example, count) for a mixture, else empty, [E] log of the oracle's evidence over
    rejection's acceptance rate: both estimate p(visible tokens))."""
    name, opts, n, counts, draws, _ = CASES[case]
    scene = scenes.scene(name, **opts)
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=n, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    centroids, k = task.codebook, task.num_tokens
    # the scene's own sampler (nothing of the oracle); a draw's component by component_of,
    # which the registry's contract test checks against components() and lift()
    shapes_MxD = np.asarray(scene.sample(jax.random.key(7), draws))
    parts = scene.components()
    kind = np.asarray(scene.component_of(shapes_MxD))
    agree, tv, qualified, esses, comp, evidence = [], [], 0, [], [], []
    batches = {v: oracle_curve.held_out(task, v, n) for v in counts}  # nested masks, same points
    answers = {
        v: oracle.posterior(jax.random.key(v), b.points, b.tokens, ~b.mask, centroids, scene)
        for v, b in batches.items()
    }
    first = batches[counts[0]]
    for e in range(n):
        # every prior draw's tokens at this example's points, once for all its counts
        at_points = tokens(scene, centroids, shapes_MxD, first.points[e])
        for v in counts:
            hidden = np.asarray(batches[v].mask[e])
            post = answers[v]
            probs, ess = post.probs[e], float(post.ess[e])
            accepted, freq, which = rejection(at_points, first.tokens[e], ~hidden, k)
            if accepted < MIN_ACCEPT:
                continue
            qualified += 1
            esses.append(ess)
            evidence.append(float(post.log_evidence[e]) - np.log(accepted / draws))
            agree.append(probs[hidden].argmax(-1) == freq[hidden].argmax(-1))
            tv.append(0.5 * np.abs(probs[hidden] - freq[hidden]).sum(-1))
            if len(parts) > 1:
                share = np.bincount(kind[which], minlength=len(parts))
                comp.append(np.abs(post.components[e] - share / share.sum()).mean())
    out = np.concatenate(agree), np.concatenate(tv), esses, np.asarray(comp)
    return qualified, *out, np.asarray(evidence)


@pytest.mark.slow
@pytest.mark.parametrize("case", IN_SUITE)
def test_the_oracle_matches_rejection_sampling_from_the_prior(case):
    name, _, n, counts, _, max_tv = CASES[case]
    qualified, agree, tv, esses, comp, evidence = compare(case)
    print(
        f"{case}: {qualified} examples at counts {counts} with >= {MIN_ACCEPT} accepted; "
        f"argmax agreement {agree.mean():.3f}, mean TV {tv.mean():.3f} over {tv.size} tokens; "
        f"oracle ESS median {np.median(esses):.0f}, min {min(esses):.0f}"
        + (f"; components: mean |p(k|v) - accepted share| {comp.mean():.3f}" if comp.size else "")
        + f"; evidence / acceptance rate: median |log| {np.median(np.abs(evidence)):.3f}, "
        f"max {np.abs(evidence).max():.3f}"
    )
    enough = n * len(counts) // 2  # (example, count) pairs with enough accepted
    assert qualified >= enough, f"{qualified} (example, count) pairs qualified, under {enough}"
    # near-ties flip; the mean TV is mostly Monte Carlo noise: the oracle's ESS ~ 200 alone
    # gives ~0.03-0.06 on these broad posteriors (two oracle runs differ by that much), the
    # reference's 2,000 samples ~0.02. Measured (agreement / TV): rect 0.986 / 0.037, rect at
    # 8-12 visible 0.965 / 0.021, rotated 0.996 / 0.037 (4 examples), rects 0.941 / 0.065 (the two
    # rectangles' posterior is the hardest: its allowance is looser). Planted in the oracle,
    # a likelihood that lets one visible token mismatch fails here; importance weights that
    # forget the proposal's density do not (the SMC that follows corrects them).
    assert agree.mean() >= 0.9, f"argmax agreement {agree.mean():.3f} < 0.9"
    assert tv.mean() <= max_tv, f"mean TV {tv.mean():.3f} > {max_tv}"
    if comp.size:  # the posterior over the count: planted, equal components fail here
        assert comp.mean() <= COMPONENT_TOL, f"p(k | v) off by {comp.mean():.3f} > {COMPONENT_TOL}"
    # the evidence (what weighs a mixture's components) against rejection's acceptance rate,
    # itself within ~7 % (>= 200 accepted): the median within EVIDENCE_TOL in log
    off = np.median(np.abs(evidence))
    assert off <= EVIDENCE_TOL, f"evidence off by a median |log| {off:.3f} > {EVIDENCE_TOL}"
