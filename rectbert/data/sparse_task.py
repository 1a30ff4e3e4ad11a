"""The sparse task: `num_points` points per shape at continuous coordinates, each token the
codebook's for the exact patch there; where the points fall is a point sampler's (points.py),
the hidden ones' another's (--query_points) or inside a hidden box (--occlude)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from rectbert import config
from rectbert.config import setting
from rectbert.data import keys, masking, points
from rectbert.data.scene_tasks import SceneTask
from rectbert.data.tasks import (
    BUDGET,
    MAX_LEN,
    Batch,
    MaskSpec,
    constant,
    fixed,
    masked,
    size_checks,
    stream_indices,
)
from rectbert.geometry import lines, shapes


def nearest_visible_tokens(batch: Batch):
    """[B, L] for each position, the token of the nearest visible point (a baseline)."""
    d_BxLxL = jnp.sum((batch.points[:, :, None] - batch.points[:, None, :]) ** 2, axis=-1)
    d_BxLxL = jnp.where(batch.mask[:, None, :], jnp.inf, d_BxLxL)
    nearest_BxL = jnp.argmin(d_BxLxL, axis=-1)
    return jnp.take_along_axis(batch.tokens, nearest_BxL, axis=1)


BOX_KEY = 0x0B0C5  # folded into an example's key for its hidden box (hidden_boxes)


@dataclasses.dataclass(frozen=True, eq=False)
class SparseTask(SceneTask):
    """`num_points` points per shape at continuous coordinates; each token exact from the shape.

    With a fixed training set the points are redrawn every step, or with `fixed_points`
    drawn once per shape (the write-up's regime, where the model memorises).

    `extra_targets`: each training example also carries this many more points of its shape,
    all hidden. With context attention (required) a hidden point's prediction depends only on
    the visible points and itself, so these are further draws of the very conditional the
    task evaluates — more supervised tokens per forward pass, the evaluation unchanged
    (Transformer Neural Processes train on many targets per context the same way).
    """

    num_points: int = setting(24, "Points per shape.")
    sampler: str = setting(
        "uniform", "Where points fall.", flag="point_sampler", choices=points.SAMPLERS
    )
    fixed_points: bool = setting(False, "Fixed set: draw each shape's points only once.")
    extra_targets: int = setting(
        0,
        "More hidden points per training example, targets only (context attention): more "
        "supervision per step, the evaluated task unchanged.",
    )
    query_sampler: str = setting(
        "",
        "Where the hidden points fall, when not where the visible do ('': the same sampler).",
        flag="query_points",
    )
    occlude: str = setting(
        "",
        "A hidden box per example: 'x0,y0,x1,y1' or 'random:<min>,<max>' (its sides), canvas "
        "pixels; the visible points uniform outside it, the hidden uniform inside ('': none).",
    )
    corner_angle: float = setting(
        lines.CORNER_ANGLE,
        "junctions: a centreline vertex whose two segments meet at under this many degrees "
        "is a corner.",
    )
    junction_jitter: float = setting(
        1.0, "junctions: each point moved uniformly within this radius, canvas pixels."
    )
    junction_fallback: str = setting(
        "strokes",
        "junctions: the sampler of the points a drawing has no junction left for.",
        choices=points.SAMPLERS,
    )
    name: ClassVar[str] = "sparse"
    lattice: ClassVar[bool] = False
    seq_len = property(lambda self: self.num_points)

    def __post_init__(self):
        room = f"at most {MAX_LEN} points per example, whose [L, L] attention scores {BUDGET}"
        config.validate(
            self,
            [
                (
                    2 <= self.num_points <= MAX_LEN,
                    "num_points",
                    f"an integer in [2, {MAX_LEN}] ({room})",
                ),
                (
                    lambda: points.SAMPLERS[self.sampler].supports(self.scene),
                    "sampler",
                    f"one the {self.scene.name} scene supports: "
                    f"{[n for n, s in points.SAMPLERS.items() if s.supports(self.scene)]}",
                ),
                *self._where_checks(),
                (
                    not self.fixed_points or self.num_train > 0,
                    "fixed_points",
                    "false with fresh shapes (num_train=0): there is no set to fix points of",
                ),
                (
                    0 <= self.extra_targets <= MAX_LEN - self.num_points,
                    "extra_targets",
                    f"an integer in [0, {MAX_LEN - self.num_points}] (with num_points: {room})",
                ),
                (
                    not (self.extra_targets and self.fixed_points),
                    "extra_targets",
                    "0 with fixed_points (new points each step would unfix them)",
                ),
            ],
        )
        super().__post_init__()

    def _where_checks(self) -> list:
        """The checks of where the points fall: the samplers the scene serves, the box."""
        served = [n for n, s in points.SAMPLERS.items() if s.supports(self.scene)]
        uses_junctions = "junctions" in (self.sampler, self.query_sampler)
        try:
            box = points.parse_box(self.occlude)
            box_error = ""
        except ValueError as e:
            box, box_error = None, str(e)
        return [
            (
                self.query_sampler == "" or self.query_sampler in served,
                "query_sampler",
                f"'' (the points' own) or one the {self.scene.name} scene supports: {served}",
            ),
            (not box_error, "occlude", box_error or "-"),
            (
                box is None
                or (self.sampler == "uniform" and self.query_sampler in ("", "uniform")),
                "occlude",
                "'' with a point or query sampler other than uniform (the box says where the "
                "points fall: uniform outside it, and inside it)",
            ),
            (0 < self.corner_angle <= 180, "corner_angle", "degrees in (0, 180]"),
            (
                0 <= self.junction_jitter <= shapes.CELL * shapes.GRID / 2,
                "junction_jitter",
                f"pixels in [0, {shapes.CELL * shapes.GRID // 2}] (half a window)",
            ),
            (
                not uses_junctions
                or (self.junction_fallback != "junctions" and self.junction_fallback in served),
                "junction_fallback",
                f"a sampler the {self.scene.name} scene supports other than junctions: "
                f"{[n for n in served if n != 'junctions']}",
            ),
            (
                not (self.fixed_points and self.split_points),
                "fixed_points",
                "false with --query_points or --occlude (new masks each step would mix the "
                "fixed points' roles)",
            ),
        ]

    @property
    def split_points(self) -> bool:
        """Whether the hidden points fall elsewhere than the visible (query sampler, box)."""
        query = self.query_sampler not in ("", self.sampler)
        return query or bool(self.occlude.strip())

    @property
    def point_options(self) -> points.Options:
        return points.Options(self.corner_angle, self.junction_jitter, self.junction_fallback)

    def check(self, model_cfg, train_cfg) -> None:
        if self.extra_targets and model_cfg.attention != "context":
            allowed = "context with extra targets (full attention would show them to the model)"
            raise config.error(model_cfg, "attention", allowed)
        said = " (num_points + extra_targets)" if self.extra_targets else ""
        size_checks(model_cfg, train_cfg, self.num_points + self.extra_targets, said)

    def examples(self, key, params_NxD, spec: MaskSpec | None = None) -> Batch:
        """Points, exact patch values, tokens and a mask for each shape (the mask first: where
        a point falls may depend on whether it is hidden)."""
        spec = spec or self.mask
        k_points, k_mask = jax.random.split(key)
        n = jnp.shape(params_NxD)[0]
        hidden = masking.sample_mask(
            k_mask, n, self.num_points, count=spec.count, schedule=spec.schedule
        )
        pts, values = self._points(k_points, params_NxD, hidden, self.hidden_boxes(key, n))
        return Batch(pts, self.tokens_of(values), hidden, values, params_NxD)

    def _points(self, key, params_NxD, hidden_NxP, boxes_Nx4=None):
        """([N, P, 2] points of each shape, [N, P, G] their exact values): from the sampler,
        or the hidden ones (hidden_NxP) from the query sampler, or inside each example's box
        (boxes_Nx4, with --occlude) and the visible outside it."""
        n, p = hidden_NxP.shape
        opts = self.point_options
        if not self.split_points:
            pts = points.sample(self.sampler, key, self.scene, params_NxD, p, opts)
        else:
            k_seen, k_asked = jax.random.split(key)
            if boxes_Nx4 is not None:
                seen = points.outside(k_seen, boxes_Nx4, p)
                asked = points.inside(k_asked, boxes_Nx4, p)
            else:
                seen = points.sample(self.sampler, k_seen, self.scene, params_NxD, p, opts)
                asked = points.sample(self.query_sampler, k_asked, self.scene, params_NxD, p, opts)
            pts = jnp.where(hidden_NxP[..., None], asked, seen)
        return pts, self.scene.coverage(params_NxD, pts)

    def hidden_boxes(self, key, n: int):
        """[n, 4] the boxes examples(key, ...) of n shapes hides (--occlude; from the key
        alone, never the shapes), or None."""
        box = points.parse_box(self.occlude)
        if box is None:
            return None
        return points.boxes(jax.random.fold_in(key, BOX_KEY), box, n)

    @constant
    def _fixed_examples(self):
        if not self.fixed_points:
            return None
        return self.examples(keys.key(self.seed, "fixed_points"), self.train_params)

    @constant
    def majority_token(self):
        """The most common token of the training distribution (a baseline), an int32 scalar: of
        its hidden points where they fall elsewhere than the visible."""
        k_shapes, k_examples = jax.random.split(keys.key(self.seed, "baseline"))
        params = self.train_params
        if params is None:
            params = self.scene.sample(k_shapes, 2048)
        ex = self.examples(k_examples, params)
        # where the hidden points fall elsewhere, theirs (the baseline is scored on them)
        weight = ex.mask if self.split_points else jnp.ones_like(ex.mask)
        counts = jnp.bincount(
            ex.tokens.ravel(), weight.ravel().astype(jnp.int32), length=self.num_tokens
        )
        return jnp.argmax(counts)

    def _fixed_batch(self, key, idx_B, spec) -> Batch:
        ex = self._fixed_examples
        return masked(
            key, ex.points[idx_B], ex.tokens[idx_B], spec, ex.values[idx_B], ex.scenes[idx_B]
        )

    def train_batch(self, step, batch: int) -> Batch:
        k_data, k_points = jax.random.split(keys.key(self.seed, "data"))
        k_step = jax.random.fold_in(k_points, step)
        if self.fixed_points:
            idx = stream_indices(k_data, step, batch, self.num_train, self.presentations)
            return self._fixed_batch(k_step, idx, self.mask)
        params = self.shapes_at(k_data, step, batch)
        out = self.examples(k_step, params)
        if not self.extra_targets:
            return out
        k_extra = jax.random.fold_in(keys.key(self.seed, "extra_targets"), step)  # moves no
        every = jnp.ones((batch, self.extra_targets), bool)  # all hidden: where queries fall
        box = self.hidden_boxes(k_step, batch)  # the example's own box
        pts, values = self._points(k_extra, params, every, box)  # other draw
        return Batch(
            jnp.concatenate([out.points, pts], 1),
            jnp.concatenate([out.tokens, self.tokens_of(values)], 1),
            jnp.concatenate([out.mask, jnp.ones(pts.shape[:2], bool)], 1),
            jnp.concatenate([out.values, values], 1),
            params,
        )

    def eval_set(self) -> Batch:
        return self.eval_batch(self._eval_key(), self.eval_params)

    def _eval_key(self):
        return jax.random.fold_in(keys.key(self.seed, "held_out"), 1)

    def eval_boxes(self):
        """[eval_examples, 4] the boxes the held-out set hides (--occlude), or None."""
        return self.hidden_boxes(self._eval_key(), self.eval_examples)

    def eval_batch(self, key, params_NxD) -> Batch:
        """These shapes as evaluation examples (new points; the fixed mask's count)."""
        return self.examples(key, params_NxD, fixed(self.mask))

    def train_eval_set(self, batch: int) -> Batch:
        """Shapes the model trained on (those of the first steps), with new points (with
        fixed_points: the very examples trained on, with new masks)."""
        k = jax.random.fold_in(keys.key(self.seed, "held_out"), 2)
        if self.fixed_points:
            idx = jnp.arange(self.eval_examples) % self.num_train
            return self._fixed_batch(k, idx, fixed(self.mask))
        k_data, _ = jax.random.split(keys.key(self.seed, "data"))
        steps = -(-self.eval_examples // batch)
        params = jnp.concatenate([self.shapes_at(k_data, s, batch) for s in range(steps)])
        return self.examples(k, params[: self.eval_examples], fixed(self.mask))

    def eval_extra(self, pred_NxL, batch: Batch) -> dict:
        """The two baselines on the same held-out examples, and per-token accuracy."""
        mask = batch.mask
        right = pred_NxL == batch.tokens
        nearest = nearest_visible_tokens(batch)
        out = {
            "eval/majority_accuracy": masking.masked_mean(
                batch.tokens == self.majority_token, mask
            ),
            "eval/nearest_accuracy": masking.masked_mean(nearest == batch.tokens, mask),
        }
        for k in range(self.num_tokens):
            sel = mask & (batch.tokens == k)
            out[f"eval/token_accuracy/{k:02d}"] = jnp.sum(right & sel) / jnp.maximum(sel.sum(), 1)
        return out
