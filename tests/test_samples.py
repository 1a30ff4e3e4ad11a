"""Joint sampling against an enumerated joint distribution, the consistency search against
hand-derived impossibilities and shapely's areas, the MMD's joint sensitivity, and the
samples command end to end."""

import dataclasses
import functools
import itertools
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shapely

import rectbert
from experiments import cli
from rectbert import config
from rectbert.analysis import oracle, oracle_curve
from rectbert.analysis.samples import figure, measures, posterior, sampler, scores, settings
from rectbert.data.sparse_task import SparseTask
from rectbert.data.tasks import Batch
from rectbert.recipes import sample as sample_recipe
from rectbert.recipes import sparse
from tests.conftest import ANYCOUNT, build, copy

# a joint distribution over 3 binary tokens, far from the product of its marginals
JOINT = np.array([0.31, 0.02, 0.03, 0.15, 0.05, 0.10, 0.25, 0.09])  # index = x0 x1 x2 (bits)
CONFIGS = np.array(list(itertools.product([0, 1], repeat=3)))  # [8, 3], row i = bits of i


def exact_conditionals(params, batch: Batch, joint=JOINT):
    """A 'model' whose every answer is the enumerated joint's exact conditional: logits
    [B, 3, 2] of each token given the visible ones (the other hidden ones summed out)."""
    del params
    table, configs = jnp.asarray(joint), jnp.asarray(CONFIGS)
    agree = jnp.all(
        (configs[None] == batch.tokens[:, None]) | batch.mask[:, None], axis=-1
    )  # [B, 8] configs consistent with what is visible
    w = table[None] * agree
    per = jnp.stack([(w[:, :, None] * (configs[None] == k)).sum(1) for k in (0, 1)], -1)
    return jnp.log(per / per.sum(-1, keepdims=True))


PREDICT = jax.jit(exact_conditionals)


def empirical(tokens_Nx3):
    index = tokens_Nx3 @ np.array([4, 2, 1])
    return np.bincount(index, minlength=8) / len(index)


def hidden_batch(n, visible=None):
    """n examples, every token hidden (or token 0 shown as `visible`), at points spread over
    the canvas (the joint does not depend on them; the spread order does)."""
    mask = np.ones((n, 3), bool)
    tokens = np.zeros((n, 3), np.int32)
    if visible is not None:
        mask[:, 0], tokens[:, 0] = False, visible
    points = np.random.default_rng(n).uniform(0, 256, (n, 3, 2))
    return Batch(jnp.asarray(points, jnp.float32), jnp.asarray(tokens), jnp.asarray(mask))


def test_joint_sampling_in_random_order_draws_the_joint_and_independent_its_marginals():
    n = 20000
    key = jax.random.key(0)
    ancestral = sampler.SampleConfig(order="random")
    joint = sampler.sample(PREDICT, None, hidden_batch(n), key, ancestral)
    got = empirical(np.asarray(joint))
    assert 0.5 * np.abs(got - JOINT).sum() < 0.015
    marg = np.array([JOINT[CONFIGS[:, i] == 1].sum() for i in range(3)])
    product = np.prod(np.where(CONFIGS == 1, marg, 1 - marg), axis=1)
    assert 0.5 * np.abs(product - JOINT).sum() > 0.2  # the two laws are far apart
    indep = sampler.sample(
        PREDICT, None, hidden_batch(n), key, sampler.SampleConfig(method="independent")
    )
    assert 0.5 * np.abs(empirical(np.asarray(indep)) - product).sum() < 0.015
    # revealing every hidden token at once is independent sampling too
    at_once = sampler.sample(
        PREDICT, None, hidden_batch(n), key, dataclasses.replace(ancestral, per_step=3)
    )
    assert 0.5 * np.abs(empirical(np.asarray(at_once)) - product).sum() < 0.015
    # given x0 = 1, the joint's conditional law of (x1, x2), and x0 kept
    given = np.asarray(sampler.sample(PREDICT, None, hidden_batch(n, visible=1), key, ancestral))
    assert np.all(given[:, 0] == 1)
    cond = JOINT * (CONFIGS[:, 0] == 1)
    assert 0.5 * np.abs(empirical(given) - cond / cond.sum()).sum() < 0.015


def counted(predict):
    """predict, and a list whose length is the number of times the jitted sampler called it."""
    seen = []

    def wrapped(params, batch):
        jax.debug.callback(lambda: seen.append(1), ordered=True)
        return predict(params, batch)

    return wrapped, seen


def test_remask_rounds_are_gibbs_steps_that_reach_the_joint_from_a_wrong_start():
    """Three tokens drawn at once (per_step 3: independently, far from the joint), then single
    token Gibbs rounds (remask 0.3 of 3: one token a round) on the exact conditionals: the
    chain's law approaches the joint; without rounds it stays the product of the marginals."""
    n, key = 20000, jax.random.key(8)
    marg = np.array([JOINT[CONFIGS[:, i] == 1].sum() for i in range(3)])
    product = np.prod(np.where(CONFIGS == 1, marg, 1 - marg), axis=1)
    for rounds, law, tol in [(0, product, 0.015), (30, JOINT, 0.02)]:
        cfg = sampler.SampleConfig(order="remask", per_step=3, remask=0.3, rounds=rounds)
        drawn = np.asarray(sampler.sample(PREDICT, None, hidden_batch(n), key, cfg))
        assert 0.5 * np.abs(empirical(drawn) - law).sum() < tol, rounds


# two modes (all 0, all 1) and a little mass on each of the six mixed token sets
MODES = np.array([0.45, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.45])


def test_repair_redraws_the_strays_and_nothing_when_none_is_under_its_threshold():
    predict = jax.jit(functools.partial(exact_conditionals, joint=MODES))
    n, key = 20000, jax.random.key(6)

    def constant(cfg):
        t = np.asarray(sampler.sample(predict, None, hidden_batch(n), key, cfg))
        return np.mean(t.min(1) == t.max(1)), t

    plain, first = constant(sampler.SampleConfig(order="random"))
    assert abs(plain - 0.9) < 0.015  # ancestral: the joint's 0.9 of constant sets
    # by hand: in 0 0 1, p(x2 = 1 | 0 0) = (0.1/6) / (0.45 + 0.1/6) = 0.036 < 0.2: redrawn;
    # p(x0 = 0 | 0 1) = p(x1 = 0 | 0 1) = 0.5 are kept. The redraw is a constant set with
    # probability 0.96, and a round later the rest; 8 rounds leave under 1e-3 mixed
    repaired, fixed = constant(sampler.SampleConfig())  # the default
    assert repaired > 0.99, repaired
    # threshold 0 (nothing is under it) and 0 rounds: the first draw, untouched; it is the
    # remask sampler's first draw too (from the same key)
    for cfg in (dict(threshold=0.0), dict(rounds=0)):
        untouched = sampler.sample(
            predict, None, hidden_batch(n), key, sampler.SampleConfig(order="repair", **cfg)
        )
        first_draw = sampler.sample(
            predict, None, hidden_batch(n), key, sampler.SampleConfig(order="remask", rounds=0)
        )
        np.testing.assert_array_equal(untouched, first_draw)
    assert not np.array_equal(first_draw, fixed)


@pytest.mark.parametrize("budget", [sampler.LOO_ELEMENTS, 1])  # one call; a call a position
def test_leave_one_out_is_each_token_given_all_the_others_by_hand(monkeypatch, budget):
    monkeypatch.setattr(sampler, "LOO_ELEMENTS", budget)
    tokens = jnp.asarray(CONFIGS)  # every token set of 3 bits
    batch = Batch(jnp.zeros((8, 3, 2)), tokens, jnp.zeros((8, 3), bool))
    got = np.asarray(sampler.leave_one_out(exact_conditionals, None, batch, tokens))
    for row, bits in enumerate(CONFIGS):
        for i in range(3):
            flipped = bits.copy()
            flipped[i] = 1 - bits[i]
            mine, other = (JOINT[int("".join(map(str, b)), 2)] for b in (bits, flipped))
            assert got[row, i] == pytest.approx(np.log(mine / (mine + other)), abs=1e-5)


def counting(params, batch: Batch):
    """A 'model' whose every hidden token's sure answer is how many tokens are known: at
    temperature 0 the completion records the step at which each position was revealed."""
    del params
    known = jnp.sum(~batch.mask, axis=1)
    return jnp.log(jax.nn.one_hot(known, 16) + 1e-9)[:, None].repeat(batch.mask.shape[1], 1)


def test_the_orders_by_hand_spread_reveals_the_farthest_point_first():
    # points on a line, x = 0 (visible), 10, 50, 100, 104: farthest from {0} is 104 (step 1);
    # then from {0, 104}: 10 -> 10, 50 -> 50, 100 -> 4: 50 (step 2); then 10 (5 from... 10
    # from 0, 40 from 50) vs 100 (4 from 104): 10 (step 3); then 100 (step 4)
    x = jnp.asarray([[0.0, 10.0, 50.0, 100.0, 104.0]])
    batch = Batch(
        jnp.stack([x, jnp.zeros_like(x)], -1),
        jnp.zeros((1, 5), jnp.int32),
        jnp.asarray([[False, True, True, True, True]]),
    )
    greedy = dict(temperature=0)
    got = sampler.sample(
        counting, None, batch, jax.random.key(0), sampler.SampleConfig(order="spread", **greedy)
    )
    np.testing.assert_array_equal(np.asarray(got)[0], [0, 3, 2, 4, 1])
    # two a step: 104, then 50 (farthest from 0 and 104: not 100, its neighbour) with 1
    # known; then 10 and 100 with 3 known
    two = sampler.SampleConfig(order="spread", per_step=2, **greedy)
    np.testing.assert_array_equal(
        np.asarray(sampler.sample(counting, None, batch, jax.random.key(0), two))[0],
        [0, 3, 1, 3, 1],
    )
    # random order: each key a permutation of the steps
    perms = {
        tuple(
            np.asarray(
                sampler.sample(
                    counting,
                    None,
                    batch,
                    jax.random.key(k),
                    sampler.SampleConfig(order="random", **greedy),
                )
            )[0]
        )
        for k in range(20)
    }
    assert all(sorted(p[1:]) == [1, 2, 3, 4] for p in perms) and len(perms) > 5


def test_greedy_decoding_hand_computed_in_both_orders():
    greedy = np.asarray(
        sampler.sample(
            PREDICT,
            None,
            hidden_batch(1),
            jax.random.key(1),
            sampler.SampleConfig(order="confident", temperature=0),
        )
    )[0]
    # by hand: marginals P(x = 1) are x0 0.49, x1 0.52, x2 0.36; greedy reveals x2 = 0 first
    # (0.64); given it, x1 = 0 (0.36 / 0.64 = 0.5625) beats x0 = 0 (0.34 / 0.64 = 0.531);
    # then x0 | x1 = x2 = 0 is 0 (0.31 vs 0.05)
    np.testing.assert_array_equal(greedy, [0, 0, 0])
    # the argmax of each marginal alone: (0, 1, 0), a token set the joint decoding avoids
    arg = np.asarray(
        sampler.sample(
            PREDICT, None, hidden_batch(1), jax.random.key(1), sampler.SampleConfig("argmax")
        )
    )[0]
    np.testing.assert_array_equal(arg, [0, 1, 0])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(method="gibbs"), "method"),
        (dict(order="left"), "order"),
        (dict(temperature=-1.0), "temperature"),
        (dict(per_step=0), "per_step"),
        (dict(rounds=10_001), "rounds"),
        (dict(remask=0.0), "remask"),
        (dict(threshold=1.5), "threshold"),
        (dict(temperature=True), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
    ],
)
def test_bad_sample_configs_are_refused_by_field(kwargs, field):
    with pytest.raises(config.ConfigError, match=field):
        sampler.SampleConfig(**kwargs)


def shapely_tokens(rect_xyxy, points_Px2, centroids_KxG):
    """Each point's 4x4 window of 16 px cells, covered fraction per cell from shapely's
    intersection areas, quantised to the nearest centroid: the task's token, independently."""
    shape = shapely.box(*rect_xyxy)
    out = []
    for px, py in points_Px2:
        cells = [
            shapely.box(px - 32 + 16 * c, py - 32 + 16 * r, px - 16 + 16 * c, py - 16 + 16 * r)
            for r in range(4)
            for c in range(4)
        ]
        v = np.array([shape.intersection(cell).area / 256.0 for cell in cells])
        out.append(int(np.argmin(((centroids_KxG - v) ** 2).sum(-1))))
    return np.array(out)


@pytest.mark.slow  # the oracle's search, compiled for two shapes: 14 s here
def test_consistency_finds_true_token_sets_and_refuses_convexity_violations(sparse_task):
    task, centroids = sparse_task, np.asarray(sparse_task.codebook)
    full = int(np.argmin(((centroids - 1.0) ** 2).sum(-1)))
    empty = int(np.argmin((centroids**2).sum(-1)))
    line = np.array([[[96.0, 128.0], [128.0, 128.0], [160.0, 128.0]]])
    # two fully covered windows and an empty one between them: no convex shape does that;
    # nor an empty window overlapping a full one
    bad = np.array([[full, empty, full], [empty, empty, full]])
    found, witness = oracle.consistent(
        jax.random.key(0), np.repeat(line, 2, 0), bad, centroids, task.scene
    )
    assert not found.any() and np.isnan(witness).all()
    # every token set of a real rectangle is found, and the witness has exactly those tokens
    batch = jax.jit(task.eval_set)()
    n = 4  # the search's batch: padded to 4 (its hit rate on many: the slow tier's tests)
    found, witness = oracle.consistent(
        jax.random.key(1), batch.points[:n], batch.tokens[:n], centroids, task.scene
    )
    assert found.mean() >= 3 / 4
    for i in np.flatnonzero(found):
        toks = shapely_tokens(witness[i], np.asarray(batch.points[i]), centroids)
        np.testing.assert_array_equal(toks, np.asarray(batch.tokens[i]))


def test_mmd_sees_the_joint_law_not_only_the_marginals():
    rng = np.random.default_rng(0)

    def joint(n):  # 6 tokens all equal: marginals uniform
        return np.repeat(rng.integers(0, 2, (n, 1)), 6, axis=1)

    def independent(n):  # the same marginals, independent
        return rng.integers(0, 2, (n, 6))

    same = [measures.mmd2(joint(16), joint(16)) for _ in range(200)]
    other = [measures.mmd2(independent(16), joint(16)) for _ in range(200)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(200)  # unbiased: 0 in expectation
    assert np.mean(other) > 0.2
    # diversity by hand: 3 completions of 4 tokens, tokens 1 and 3 hidden
    x = np.array([[0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    hidden = np.array([False, True, False, True])
    # pairs: (0,1) 1 of 2 differ, (0,2) 2 of 2, (1,2) 1 of 2 -> mean (0.5 + 1 + 0.5) / 3
    assert measures.diversity(x, hidden) == pytest.approx(2 / 3)


def test_pairwise_tv_against_counting_every_pair_by_hand():
    import collections

    rng = np.random.default_rng(5)
    for s, t, length in [(8, 8, 6), (5, 11, 9), (16, 3, 4)]:
        x, y = rng.integers(0, 4, (s, length)), rng.integers(0, 4, (t, length))
        hidden = rng.random(length) < 0.7
        hidden[:2] = True
        h = np.flatnonzero(hidden)
        tvs = []
        for a, b in itertools.combinations(h, 2):
            px = collections.Counter(zip(x[:, a], x[:, b], strict=True))
            py = collections.Counter(zip(y[:, a], y[:, b], strict=True))
            tvs.append(0.5 * sum(abs(px[k] / s - py[k] / t) for k in set(px) | set(py)))
        assert measures.pairwise_tv(x, y, hidden) == pytest.approx(np.mean(tvs))
    # by hand: the same law is 0 apart; (0, 0) always against (1, 1) always is 1 apart; and
    # equal marginals with the opposite coupling are 1 apart at the pair, 0 at each token
    same = np.array([[0, 1, 2], [1, 0, 2]])
    assert measures.pairwise_tv(same, same[::-1], np.array([True, True, False])) == 0
    assert measures.pairwise_tv(np.zeros((3, 2), int), np.ones((2, 2), int), np.ones(2, bool)) == 1
    equal, opposite = np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 0]])
    assert measures.pairwise_tv(equal, opposite, np.ones(2, bool)) == 1
    assert np.isnan(measures.pairwise_tv(equal, opposite, np.array([True, False])))


@pytest.mark.slow  # the oracle's posterior and consistency search, compiled for the run: 55 s
def test_samples_end_to_end_through_both_entry_points(tmp_path, capsys, anycount_run):
    workdir = pathlib.Path(copy(anycount_run, tmp_path))
    out = workdir / "samples.json"
    few = ["--sample_examples=2", "--samples_per_example=2"]
    cli.run(
        sample_recipe,
        f"--workdir={workdir}",
        "--sample_visible=3",
        *few,
        "--sample_temperature=0.8",
    )
    rows = json.loads(out.read_text())
    labels = [(r["method"], r["order"]) for r in rows if r["visible"] == 3]
    assert labels == [
        ("argmax", None),
        ("independent", None),
        ("joint", "random"),
        ("joint", "confident"),
        ("joint", "spread"),
        ("joint", "remask"),
        ("joint", "repair"),
        ("oracle", None),
        ("oracle_marginals", None),
    ]
    for r in rows:
        assert r["examples"] == 2 and r["samples_per_example"] == 2 and r["step"] == 3
        sampled = r["method"] in ("independent", "joint")
        assert r["temperature"] == (0.8 if sampled else None)
        for name in ("accuracy", "diversity", "consistent_fraction", "mmd", "pairwise_tv"):
            assert np.isfinite(r[name]) and r[name + "_stderr"] >= 0
        assert 0 <= r["consistent_fraction"] <= 1
    # the oracle's own posterior samples are shapes: the search finds (nearly) all of them
    assert min(r["consistent_fraction"] for r in rows if r["method"] == "oracle") >= 0.8
    for name in ("samples.png", "samples_by_count.png"):
        assert os.path.getsize(workdir / "figures" / name) > 0
    # the experiment's flag on the finished workdir rewrites the file
    cli.run(sparse, f"--workdir={workdir}", *ANYCOUNT, "--samples", "--sample_visible=2", *few)
    assert {r["visible"] for r in json.loads(out.read_text())} == {2}
    # from Python: the run's joint sampler keeps what is visible and fills the rest
    run = rectbert.load_run(str(workdir))
    batch = run.task().eval_set()
    visible = np.zeros((4, 24), bool)
    visible[:, :3] = True
    drawn = np.asarray(run.sample(batch.points[:4], batch.tokens[:4], visible, jax.random.key(0)))
    np.testing.assert_array_equal(drawn[:, :3], np.asarray(batch.tokens[:4, :3]))
    assert drawn.shape == (4, 24) and drawn.min() >= 0 and drawn.max() < run.model_config.num_tokens
    capsys.readouterr()


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--sample_visible=0"], "sample_visible"),
        (["--sample_visible=24"], "sample_visible"),
        (["--sample_visible=2.5"], "sample_visible"),
        (["--sample_examples=1"], "sample_examples"),
        (["--samples_per_example=1"], "samples_per_example"),
        (["--point_sampler=edges"], "point_sampler"),
        (["--samples_per_example=97"], "samples_per_example"),
        (["--sample_temperature=0"], "sample_temperature"),
        (["--sample_temperature=nan"], "sample_temperature"),
        (["--joint_samplers=random,gibbs"], "joint_samplers"),
        (["--sampler_rounds=-1"], "sampler_rounds"),
        (["--sampler_rounds=100000000000"], "sampler_rounds"),
        (["--repair_threshold=1.5"], "repair_threshold"),
        (["--remask_share=0"], "remask_share"),
        (["--remask_share=1.5"], "remask_share"),
    ],
)
def test_bad_sample_flags_fail_in_one_line_before_any_compute(tmp_path, args, flag):
    with pytest.raises(cli.Error, match=f"--{flag}") as e:
        build(sparse, f"--workdir={tmp_path / 'run'}", "--samples", *args)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


def test_the_samples_command_refuses_what_it_cannot_load(tmp_path):
    with pytest.raises(cli.Error, match="--workdir"):
        cli.run(sample_recipe, f"--workdir={tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli.Error, match="--workdir.*loadable"):
        cli.run(sample_recipe, f"--workdir={tmp_path / 'empty'}")
    assert os.listdir(tmp_path / "empty") == []


@pytest.mark.slow  # the oracle's search over 169 lattice tokens: 11 s here
def test_grid_completions_keep_the_visible_and_grid_truths_are_shapes(sparse_task):
    from rectbert.data.scene_tasks import GridTask
    from rectbert.model import encoder
    from rectbert.training import evaluation

    task = GridTask(sparse_task.scene, sparse_task.mask, num_clusters=12, eval_examples=2)
    task = task.with_codebook(sparse_task.codebook)
    cfg = encoder.ModelConfig(
        num_tokens=12, num_positions=169, embed_dim=16, mlp_dim=32, num_heads=2, num_layers=1
    )
    batch = jax.jit(task.eval_set)()
    params = jax.jit(encoder.Encoder(cfg).init)(jax.random.key(0), batch.tokens, batch.points)
    params = params["params"]
    predict = evaluation.make_predict(cfg)
    drawn = np.asarray(
        # the default sampler (repair: its leave-one-out pass over 169 positions too)
        sampler.sample(predict, params, batch, jax.random.key(1), sampler.SampleConfig(per_step=8))
    )
    visible = ~np.asarray(batch.mask)
    np.testing.assert_array_equal(drawn[visible], np.asarray(batch.tokens)[visible])
    assert drawn.shape == (2, 169) and 0 <= drawn.min() and drawn.max() < 12
    # the grid's tokens are the scene's coverage at the lattice points: the search finds them
    ok = posterior.consistency(
        task, batch.points, np.asarray(batch.tokens)[:, None], jax.random.key(2)
    )
    assert ok.all()


@pytest.mark.slow  # the scoring and the figure compiled for a scene of its own: 11 s here
def test_scenes_the_oracle_cannot_sample_get_accuracy_and_diversity_only(sparse_task, tmp_path):
    from rectbert import scenes
    from rectbert.data import tasks
    from rectbert.data.sparse_task import SparseTask
    from rectbert.model import encoder
    from rectbert.training import evaluation

    @dataclasses.dataclass(frozen=True)
    class Opaque(type(scenes.scene("rect"))):  # every built-in scene is sampled: declare one not
        def oracle_unsupported(self):
            return "an opaque test scene"

    scene = Opaque()
    task = SparseTask(scene, tasks.MaskSpec(5, "anycount"), num_clusters=12, eval_examples=4)
    task = task.with_codebook(sparse_task.codebook)
    cfg = encoder.ModelConfig(
        num_tokens=12, position="sincos", embed_dim=16, mlp_dim=32, num_heads=2, num_layers=1
    )
    batch = jax.jit(task.eval_set)()
    params = jax.jit(encoder.Encoder(cfg).init)(jax.random.key(0), batch.tokens, batch.points)
    params = params["params"]
    predict = evaluation.make_predict(cfg)
    cfg = settings.ScoreConfig(visible=(3,), examples=3, per_example=2)
    rows, kept = scores.score(task, predict, params, cfg, log=lambda _: None)
    joint = ["joint"] * len(sampler.SAMPLERS)  # every sampler, no oracle rows
    assert [r["method"] for r in rows] == ["argmax", "independent", *joint]
    for r in rows:
        assert r["consistent_fraction"] is None and r["mmd"] is None
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["diversity"] <= 1
    path = figure.figure(task, predict, params, kept, str(tmp_path / "samples.png"), shown=2)
    assert os.path.getsize(path) > 0


@pytest.mark.slow  # 64 exact sweeps per example, then a search per completion: 25 s here
def test_posterior_sets_are_shapes_and_their_marginals_alone_are_not(sparse_task):
    """The scoring's references: two posterior sets (from independent replicas) whose
    completions are shapes, and the same posterior's per-token marginals drawn independently,
    which are rarely one shape (measured 0.98 / 1.0 / 0.125 on 6 examples x 8): the
    consistency score sees the joint law."""
    task = SparseTask(sparse_task.scene, sparse_task.mask, num_clusters=12, eval_examples=4)
    task = task.with_codebook(sparse_task.codebook)
    batch = oracle_curve.held_out(task, 2, 4)
    chosen, toks, marginal, found = posterior.posterior(
        task, batch, jax.random.key(0), 6, posterior.POSTERIOR
    )
    assert found.all() and not np.array_equal(chosen[:, 0], chosen[:, 1])
    visible = ~np.asarray(batch.mask)
    for sample in (toks[:, 0], toks[:, 1], marginal):  # the visible tokens are kept
        shown = np.where(visible, batch.tokens, 0)[:, None]
        np.testing.assert_array_equal(
            np.where(visible[:, None], sample, 0), np.broadcast_to(shown, sample.shape)
        )
    every = np.concatenate([toks[:, 0], toks[:, 1], marginal], 1)
    ok = posterior.consistency(task, batch.points, every, jax.random.key(1))
    assert ok[:, :12].mean() >= 0.9 and ok[:, 12:].mean() <= 0.4
