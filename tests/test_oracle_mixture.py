"""The oracle over scenes whose prior is a mixture of fixed-dimension components (junction's
stroke count, rects' rectangle count), the union-boundary coverage and the moves that wrap
across a parametrisation's edges. Against rejection sampling: tests/test_oracle_rejection.py
(slow tier)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString
from shapely.ops import unary_union

import rectbert
from rectbert.analysis import oracle
from rectbert.data import tasks
from rectbert.data.sparse_task import SparseTask
from rectbert.scenes.junction import Junction
from tests import references

FAST = oracle.OracleConfig(num_samples=512, chains=64, anneal_steps=8, mcmc_steps=2)


@pytest.mark.slow  # 19 s here: three components compiled
def test_nothing_visible_gives_the_prior_over_components_and_evidence_one():
    scene = rectbert.scene("rects", num_rects=3, min_rects=1)
    task = SparseTask(scene, tasks.MaskSpec(5), eval_examples=4, seed=2)
    task = task.with_codebook(task.fit_codebook()[0])
    b = task.eval_set()
    post = oracle.posterior(
        jax.random.key(0),
        b.points,
        b.tokens,
        jnp.zeros(b.tokens.shape, bool),
        task.codebook,
        scene,
        FAST,
    )
    # three components of prior 1/3 each; every shape matches nothing-visible: Z = 1
    np.testing.assert_allclose(post.components, 1 / 3, atol=0.03)
    np.testing.assert_allclose(post.log_evidence, 0.0, atol=0.05)
    assert post.samples.shape == (4, FAST.chains, 12) and post.live.all()
    used = np.any(post.samples.reshape(4, -1, 3, 4) != 0, -1).sum(-1)  # lifted: used first
    assert set(np.unique(used)) == {1, 2, 3}
    assert np.isfinite(np.asarray(scene.log_density(post.samples.reshape(-1, 12)))).all()


def test_a_visible_token_only_a_big_union_makes_favours_more_rectangles():
    # a 1-or-2-rectangle prior of sides 72-80; two far-apart windows (64 px) wholly covered:
    # one rectangle cannot cover both, so everything is on two rectangles (by hand)
    scene = rectbert.scene("rects", num_rects=2, min_rects=1, min_side=72.0, max_side=80.0)
    task = SparseTask(scene, tasks.MaskSpec(5), eval_examples=2, seed=2)
    task = task.with_codebook(task.fit_codebook()[0])
    full = int(task.tokens_of(np.ones((1, 16), np.float32))[0])
    points = np.zeros((1, 24, 2), np.float32) + 128
    points[0, 0], points[0, 1] = (40.0, 40.0), (200.0, 200.0)
    tokens = np.zeros((1, 24), np.int32)
    tokens[0, :2] = full
    visible = np.zeros((1, 24), bool)
    visible[0, :2] = True
    post = oracle.posterior(jax.random.key(1), points, tokens, visible, task.codebook, scene, FAST)
    assert post.components[0, 1] > 0.99  # components weighed equally would give 1/2


@pytest.mark.parametrize(
    "angles",
    [
        (0.0, math.pi, math.pi / 2),
        (0.0, math.pi / 2, math.pi, 3 * math.pi / 2),
        (0.3, 0.3 + math.pi),
    ],
    ids=["T", "X", "bar"],
)
def test_union_boundary_of_straight_bars_through_the_junction_equals_shapely(angles):
    # strokes at exactly opposite angles share their start edges (in opposite directions)
    scene = rectbert.scene("junction", stroke_width=(8.0, 24.0))
    row = [128.0, 120.0, 16.0]
    for i in range(4):
        row += [70.0 + 10 * i, angles[i]] if i < len(angles) else [0.0, 0.0]
    params = np.array([row], np.float32)
    pts = np.random.default_rng(0).uniform(40, 216, (1, 60, 2)).astype(np.float32)
    grid = np.stack(np.meshgrid(np.arange(110, 150, 4.0), np.arange(100, 140, 4.0)), -1)
    pts = np.concatenate([pts, grid.reshape(1, -1, 2).astype(np.float32)], 1)  # near j
    got = np.asarray(scene.coverage(params, pts))[0]
    want = references.cell_areas(unary_union(references.junction_of(params[0])), pts[0])
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_the_non_empty_boundary_segments_alone_give_shapelys_areas():
    # the coverage computes the first segment_cap non-empty boundary segments only, and all
    # of them where a shape in the batch has more
    scene = rectbert.scene("junction")
    params = scene.sample(jax.random.key(3), 6)
    pts = jnp.asarray(np.random.default_rng(1).uniform(30, 226, (6, 40, 2)), jnp.float32)
    want = np.stack(
        [
            references.cell_areas(unary_union(references.junction_of(p)), q)
            for p, q in zip(np.asarray(params), np.asarray(pts), strict=True)
        ]
    )
    # the counts by shapely: each quad's edges less the parts inside the other quads
    most = max(_boundary_pieces(references.junction_of(p)) for p in np.asarray(params))
    for cap in [None, 2, most - 1, most]:  # the default, then all of them twice, then the cap

        @dataclasses.dataclass(frozen=True)
        class Capped(Junction):
            segment_cap = cap

        got = np.asarray(Capped().coverage(params, pts))
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=str(cap))


def _boundary_pieces(quads) -> int:
    """The non-empty pieces of the union's boundary: each edge of each quad less the parts
    inside (or on) the other quads, one piece per maximal run left (shapely)."""
    pieces = 0
    for i, q in enumerate(quads):
        others = unary_union([o for j, o in enumerate(quads) if j != i])
        ring = list(q.exterior.coords)
        for start, end in zip(ring[:-1], ring[1:], strict=True):
            left = LineString([start, end]).difference(others)
            parts = getattr(left, "geoms", [left])
            pieces += sum(1 for part in parts if part.length > 1e-6)
    return pieces


def test_wrap_is_the_same_shape_inside_the_support():
    rng = np.random.default_rng(4)
    rot = rectbert.scene("rotated")
    p = np.asarray(rot.sample(jax.random.key(5), 50))
    moved = p.copy()
    moved[:, 4] += rng.choice([-2, -1, 1, 2, 3], 50) * math.pi / 2 + rng.uniform(-0.2, 0.2, 50)
    back = np.asarray(rot.wrap(jnp.asarray(moved)))
    assert np.all((back[:, 4] >= 0) & (back[:, 4] < math.pi / 2))
    junction = rectbert.scene("junction")
    q = np.asarray(junction.sample(jax.random.key(6), 50))
    spun = q.copy()
    spun[:, 4::2] += np.where(q[:, 3::2] > 0, rng.choice([-2, -1, 1], (50, 4)) * 2 * math.pi, 0)
    q_back = np.asarray(junction.wrap(jnp.asarray(spun)))
    assert np.all((q_back[:, 4::2] >= 0) & (q_back[:, 4::2] < 2 * math.pi))
    pairs = ((references.rotated_of, moved, back), (references.junction_of, spun, q_back))
    for definition, before, after in pairs:
        for a, b in zip(before, after, strict=True):
            for x, y in zip(definition(a), definition(b), strict=True):
                assert x.symmetric_difference(y).area < 1e-2
    # wrapped, the prior is finite exactly where the (moved) rectangle lies inside the canvas
    canvas = shapely.box(0, 0, rot.size, rot.size).buffer(1e-3)
    inside = [canvas.contains(references.rotated_of(b)[0]) for b in back]
    assert 0 < sum(inside) < len(inside)
    np.testing.assert_array_equal(np.isfinite(np.asarray(rot.log_density(back))), inside)


@pytest.mark.slow  # a convergence check, 16 s here
def test_the_rotated_posterior_crosses_the_seam():
    # a rectangle turned by 0.004 rad, 16 visible points: its posterior straddles theta = 0,
    # i.e. holds (w, h, theta ~ 0) and (h, w, theta ~ pi/2); without the seam move the
    # chains stay on the side they started (planted: wrap = identity fails here)
    scene = rectbert.scene("rotated")
    task = SparseTask(scene, tasks.MaskSpec(5), eval_examples=2, seed=2)
    task = task.with_codebook(task.fit_codebook()[0])
    params = np.array([[128.0, 128.0, 100.0, 60.0, 0.004]] * 2, np.float32)
    pts = np.random.default_rng(2).uniform(40, 216, (2, 24, 2)).astype(np.float32)
    tokens = np.asarray(task.tokens_of(scene.coverage(params, pts).reshape(-1, 16)))
    visible = np.arange(24)[None].repeat(2, 0) < 16
    post = oracle.posterior(
        jax.random.key(2), pts, tokens.reshape(2, 24), visible, task.codebook, scene
    )
    theta = post.samples[..., 4][post.live]
    assert 0.05 < np.mean(theta > math.pi / 4) < 0.95


@pytest.mark.parametrize("ensemble", [0, 2])
def test_the_moves_keep_a_correlated_target_and_differential_ones_mix_it_faster(ensemble):
    # a Gaussian of correlation 0.95 (hand-known moments); chains started from it stay on it
    # (invariance), and the differential moves, which follow the correlation, decorrelate a
    # chain faster than coordinate moves alone
    from types import SimpleNamespace

    from rectbert.analysis import moves

    cov = np.array([[1.0, 0.95], [0.95, 1.0]])
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)

    def target(x, beta):
        return -0.5 * jnp.einsum("ci,ij,cj->c", x, prec, x)

    scene = SimpleNamespace(wrap=lambda p: p, ensemble_moves=ensemble)
    cfg = SimpleNamespace(shrinks=3, ensemble_moves=None)
    chains = 4000
    x0 = jnp.asarray(np.random.default_rng(0).multivariate_normal([0, 0], cov, chains), jnp.float32)

    @jax.jit
    def run(key, x):
        def one(c, k):
            x, logp = c
            lik = moves.Plain(target, scene)
            zero = jnp.zeros(x.shape[0], jnp.int32)
            x, logp, _ = moves.slice_sweep(k, x, logp, zero, 1.0, jnp.full(2, 2.5), lik, cfg)
            return (x, logp), None

        (x, _), _ = jax.lax.scan(one, (x, target(x, 1.0)), jax.random.split(key, 10))
        return x

    x = np.asarray(run(jax.random.key(1), x0))
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.08)  # stderr ~0.016 each
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.1)
    # after 10 sweeps, how much of its start a chain remembers (along the long axis)
    long = np.array([1.0, 1.0]) / np.sqrt(2)
    memory = np.corrcoef(np.asarray(x0) @ long, x @ long)[0, 1]
    assert (memory < 0.3) if ensemble else (memory > 0.5), memory


def _junction_likelihood(seen: int, visible: int):
    """The scene and a junction's Likelihood of one drawn example (24 uniform points, the
    first `visible` of them visible; 8 centroids: empty, full and 6 random patches)."""
    from rectbert.analysis import smc
    from rectbert.geometry import codebook

    scene = rectbert.scene("junction")
    rng = np.random.default_rng(5)
    truth = scene.sample(jax.random.key(5), 1)
    pts = jnp.asarray(rng.uniform(0, 256, (24, 2)), jnp.float32)
    cents = np.concatenate([np.zeros((1, 16)), np.ones((1, 16)), rng.uniform(0, 1, (6, 16))])
    cents = jnp.asarray(cents, jnp.float32)
    tokens = codebook.quantise(scene.coverage(truth, pts[None])[0], cents)
    vis = jnp.arange(24) < visible
    return scene, smc.Likelihood.of(pts, tokens, vis, cents, scene, seen)


def test_gated_moves_take_what_evaluating_every_chain_takes():
    # the sweep judges only the chains still shrinking whose prior clears the slice's level,
    # gathered in blocks: it must take every candidate a plain slice sweep evaluating every
    # chain at every shrink takes (written here, the same random draws), bit for bit, and
    # carry each chain's mismatches (a numpy recount); tempered and exact (beta inf), one
    # program (beta an argument: one compilation)
    from rectbert.analysis import moves

    scene, lik = _junction_likelihood(8, 8)
    x = scene.sample(jax.random.key(6), 40)  # of 2-4 strokes: unused slots leave the prior
    mism = lik.mismatches(x)
    width = jnp.full(scene.param_dim, 30.0)
    cfg = oracle.OracleConfig()

    @jax.jit
    def both(key, beta):
        logp = lik.target(x, beta)
        gated = moves.slice_sweep(key, x, logp, mism, beta, width, lik, cfg)
        return gated, _reference_sweep(key, x, logp, beta, width, lik.target, scene, cfg.shrinks)

    for beta in (0.7, np.inf):
        (xg, lg, mg), (xp, lp) = both(jax.random.key(7), jnp.float32(beta))
        np.testing.assert_array_equal(np.asarray(xg), np.asarray(xp), err_msg=f"beta {beta}")
        np.testing.assert_array_equal(np.asarray(lg), np.asarray(lp), err_msg=f"beta {beta}")
        assert np.mean(np.any(np.asarray(xg) != np.asarray(x), -1)) > 0.3  # chains moved
        # the carried mismatches, recounted: tokens at the visible points, nearest centroid
        cov = np.asarray(scene.coverage(xg, jnp.broadcast_to(lik.points_Px2[:8], (40, 8, 2))))
        cents = np.asarray(lik.centroids_KxG)
        toks = np.argmin(((cov[:, :, None] - cents[None, None]) ** 2).sum(-1), -1)
        want = (toks != np.asarray(lik.tokens_S)[None, :8]).sum(-1)
        prior_ok = np.isfinite(np.asarray(scene.log_density(xg)))
        np.testing.assert_array_equal(np.asarray(mg)[prior_ok], want[prior_ok], f"beta {beta}")


def _reference_sweep(key, x, logp, beta, width, target, scene, shrinks):
    """A plain slice sweep (coordinate by coordinate, then scene.ensemble_moves differential
    moves of each half), every chain evaluated at every shrink; the random draws in the
    order moves.slice_sweep makes them. Loops, not unrolled: the target is compiled once a
    loop (unrolled, this test's compilation took 30-40 s)."""
    chains, dim = x.shape

    def coordinate(j, carry):
        key, x, logp = carry
        key, k_level, k_pos = jax.random.split(key, 3)
        level = logp + jnp.log(jax.random.uniform(k_level, (chains,)))
        start, here = x, x[:, j]
        lo = here - width[j] * jax.random.uniform(k_pos, (chains,))

        def shrink(_, c):
            key, x, logp, lo, hi = c
            key, k_try = jax.random.split(key)
            cand = lo + (hi - lo) * jax.random.uniform(k_try, (chains,))
            prop = scene.wrap(start.at[:, j].set(cand))
            t = target(prop, beta)
            ok = t > level
            x, logp = jnp.where(ok[:, None], prop, x), jnp.where(ok, t, logp)
            lo = jnp.where(ok, cand, jnp.where(cand < here, cand, lo))
            hi = jnp.where(ok, cand, jnp.where(cand >= here, cand, hi))
            return key, x, logp, lo, hi

        key, x, logp, _, _ = jax.lax.fori_loop(
            0, shrinks, shrink, (key, x, logp, lo, lo + width[j])
        )
        return key, x, logp

    key, x, logp = jax.lax.fori_loop(0, dim, coordinate, (key, x, logp))

    def ensemble(_, carry):
        key, x, logp = carry
        for half in (0, 1):
            key, sub = jax.random.split(key)
            mine, mine_logp, others = x[half::2], logp[half::2], x[1 - half :: 2]
            n = mine.shape[0]
            k_a, k_b, k_level, k_pos, sub = jax.random.split(sub, 5)
            a = jax.random.randint(k_a, (n,), 0, others.shape[0])
            b = jax.random.randint(k_b, (n,), 0, others.shape[0])
            direction = others[a] - others[b]
            level = mine_logp + jnp.log(jax.random.uniform(k_level, (n,)))
            lo = -jax.random.uniform(k_pos, (n,))

            def shrink(_, c, mine=mine, direction=direction, level=level):
                sub, y, logp_y, lo, hi = c
                sub, k_try = jax.random.split(sub)
                t = lo + (hi - lo) * jax.random.uniform(k_try, lo.shape)
                prop = scene.wrap(mine + t[:, None] * direction)
                got = target(prop, beta)
                ok = got > level
                y, logp_y = jnp.where(ok[:, None], prop, y), jnp.where(ok, got, logp_y)
                lo = jnp.where(ok, t, jnp.where(t < 0, t, lo))
                hi = jnp.where(ok, t, jnp.where(t >= 0, t, hi))
                return sub, y, logp_y, lo, hi

            _, y, logp_y, _, _ = jax.lax.fori_loop(
                0, shrinks, shrink, (sub, mine, mine_logp, lo, lo + 1.0)
            )
            x, logp = x.at[half::2].set(y), logp.at[half::2].set(logp_y)
        return key, x, logp

    return jax.lax.fori_loop(0, scene.ensemble_moves, ensemble, (key, x, logp))[1:]


def _largest_beta(beta, mism, target, base=None, top=40.0):
    """Brute force: the largest beta' on a 1e-3 grid of [beta, top] whose weights base x
    exp(-(beta' - beta) x mism) keep an ESS of target (numpy, float64; where the ESS falls
    as beta rises, as in every case below)."""
    base = np.zeros(len(mism)) if base is None else np.asarray(base, np.float64)
    grid = np.arange(beta, top + 5e-4, 1e-3)
    log_w = base[None] - (grid[:, None] - beta) * np.asarray(mism, np.float64)[None]
    w = np.exp(log_w - log_w.max(1, keepdims=True))
    ess = w.sum(1) ** 2 / (w**2).sum(1)
    return grid[np.flatnonzero(ess >= target)[-1]]


@pytest.mark.parametrize(
    "beta,mism,target,base,capped",
    [
        # chains all at one mismatch: every beta keeps the ESS (the brute force says 40), yet
        # the states of 0 mismatches no chain has reached gain e^d of the target a step of d
        (5.0, [1] * 96, 48, None, True),
        (39.5, [1] * 96, 48, None, True),  # the cap stops at 40
        (5.0, [2] * 96, 48, None, True),
        # none on, and the ESS binds before the cap (about 0.24)
        (5.0, [1] * 48 + [5] * 48, 80, None, True),
        # chains on the posterior: the ESS alone decides, past where the cap would stop
        (5.0, [0] * 10 + [1] * 80 + [2] * 6, 48, None, False),
        (5.0, [0] + [1] * 95, 1.5, None, False),  # one chain on is one
        (5.0, [0] + [1] * 40, 1.5, None, False),  # of 41 too (float32: 1/41 x 41 < 1)
        # the importance pool's first step: a match without weight (the pool's -1e30: off
        # the prior's support) or with a negligible one (e^-30) is no match; one of an
        # average sample's weight is
        (0.0, [0] * 3 + [1] * 93, 90, [-1e30] * 3 + [0.0] * 93, True),
        (0.0, [0] + [1] * 95, 90, [-30.0] + [0.0] * 95, True),
        (0.0, [0] * 3 + [1] * 93, 90, [-1e30] * 96, True),  # nothing weighed at all
        (0.0, [0] + [1] * 95, 60, [0.0] * 96, False),
    ],
)
def test_tempering_steps_by_one_at_most_while_no_chain_matches_every_token(
    beta, mism, target, base, capped
):
    from rectbert.analysis import smc

    want = _largest_beta(beta, mism, target, base)
    if capped:
        want = min(want, beta + 1.0)
    else:
        assert want > beta + 1.2, want  # a case the cap would have cut
    args = (jnp.float32(beta), jnp.asarray(mism, jnp.int32), float(target))
    args += () if base is None else (jnp.asarray(base, jnp.float32),)
    assert float(smc._next_beta(*args, step=1.0)) == pytest.approx(want, abs=2e-3)
