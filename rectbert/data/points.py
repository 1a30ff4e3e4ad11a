"""Where a sparse example's points fall: a registry of samplers, name -> function; and the
occlusion box, which splits the canvas into where points are seen and where they are asked.

Every sampler is fn(key, scene, params_NxD, p, options) -> points_NxPx2 inside
shapes.point_bounds() (where a point's window lies on the canvas), jit-able, the same points
for the same key. `needs` names the Scene methods it calls: a scene serves it where its family
implements them all (the tasks refuse the others, naming those it serves). Adding one: a
function here and its @register; the registry's contract test covers it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rectbert import scenes
from rectbert.geometry import lines, shapes

# Rejection samplers (near, nocorners, outside the occlusion box) redraw the refused points
# until none is left, at most this many rounds: an accepted share of 1 % leaves a point
# refused with probability 0.99^1000 = 4e-5 (it is then kept where it is)
MAX_ROUNDS = 1000
NEAR_DRAWS = 2  # near: candidates drawn at once per point (most are kept: near()'s box)


@dataclasses.dataclass(frozen=True)
class Options:
    """What the shape-aware samplers take besides the shape (the sparse task's settings)."""

    corner_angle: float = lines.CORNER_ANGLE  # junctions: a vertex turning sharper is one
    jitter: float = 1.0  # junctions: each moved uniformly within this radius, canvas pixels
    fallback: str = "strokes"  # junctions: where the points a drawing has no junction for go


@dataclasses.dataclass(frozen=True)
class Sampler:
    fn: Callable
    help: str
    uniform: bool  # independent of the shape: what the oracle's likelihood assumes
    needs: tuple[str, ...] = ()  # the Scene methods it calls (a scene must implement them)

    def supports(self, scene) -> bool:
        return all(scenes.implements(scene, method) for method in self.needs)


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, help: str, *, uniform: bool = False, needs: tuple[str, ...] = ()):
    def add(fn):
        SAMPLERS[name] = Sampler(fn, help, uniform, needs)
        return fn

    return add


def get(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"point sampler must be one of {sorted(SAMPLERS)}; got {name!r}")
    return SAMPLERS[name]


def sample(name: str, key, scene, params_NxD, p: int, options: Options = Options()):
    """[N, p, 2] points for each shape, by the sampler `name`."""
    return get(name).fn(key, scene, params_NxD, p, options)


def _redrawn(key, draw, refused, shape, start=None):
    """Exact rejection: points from draw(key) [shape], those refused(points) [N, P] redrawn
    until none is, at most MAX_ROUNDS rounds; `start`: (points, refused) to begin from."""

    def body(state):
        key, pts, bad, rounds = state
        key, sub = jax.random.split(key)
        pts = jnp.where(bad[..., None], draw(sub), pts)
        return key, pts, refused(pts), rounds + 1

    pts, bad = start if start is not None else (jnp.zeros(shape), jnp.ones(shape[:2], bool))
    init = (key, pts, bad, 0)
    return jax.lax.while_loop(lambda s: jnp.any(s[2]) & (s[3] < MAX_ROUNDS), body, init)[1]


def _first_kept(key, draw, refused, shape, draws: int):
    """Exact rejection, batched: `draws` candidates per point drawn at once and the first
    shape[1] kept of each row taken, in draw order (each still uniform on what is kept); a
    row with fewer kept redraws its missing points (_redrawn). One large call instead of a
    round per refusal: the batch's test is paid about once, not once a round."""
    n, p = shape[:2]
    k_many, k_rest = jax.random.split(key)
    many = draw(k_many, (n, draws * p, 2))
    kept = ~refused(many)
    first = jnp.argsort(~kept, axis=-1, stable=True)[:, :p]
    pts = jnp.take_along_axis(many, first[..., None], 1)
    missing = ~jnp.take_along_axis(kept, first, 1)
    return _redrawn(k_rest, lambda k: draw(k, shape), refused, shape, (pts, missing))


def _in_region(key, shape):
    lo, hi = shapes.point_bounds()
    return jax.random.uniform(key, shape, minval=lo, maxval=hi)


@register("uniform", "uniform over the canvas region", uniform=True)
def uniform(key, scene, params_NxD, p: int, options=Options()):
    del scene, options
    return _in_region(key, (jnp.shape(params_NxD)[0], p, 2))


@register(
    "edges",
    "uniform along the shape's boundary (its part in the region; none there: uniform)",
    needs=("boundary",),
)
def edges(key, scene, params_NxD, p: int, options=Options()):
    del options
    return lines.along(key, *scene.boundary(params_NxD), p, *shapes.point_bounds())


@register(
    "strokes",
    "uniform along the strokes' centrelines (their part in the region; none there: uniform)",
    needs=("centrelines",),
)
def strokes(key, scene, params_NxD, p: int, options=Options()):
    del options
    return lines.along(key, *scene.centrelines(params_NxD), p, *shapes.point_bounds())


@register(
    "junctions",
    "at the drawing's junctions (ends, corners, meetings, crossings), each once, jittered; "
    "the rest from --junction_fallback",
    needs=("junction_points",),
)
def junctions(key, scene, params_NxD, p: int, options=Options()):
    """Each point one junction in the region, drawn without replacement, moved uniformly within
    `jitter` pixels (clipped to the region); where a drawing has fewer than p, the rest from
    the fallback sampler; the p points in random order."""
    if options.fallback == "junctions":
        raise ValueError("the junctions sampler's fallback must be another sampler")
    lo, hi = shapes.point_bounds()
    pts, valid = scene.junction_points(params_NxD, options.corner_angle)  # [N, J, 2], [N, J]
    valid &= jnp.all((pts >= lo) & (pts <= hi), -1)
    n, j = valid.shape
    k_pick, k_r, k_a, k_rest, k_order = jax.random.split(key, 5)
    order = jnp.argsort(jnp.where(valid, jax.random.uniform(k_pick, (n, j)), 2.0), -1)[:, :p]
    chosen = jnp.take_along_axis(pts, order[..., None], 1)
    ok = jnp.take_along_axis(valid, order, 1)
    if j < p:
        chosen = jnp.pad(chosen, ((0, 0), (0, p - j), (0, 0)))
        ok = jnp.pad(ok, ((0, 0), (0, p - j)))
    r = options.jitter * jnp.sqrt(jax.random.uniform(k_r, (n, p, 1)))
    a = jax.random.uniform(k_a, (n, p, 1), maxval=2 * jnp.pi)
    chosen = jnp.clip(chosen + r * jnp.concatenate([jnp.cos(a), jnp.sin(a)], -1), lo, hi)
    rest = sample(options.fallback, k_rest, scene, params_NxD, p, options)
    out = jnp.where(ok[..., None], chosen, rest)
    shuffle = jnp.argsort(jax.random.uniform(k_order, (n, p)), -1)
    return jnp.take_along_axis(out, shuffle[..., None], 1)


@register("near", "uniform among the places whose window touches the shape", needs=("boundary",))
def near(key, scene, params_NxD, p: int, options=Options()):
    """Exact rejection: a point is kept where the shape meets its window (lines.touches, from
    the shape's boundary: cheaper than its coverage, and exact where coverage has float32
    noise). Proposed uniformly in the region's part within half a window of the shape's box,
    which holds every kept place: a small drawing in a corner is found in a few draws."""
    del options
    n = jnp.shape(params_NxD)[0]
    a, b, w = scene.boundary(params_NxD)
    half = shapes.CELL * shapes.GRID / 2
    lo, hi = shapes.point_bounds()
    on = (jnp.asarray(w) > 0)[..., None]
    ends = jnp.concatenate([a, b], 1)
    both = jnp.concatenate([on, on], 1)
    box_lo = jnp.clip(jnp.min(jnp.where(both, ends, jnp.inf), 1) - half, lo, hi)  # [N, 2]
    box_hi = jnp.clip(jnp.max(jnp.where(both, ends, -jnp.inf), 1) + half, lo, hi)

    def draw(k, shape):
        u = jax.random.uniform(k, shape)
        return box_lo[:, None] + u * (box_hi - box_lo)[:, None]

    def refused(pts):
        return ~lines.touches(a, b, w, pts, half)

    return _first_kept(key, draw, refused, (n, p, 2), NEAR_DRAWS)


@register("nocorners", "uniform, but no shape corner in any point's window", needs=("corners",))
def nocorners(key, scene, params_NxD, p: int, options=Options()):
    """Exact rejection from uniform: a point is redrawn while a corner lies in its window."""
    del options
    corners = scene.corners(params_NxD)
    shape = (corners.shape[0], p, 2)
    return _redrawn(
        key,
        lambda k: _in_region(k, shape),
        lambda pts: shapes.window_has_corner(corners, pts),
        shape,
    )


# ----------------------------------------------------------------------------- occlusion
RANDOM = "random:"
MAX_HIDDEN = 0.75  # of the point region a box may cover: outside, a draw is kept 1 time in 4


def parse_box(text: str):
    """The --occlude setting: None (''), ('box', (x0, y0, x1, y1)) or ('random', (lo, hi));
    ValueError (one line, what is allowed) for anything else."""
    text = text.strip()
    if not text:
        return None
    lo, hi = shapes.point_bounds()
    span = hi - lo
    side = math.floor(math.sqrt(MAX_HIDDEN) * span * 10) / 10  # a square of MAX_HIDDEN
    allowed = (
        f"'x0,y0,x1,y1' inside the point region [{lo:g}, {hi:g}]^2 with x0 < x1, y0 < y1, "
        f"at most {MAX_HIDDEN:.0%} of it, or '{RANDOM}<min>,<max>' sides with "
        f"0 < min <= max <= {side:g} (the visible points need room outside the box)"
    )
    kind = "random" if text.startswith(RANDOM) else "box"
    try:
        numbers = tuple(float(v) for v in text.removeprefix(RANDOM).split(","))
    except ValueError:
        raise ValueError(allowed) from None
    if kind == "box":
        ok = len(numbers) == 4 and lo <= numbers[0] < numbers[2] <= hi
        ok = ok and lo <= numbers[1] < numbers[3] <= hi
        ok = ok and (numbers[2] - numbers[0]) * (numbers[3] - numbers[1]) <= MAX_HIDDEN * span**2
    else:
        ok = len(numbers) == 2 and 0 < numbers[0] <= numbers[1] <= side
    if not ok:
        raise ValueError(allowed)
    return kind, numbers


def boxes(key, spec, n: int):
    """[n, 4] (x0, y0, x1, y1) the hidden box of each example: the fixed one, or sides uniform
    on (min, max) each, placed uniformly in the point region (independent of the shape)."""
    kind, numbers = spec
    if kind == "box":
        return jnp.broadcast_to(jnp.asarray(numbers, jnp.float32), (n, 4))
    lo, hi = shapes.point_bounds()
    k_side, k_at = jax.random.split(key)
    side = jax.random.uniform(k_side, (n, 2), minval=numbers[0], maxval=numbers[1])
    start = lo + (hi - lo - side) * jax.random.uniform(k_at, (n, 2))
    return jnp.concatenate([start, start + side], -1)


def in_box(points_NxPx2, box_Nx4):
    """[N, P] whether each point lies in its example's box (half-open, as a window)."""
    b = box_Nx4[:, None]
    return jnp.all((points_NxPx2 >= b[..., :2]) & (points_NxPx2 < b[..., 2:]), -1)


def inside(key, box_Nx4, p: int):
    """[N, p, 2] uniform in each example's box."""
    u = jax.random.uniform(key, (box_Nx4.shape[0], p, 2))
    return box_Nx4[:, None, :2] + u * (box_Nx4[:, None, 2:] - box_Nx4[:, None, :2])


def outside(key, box_Nx4, p: int):
    """[N, p, 2] uniform over the point region outside each example's box (exact rejection)."""
    shape = (box_Nx4.shape[0], p, 2)
    return _redrawn(key, lambda k: _in_region(k, shape), lambda q: in_box(q, box_Nx4), shape)
