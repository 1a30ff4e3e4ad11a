"""Every registered entry against its registry's contract: scene families (rectbert.scenes),
position embeddings and relative geometries (through the encoder), point samplers, joint
samplers (against an enumerated joint law: tests/test_samples.py). The
cases come from the registries, so an entry added is an entry tested, and a broken one fails
with its name; tests elsewhere pin specific entries' exact values.

The references are independent: shapely's areas of the rings a scene's outlines() gives
(tests/references.py), a baseline encoder without the entry, brute-force bounds."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rectbert
from rectbert import scenes
from rectbert.analysis.samples import sampler
from rectbert.data import points as point_samplers
from rectbert.data.tasks import Batch
from rectbert.geometry import shapes
from rectbert.model import encoder, positions, relative
from rectbert.model.encoder import Encoder, ModelConfig
from tests import references
from tests.conftest import family_param, installed
from tests.test_samples import (
    CONFIGS,
    JOINT,
    PREDICT,
    counted,
    empirical,
    exact_conditionals,
    hidden_batch,
)

# every family at its defaults, and option sets pinned here beside them (a variant reaches
# code the defaults do not: a count of rectangles from 1, strokes from 2, a free angle; the
# slow tier runs them)
VARIANTS = [
    ("rotated", (("min_side", 8.0), ("max_side", 60.0))),
    ("rects", (("num_rects", 3), ("min_rects", 1))),
    ("rects", (("num_rects", 4), ("min_side", 10.0), ("max_side", 120.0))),
    ("junction", (("min_strokes", 2), ("max_strokes", 4), ("stroke_width", (12.0, 40.0)))),
    ("glyph", (("rotation", (-20.0, 20.0)), ("glyph_size", (96.0, 160.0)))),
]
CASES = [  # the defaults in the default tier, the variants in the slow one
    family_param(name, opts, id=name + "".join(f"-{k}" for k, _ in opts), slow=bool(opts))
    for name, opts in [(n, ()) for n in sorted(scenes.SCENES)] + VARIANTS
]
N = 3  # shapes per case


@functools.cache
def made(name: str, opts: tuple):
    """(scene, [N, D] prior draws, [N, P, 2] points: uniform ones, ones near the outline and
    the 169 lattice points, [N, P, 16] its coverage there): once per case and process."""
    scene = rectbert.scene(name, **dict(opts))
    params = np.asarray(scene.sample(jax.random.key(0), 64))[:N]
    rng = np.random.default_rng(1)
    lo, hi = shapes.point_bounds()
    uniform = rng.uniform(lo, hi, (N, 8, 2))
    near = []  # points where the drawing is: jittered outline vertices (thin strokes)
    for p in params:
        vertices = np.concatenate(scene.outlines(p))
        pick = vertices[rng.choice(len(vertices), 8)] + rng.normal(0, 6, (8, 2))
        near.append(np.clip(pick, lo, hi))
    lattice = np.broadcast_to(shapes.lattice_points(), (N, 169, 2))
    pts = np.concatenate([uniform, np.stack(near), lattice], 1).astype(np.float32)
    return scene, params, pts, np.asarray(scene.coverage(params, pts))


def case(name, opts):
    try:
        return made(name, opts)
    except Exception as e:  # the entry's name on whatever broke first
        raise AssertionError(f"scene {name} {dict(opts)}: {e!r}") from e


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_samples_lie_in_its_support_with_a_finite_density(name, opts):
    scene, params, _, _ = case(name, opts)
    more = np.asarray(scene.sample(jax.random.key(0), 64))
    np.testing.assert_array_equal(more[:N], params)  # one key, the same shapes
    other = np.asarray(scene.sample(jax.random.key(1), 64))
    assert not np.array_equal(other[:N], params), name
    box = scene.support()
    assert box.shape == (scene.param_dim, 2) and np.all(box[:, 0] <= box[:, 1]), name
    tol = 1e-5 * np.maximum(1, np.abs(box))
    assert np.all((more >= box[:, 0] - tol[:, 0]) & (more <= box[:, 1] + tol[:, 1])), name
    scene.check(more)  # the scene's own check takes its samples
    assert np.all(np.isfinite(np.asarray(scene.log_density(more)))), name


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_density_is_minus_inf_outside_its_support_box(name, opts):
    scene, params, _, _ = case(name, opts)
    box = scene.support().astype(np.float64)
    reach = np.maximum(1.0, 0.5 * (box[:, 1] - box[:, 0]))
    rows = []
    for d in range(scene.param_dim):  # each column past each end of its range
        for value in (box[d, 1] + reach[d], box[d, 0] - reach[d]):
            row = params[0].astype(np.float64).copy()
            row[d] = value
            rows.append(row)
    dens = np.asarray(scene.log_density(jnp.asarray(np.array(rows), jnp.float32)))
    assert np.all(dens == -np.inf), (name, np.flatnonzero(dens != -np.inf))


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_coverage_is_shapelys_cell_areas_of_its_outlines(name, opts):
    scene, params, pts, got = case(name, opts)
    assert got.shape == (N, pts.shape[1], 16) and got.min() >= 0 and got.max() <= 1, name
    want = references.coverage(scene, params, pts)
    np.testing.assert_allclose(got, want, atol=5e-5, err_msg=name)
    assert (want[:, 8:16] > 0).any(), name  # the points near the outline see the shape
    # nested lists, as a user may pass them, give the same
    listed = scene.coverage(np.asarray(params)[:2].tolist(), np.asarray(pts)[:2, :3].tolist())
    np.testing.assert_allclose(np.asarray(listed), got[:2, :3], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_rasterise_is_shapelys_pixel_areas_and_the_lattice_windows(name, opts):
    scene, params, _, cover = case(name, opts)
    image = np.asarray(scene.rasterise(params, 16))
    assert image.shape == (N, 16, 16), name
    want = references.pixel_areas(references.region(scene.outlines(params[0])), 16, scene.size)
    np.testing.assert_allclose(image[0], want, atol=5e-5, err_msg=name)
    # the convention: the lattice point (i, j)'s tokens are downsampled[i:i+4, j:j+4]
    lattice = cover[:, 16:].reshape(N, 13, 13, 4, 4)
    windows = np.lib.stride_tricks.sliding_window_view(image, (4, 4), axis=(1, 2))
    np.testing.assert_allclose(lattice, windows, atol=5e-5, err_msg=name)


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_record_round_trips_through_json(name, opts):
    scene = case(name, opts)[0]
    record = json.loads(json.dumps(scene.record()))
    assert record["name"] == name and scenes.from_record(record) == scene


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_refuses_bad_arrays_in_one_value_error_naming_them(name, opts):
    scene, params, pts, _ = case(name, opts)
    pts = pts[:, :3]
    box = scene.support()
    far = params.copy()
    far[0, 0] = box[0, 1] + max(1.0, float(box[0, 1] - box[0, 0]))
    nan = params.copy()
    nan[-1, -1] = np.nan
    for bad_params, bad_points, said in [
        (params[:, :-1], pts, "params_NxD"),
        (np.concatenate([params, params[:, :1]], 1), pts, "params_NxD"),
        (params[0], pts, "params_NxD"),
        (nan, pts, "params_NxD must be finite"),
        (far, pts, "params_NxD .* must lie in its support"),
        (params, pts[..., :1], "points_NxPx2"),
        (params, pts[:1], "points_NxPx2"),
        (params, np.where(np.arange(3)[:, None] == 1, np.inf, pts), "points_NxPx2 must be finite"),
    ]:
        with pytest.raises(ValueError, match=said) as e:
            scene.coverage(bad_params, bad_points)
        assert type(e.value) is ValueError and "\n" not in str(e.value), (name, str(e.value))
    with pytest.raises(ValueError, match="params_NxD must be finite") as e:
        scene.rasterise(nan, 16)
    assert "\n" not in str(e.value), name
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError, match="count"):
            scene.sample(jax.random.key(0), n)


@pytest.mark.parametrize("name,opts", CASES)
def test_scene_components_are_a_prior_whose_parts_lift_into_its_density(name, opts):
    scene = case(name, opts)[0]
    parts = scene.components()
    log_p = np.array([lp for lp, _ in parts], np.float64)
    assert np.logaddexp.reduce(log_p) == pytest.approx(0.0, abs=1e-5), name  # p(m) sums to one
    # the oracle runs each part's slice moves in the family's blocks (a positive count)
    blocks = scene.oracle_blocks
    assert isinstance(blocks, int) and blocks >= 1, (name, blocks)
    assert all(part.oracle_blocks == blocks for _, part in parts), name
    batch = scene.component_batch()
    if batch is not None:  # the same prior, as one program mapped over the index
        np.testing.assert_allclose(np.asarray(batch[0]), log_p, atol=1e-6, err_msg=name)
    for m in sorted({0, len(parts) - 1}):  # the density of a part, lifted: p(m) p(x | m)
        lp, part = parts[m]
        x = np.asarray(part.sample(jax.random.key(m), 8))
        lifted = np.asarray(scene.lift(m, x))
        assert lifted.shape == (8, scene.param_dim), name
        want = lp + np.asarray(part.log_density(x))
        got = np.asarray(scene.log_density(lifted))
        assert np.all(np.isfinite(want)), name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3, err_msg=f"{name} part {m}")
        back = np.asarray(scene.component_of(lifted))  # which part a shape is of: m again
        np.testing.assert_array_equal(back, m, err_msg=f"{name}: component_of part {m}")


# ------------------------------------------------------------------------- point samplers
def supported(sampler):
    """The registered families (at their defaults, their extras installed) it serves."""
    return [
        n for n in sorted(scenes.SCENES) if installed(n) and sampler.supports(rectbert.scene(n))
    ]


@functools.cache
def compiled_sampler(name: str, scene, p: int):
    """The sampler as one compiled program of (key, params) (a scene is hashable)."""
    return jax.jit(lambda k, x: point_samplers.sample(name, k, scene, x, p))


@pytest.mark.parametrize("name", sorted(point_samplers.SAMPLERS))
def test_point_sampler_draws_p_points_inside_the_bounds_one_set_per_key(name):
    sampler = point_samplers.get(name)
    served = supported(sampler)
    assert served, f"{name} serves no registered scene"
    lo, hi = shapes.point_bounds()
    moves = []  # per family: whether other shapes moved the points (same key)
    for i, family in enumerate(served):
        scene, params, _, _ = case(family, ())
        jitted = compiled_sampler(name, scene, 40)
        fast = np.asarray(jitted(jax.random.key(4), params))
        assert fast.shape == (N, 40, 2) and np.all(np.isfinite(fast)), (name, family)
        assert fast.min() >= lo - 1e-4 and fast.max() <= hi + 1e-4, (name, family)
        if i == 0:  # eager too (op by op: slow), on its first family: the compiled program's
            # points, to float32 rounding (so they are the key's alone: a hidden state would
            # differ between the two calls)
            got = np.asarray(point_samplers.sample(name, jax.random.key(4), scene, params, 40))
            np.testing.assert_allclose(fast, got, rtol=0, atol=1e-3, err_msg=f"{name}, {family}")
        other = np.asarray(jitted(jax.random.key(5), params))
        assert not np.array_equal(other, fast), (name, family)
        moved = np.asarray(scene.sample(jax.random.key(9), 64))[:N]
        elsewhere = np.asarray(jitted(jax.random.key(4), moved))
        if sampler.uniform:  # independent of the shape, as the oracle's likelihood assumes
            np.testing.assert_array_equal(elsewhere, fast, err_msg=f"{name} on {family}")
        moves.append(not np.allclose(elsewhere, fast, rtol=0, atol=1e-3))
    # one that says it is not uniform (the oracle refuses it) does follow the shape somewhere
    assert sampler.uniform or any(moves), f"{name} says it depends on the shape but never does"


# ------------------------------------------------------- position embeddings and geometry
B, L, K = 2, 12, 6


def tiny(**kw) -> ModelConfig:
    return ModelConfig(
        num_tokens=K,
        num_positions=L,
        embed_dim=16,
        mlp_dim=32,
        num_heads=2,
        num_layers=2,  # an entry's parameters in every block
        **kw,
    )


def inputs():
    tokens = jax.random.randint(jax.random.key(3), (B, L), 0, K + 1)
    pts = jax.random.uniform(jax.random.key(4), (B, L, 2), minval=32, maxval=224)
    return tokens, pts


def through_the_encoder(cfg):
    """(logits [B, L, K], the gradient of a loss wrt every parameter, by path, the params)."""
    model, (tokens, pts) = Encoder(cfg), inputs()
    params = jax.jit(model.init)(jax.random.key(1), tokens, pts)

    def loss(p):
        return jnp.mean(jax.nn.log_softmax(model.apply(p, tokens, pts).logits)[..., 0])

    logits = np.asarray(jax.jit(model.apply)(params, tokens, pts).logits)
    grads = jax.tree_util.tree_flatten_with_path(jax.jit(jax.grad(loss))(params))[0]
    return logits, {jax.tree_util.keystr(p): np.asarray(g) for p, g in grads}, params


@functools.cache
def baseline_paths() -> frozenset:
    """The parameters of the encoder with no position embedding and plain attention."""
    return frozenset(through_the_encoder(tiny(position="none"))[1])


def check_own_parameters_learn(what: str, grads: dict) -> None:
    """The entry's own parameters (those the baseline lacks) all receive a gradient."""
    assert all(np.all(np.isfinite(g)) for g in grads.values()), what
    for path in set(grads) - baseline_paths():
        assert np.abs(grads[path]).sum() > 0, f"{what}: no gradient reaches {path}"


@pytest.mark.parametrize("name", sorted(positions.POSITIONS))
def test_position_embedding_through_the_encoder(name):
    cfg = tiny(position=name)
    logits, grads, params = through_the_encoder(cfg)
    assert logits.shape == (B, L, K) and np.all(np.isfinite(logits)), name
    check_own_parameters_learn(name, grads)
    tokens, pts = inputs()
    bf16 = Encoder(ModelConfig(**{**cfg.__dict__, "dtype": "bfloat16"}))
    low = np.asarray(jax.jit(bf16.apply)(params, tokens, pts).logits)
    np.testing.assert_allclose(low, logits, atol=0.1, err_msg=name)  # the fast path agrees
    if positions.POSITIONS[name].continuous:  # a function of (x, y): order does not matter
        perm = np.random.default_rng(0).permutation(L)
        for attention in encoder.ATTENTIONS:  # the same parameters, either attention
            model = Encoder(ModelConfig(**{**cfg.__dict__, "attention": attention}))
            apply = jax.jit(model.apply)
            out = np.asarray(apply(params, tokens, pts).logits)
            permuted = np.asarray(apply(params, tokens[:, perm], pts[:, perm]).logits)
            np.testing.assert_allclose(permuted, out[:, perm], atol=2e-5, err_msg=name)


@pytest.mark.parametrize("name", sorted(relative.RELATIVES))
def test_relative_geometry_through_the_encoder(name):
    # without an absolute position the model sees displacements only: translation invariant
    cfg = tiny(position="none", relative=name)
    logits, grads, params = through_the_encoder(cfg)
    assert logits.shape == (B, L, K) and np.all(np.isfinite(logits)), name
    check_own_parameters_learn(name, grads)
    tokens, pts = inputs()
    moved = np.asarray(
        jax.jit(Encoder(cfg).apply)(params, tokens, pts + jnp.array([37.5, -11.25])).logits
    )
    np.testing.assert_allclose(moved, logits, atol=2e-4, err_msg=name)


@pytest.mark.parametrize("name", [family_param(n) for n in sorted(scenes.SCENES)])
def test_scene_family_says_what_it_is_in_one_line_that_scenes_help_shows_whole(name):
    from experiments import cli
    from rectbert.recipes import sparse

    lines = (scenes.SCENES[name].__doc__ or "").strip().splitlines()
    assert lines and lines[0].endswith("."), f"{name}: a docstring opening with one sentence"
    assert len(lines) == 1 or not lines[1].strip(), f"{name}: its summary is one line"
    assert f"{name}: {lines[0]}" in cli.define(sparse)["scene"].help


# ------------------------------------------------------------------------- joint samplers
@pytest.mark.parametrize("name", sorted(sampler.SAMPLERS))
def test_every_joint_sampler_keeps_the_visible_and_the_exact_ones_draw_the_joint(name):
    """The registry's contract, entry by entry: one set of draws per key, what is visible
    kept, as many model calls as the entry says, and an entry that says it is exact draws
    the enumerated joint (and its conditional given x0 = 1) from the exact conditionals."""
    entry, n = sampler.SAMPLERS[name], 20000
    cfg = sampler.SampleConfig(order=name)
    key = jax.random.key(3)
    joint = np.asarray(sampler.sample(PREDICT, None, hidden_batch(n), key, cfg))
    assert joint.shape == (n, 3) and set(np.unique(joint)) <= {0, 1}, name
    np.testing.assert_array_equal(sampler.sample(PREDICT, None, hidden_batch(n), key, cfg), joint)
    other = sampler.sample(PREDICT, None, hidden_batch(n), jax.random.key(4), cfg)
    assert not np.array_equal(np.asarray(other), joint), name
    given = np.asarray(sampler.sample(PREDICT, None, hidden_batch(n, visible=1), key, cfg))
    assert np.all(given[:, 0] == 1), name
    predict, seen = counted(exact_conditionals)
    small = Batch(
        jnp.asarray(np.random.default_rng(0).uniform(0, 256, (2, 3, 2))),
        jnp.zeros((2, 3), jnp.int32),
        jnp.asarray([[True] * 3, [False, True, True]]),
    )
    counted_cfg = dataclasses.replace(cfg, remask=0.5, rounds=2)  # a round: ceil(1.5) = 2
    jax.block_until_ready(sampler.sample(predict, None, small, key, counted_cfg))
    jax.effects_barrier()
    most = sampler.calls(counted_cfg, 3)
    assert len(seen) <= most if entry.adaptive else len(seen) == most, (name, len(seen))
    if entry.exact:
        assert 0.5 * np.abs(empirical(joint) - JOINT).sum() < 0.015, name
        cond = JOINT * (CONFIGS[:, 0] == 1)
        assert 0.5 * np.abs(empirical(given) - cond / cond.sum()).sum() < 0.015, name
