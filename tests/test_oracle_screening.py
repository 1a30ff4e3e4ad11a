"""The oracle's screening of a mixture's components (mixture.screened, stages.walk's floor):
which components run SMC, that a run under its floor stops and keeps only the importance
estimate, and that the letter drawn is not screened out among many. Against rejection
sampling: tests/test_oracle_rejection.py (slow tier)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rectbert
from rectbert.analysis import calls, mixture, oracle, oracle_curve, stages
from rectbert.data import tasks
from rectbert.data.sparse_task import SparseTask


def test_screened_settles_what_importance_has_and_gives_the_largest_bound_the_full_chains():
    # one component: always SMC with the whole chains
    one = (jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros(1))
    assert mixture.screened(one, jnp.zeros(1), 96).tolist() == [2]
    # three of equal prior, bounds e^0, e^-1, e^-10, importance estimates e^-0.5, none, none:
    # a share at its largest is its bound over that plus the others' estimates (by hand):
    # 1 / 1 = 1, e^-1 / (e^-1 + e^-0.5) = 0.378, e^-10 / (e^-10 + e^-0.5) = 7.5e-5
    bounds = jnp.asarray([[0.0, 0.0], [-1.0, -1.0], [-10.0, -10.0]])
    ess = jnp.asarray([[100.0, 100.0], [30.0, 30.0], [0.0, 0.0]])
    found = jnp.asarray([-0.5, -jnp.inf, -jnp.inf])
    prior = jnp.full(3, -np.log(3.0))
    # 100 >= 1 x 96: settled; 30 < 0.378 x 96 = 36.3 and 0 < 0.007: SMC, larger bound first
    # (the others' bounds do not shrink a share, they are not evidence: with the first's e^0
    # counted, the second's would be 0.269 and 30 >= 25.8 would settle it)
    assert mixture.screened((bounds, ess, found), prior, 96).tolist() == [0, 2, 1]
    # one replica short of its share is enough to run SMC (both must have it)
    ess = ess.at[0, 1].set(90.0)
    assert mixture.screened((bounds, ess, found), prior, 96).tolist() == [2, 1, 1]
    assert mixture.screened(one, jnp.zeros(1), 96, screen=False).tolist() == [2]
    assert mixture.screened((bounds, ess, found), prior, 96, screen=False).tolist() == [2] * 3


def test_a_component_runs_smc_whatever_its_screening_bound_and_a_stop_is_said():
    # the screening's bound is a Monte Carlo estimate that can fall e^20 short (rects, 1-4,
    # at 20 visible: the 4-rectangle component was skipped on it and given p = 0): whatever
    # it says, a component the tiers send to SMC starts it; the floor is STOP of the evidence
    # found so far over the component's prior (by hand: e^0 x 1e-4 / 0.25), and a run that
    # reports a stop (a finite log_stop) is STOPPED, one that does not keeps its tier
    cfg, calls_ = oracle.OracleConfig(), []

    def run(log_stop):
        def go(tier, floor):
            calls_.append((int(tier), float(floor)))
            return (None, None, None, None, jnp.asarray([-3.0, -3.0]), jnp.full(2, log_stop))

        return go

    ref, _, tier = mixture._turn(jnp.float32(0.0), jnp.int32(1), np.log(0.25), cfg, run(-np.inf))
    floor = np.log(mixture.STOP) - np.log(0.25)
    assert calls_ == [(1, pytest.approx(floor, abs=1e-5))] and int(tier) == 1
    assert float(ref) == pytest.approx(np.logaddexp(0.0, np.log(0.25) - 3.0), abs=1e-6)
    _, _, tier = mixture._turn(jnp.float32(0.0), jnp.int32(2), np.log(0.25), cfg, run(-30.0))
    assert calls_[-1][0] == 2 and int(tier) == mixture.STOPPED
    _, _, tier = mixture._turn(jnp.float32(0.0), jnp.int32(0), np.log(0.25), cfg, run(-np.inf))
    assert calls_[-1][0] == 0 and int(tier) == 0  # settled: its evidence is in ref already


def _rect_example(visible: int):
    scene = rectbert.scene("rect")
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=1, seed=3)
    task = task.with_codebook(task.fit_codebook()[0])
    b = oracle_curve.held_out(task, visible, 1)
    cfg = oracle.OracleConfig(num_samples=256, chains=32, anneal_steps=4, mcmc_steps=1)
    args = (b.points[0], b.tokens[0], ~b.mask[0], jnp.asarray(task.codebook))
    return args, scene, cfg


def test_smc_under_its_floor_stops_and_keeps_only_the_importance_estimate():
    args, scene, cfg = _rect_example(8)
    s = jax.jit(lambda k: stages.screen(k, *args, scene, cfg))(jax.random.key(0))
    run = jax.jit(lambda s, floor: stages.walk(s, *args, scene, cfg, None, floor))
    probs, found, _, live, log_z, log_stop = run(s, jnp.float32(jnp.inf))
    # stopped: a finite bound of what was left out, no state on the posterior (whatever the
    # states are), the estimate importance's own
    assert np.isfinite(log_stop) and not np.asarray(live).any()
    np.testing.assert_array_equal(probs, s.by_is.probs)
    assert float(log_z) == float(s.by_is.log_z) or not bool(found)
    probs, _, _, live, _, log_stop = run(s, jnp.float32(-jnp.inf))  # no floor: SMC runs on
    assert float(log_stop) == -np.inf and np.asarray(live).any()


@pytest.mark.slow  # 40 s here: the oracle of 8 letters compiled
def test_the_letter_drawn_is_found_among_eight_and_most_are_screened_out():
    # at 19 visible points the letter drawn explains them, almost always alone: the oracle's
    # posterior puts it first, and SMC runs on few of the eight (measured: the letter drawn
    # first on 7 of 8 examples, its mean probability 0.88; 1-3 letters walked a median)
    scene = rectbert.scene("glyph", glyphs="AEHLOTVX")
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=8, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    b = oracle_curve.held_out(task, 19, 8)
    post = oracle.posterior(jax.random.key(0), b.points, b.tokens, ~b.mask, task.codebook, scene)
    drawn = np.round(np.asarray(b.scenes)[:, 0]).astype(int)
    p_drawn = post.components[np.arange(8), drawn]
    print(f"p(letter drawn | visible) {np.round(p_drawn, 3)}; walked {post.walked.tolist()}")
    assert np.mean(post.components.argmax(-1) == drawn) >= 6 / 8
    assert p_drawn.mean() >= 0.7
    assert np.median(np.isin(post.walked, (1, 2)).sum(-1)) <= 4  # the screening: few run SMC
    assert post.dropped.max() <= 1e-2


@pytest.mark.slow  # 30 s here
def test_two_letters_that_both_explain_the_points_are_both_kept(monkeypatch):
    # F is E without its bottom bar: points whose tokens are the same under E and F at one
    # placement, none near that bar, are explained by both letters at nearly the same
    # placements (E's bar must also miss every window: another share, not none). Sixteen on
    # the strokes make the posterior narrow (SMC runs on both); one letter screened out, or
    # its SMC stopped, leaves it nothing (planted below: a floor 10^8 too high). Measured:
    # p(F) 0.12-0.40 over three runs (the evidence is noisy at 19 visible)
    scene = rectbert.scene("glyph", glyphs="EF")
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=4, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    at = jnp.asarray([[0, 200.0, 0.0, 128.0, 128.0], [1, 200.0, 0.0, 128.0, 128.0]])
    assert np.isfinite(np.asarray(scene.log_density(at))).all()
    pts = np.asarray(jax.random.uniform(jax.random.key(5), (4000, 2)) * 256, np.float32)
    toks = np.stack(
        [task.tokens_of(np.asarray(scene.coverage(at[i : i + 1], pts[None]))[0]) for i in range(2)]
    )
    empty = int(task.tokens_of(np.zeros((1, 16), np.float32))[0])
    same = toks[0] == toks[1]
    on = np.flatnonzero(same & (toks[1] != empty))[:16]
    off = np.flatnonzero(same & (toks[1] == empty))[:3]
    rest = np.flatnonzero(~np.isin(np.arange(4000), np.concatenate([on, off])))[:5]
    chosen = np.concatenate([on, off, rest])
    assert len(on) == 16 and len(off) == 3
    visible = np.arange(24) < 19
    three = [np.repeat(a[None], 3, 0) for a in (pts[chosen], toks[1, chosen], visible)]
    post = oracle.posterior(jax.random.key(0), *three, task.codebook, scene)  # 3 keys
    print(f"p(E), p(F) {post.components.round(3).tolist()}; walked {post.walked.tolist()}")
    assert np.isin(post.walked, (1, 2)).all()  # both run SMC: the case checks the screening
    assert post.components.min() >= 0.03
    # every screening bound planted at e^-10000 (the estimate can fall that short where no
    # proposal comes close): both letters are still sampled and kept (the bound once
    # skipped the second letter, which left it nothing)
    real = stages.screen
    monkeypatch.setattr(
        mixture, "screen", lambda *a: real(*a)._replace(log_bound=jnp.float32(-1e4))
    )
    monkeypatch.setattr(calls, "_COMPILED", {})  # the compiled oracle holds the screening
    jax.clear_caches()
    tiny = oracle.posterior(jax.random.key(0), *three, task.codebook, scene)
    print(f"bounds planted tiny: p(E), p(F) {tiny.components.round(3).tolist()}")
    assert tiny.components.min() >= 0.03
    monkeypatch.setattr(mixture, "screen", real)
    # planted: a floor 10^8 too high stops the second letter's SMC at once, and it is lost
    monkeypatch.setattr(mixture, "STOP", 1e4)
    monkeypatch.setattr(calls, "_COMPILED", {})  # the compiled oracle holds the floor
    jax.clear_caches()
    wrong = oracle.posterior(jax.random.key(0), *three, task.codebook, scene)
    assert wrong.components.min() < 0.01


@pytest.mark.slow  # 70 s here: two oracles of 4 letters compiled
def test_screening_leaves_the_posterior_as_running_every_component_does():
    # the same examples, screened and not (every letter's SMC run to the end): they agree to
    # within the samplers' noise (measured: mean TV of the predictive 0.02-0.03, of
    # p(letter) 0.02-0.05, about what two unscreened runs differ by)
    scene = rectbert.scene("glyph", glyphs="EFLT")
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), eval_examples=6, seed=1)
    task = task.with_codebook(task.fit_codebook()[0])
    tv, parts = [], []
    for v in (4, 12):
        b = oracle_curve.held_out(task, v, 6)
        args = (b.points, b.tokens, ~b.mask, task.codebook, scene)
        on = oracle.posterior(jax.random.key(v), *args)
        off = oracle.posterior(jax.random.key(v), *args, oracle.OracleConfig(screen=False))
        hidden = np.asarray(b.mask)
        tv.append(0.5 * np.abs(on.probs - off.probs).sum(-1)[hidden].mean())
        parts.append(0.5 * np.abs(on.components - off.components).sum(-1).mean())
        assert (off.walked == 2).all() and (on.walked != 2).any()
    print(f"screened vs not: predictive TV {np.round(tv, 3)}, p(letter) TV {np.round(parts, 3)}")
    assert max(tv) <= 0.06 and max(parts) <= 0.1
