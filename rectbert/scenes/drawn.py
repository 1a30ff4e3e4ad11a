"""What the line-drawing scenes (glyph, kanji, icon) share: a set of drawings, each an exact
polygon built once (rectbert/geometry/drawings.py), placed by a random similarity transform;
the drawings held out of training (by name, or a stable hash of the name: unseen_fraction);
and one drawing of a set, the oracle's mixture component. Registers no family."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import config
from rectbert.geometry import drawings, polygons, shapes, sources
from rectbert.scenes import held_out
from rectbert.scenes.base import Scene, option, sampler
from rectbert.scenes.component import One, chains
from rectbert.scenes.exact import boundary_coverage, compiled

# The thinnest stroke, in ems. The library keeps float32 em-unit vertices and the scene places
# them in float32 canvas pixels (~1.5e-5 px apart near 256), so a stroke w ems wide at size s
# px is off in area by about 1e-5 / (w s) of it. Measured on futural's capitals placed near
# (250, 250): at 1e-4 em the placed polygon's area is within 0.03 % of the exact one at 224 px
# and 1.3 % at 8 px; at 1e-5 em, 0.3 % and 8 %; from 1e-6 em its rings cross themselves, and
# from about 1e-16 em there is no polygon left (drawings.outline refuses).
MIN_STROKE_WEIGHT = 1e-4
# The oracle screens every drawing of a set as a mixture component (components()): the 26
# futural capitals take about 3-4 s an example on a 2-core CPU, the 30 kanji 20-30 s, and the
# screening alone grows with the set, so a set of more drawings than this is refused for the
# oracle (oracle_unsupported), in one line
ORACLE_MAX_DRAWINGS = 128


def names(text: str) -> tuple[str, ...]:
    """The characters of `text` in order, each once, white space left out."""
    return tuple(dict.fromkeys(c for c in text if not c.isspace()))


@dataclasses.dataclass(frozen=True)
class Drawn(Scene):
    """What `glyph` and `kanji` share: a set of drawings (`_drawings()`: a drawings.Library of
    the distinct ones), each placed by (drawing index, size, angle, x, y).

    The drawing's polygon lives in em units centred on its box; the image is
    (x, y) + size x R(angle) v for each vertex v (size: the em's side in canvas pixels). The
    index is uniform over the set, the size on glyph_size, the angle on rotation (degrees
    in the option, radians in the parameters), and (x, y) uniform over the places where the
    whole placed polygon lies inside the canvas (exact, from its vertices)."""

    param_dim: ClassVar[int] = 5
    set_field: ClassVar[str]  # the option naming the set (for errors)
    _group_field: ClassVar[str] = "unseen_fraction"  # the option naming a family's groups
    glyph_size: tuple[float, float] | None = option(
        (128.0, 224.0), "Em side range 'lo,hi', canvas pixels.", kind="range"
    )
    rotation: tuple[float, float] | None = option(
        (0.0, 0.0), "Rotation range 'lo,hi', degrees (0,0: upright).", kind="range"
    )
    stroke_weight: float = option(
        0.08, "Stroke width, a fraction of the em (of the size), in [0.0001, 0.25]."
    )
    unseen_fraction: float = option(
        0.0,
        "Fraction of the set held out of training, evaluated as unseen: the drawings whose "
        "name's SHA-256 number is under it (0: none).",
    )
    size: int = shapes.CANVAS
    # which drawings of the set this scene draws: "train" (all but those held out) or
    # "unseen" (those held out: unseen()); not an option, and not recorded (record())
    part: str = "train"

    # --------------------------------------------------------------- what a family says
    def _drawings(self) -> drawings.Library:
        """The whole set's distinct drawings (drawings.library), those held out included."""
        raise NotImplementedError

    def _held_out(self) -> Drawn | None:
        """The family over the drawings held out of training by name (unseen()), or None."""
        raise NotImplementedError

    def _held_rows(self, lib: drawings.Library) -> np.ndarray:
        """[G] which of the set's drawings are held out as a group (icon: its categories);
        none by default. Those under unseen_fraction are held out as well (held())."""
        return np.zeros(len(lib.names), bool)

    def _grouped(self) -> bool:  # whether _held_rows holds out anything (its option is set)
        return False

    def _named(self) -> bool:  # whether drawings are held out by name (_held_out)
        return False

    # --------------------------------------------------------------- derived
    @functools.cached_property
    def library(self) -> drawings.Library:
        whole = self._drawings()
        if not self._split():
            return whole
        held = self.held(whole)
        return drawings.subset(whole, held if self.part == "unseen" else ~held)

    def _split(self) -> bool:
        return self.unseen_fraction > 0 or self._grouped()

    def held(self, whole: drawings.Library) -> np.ndarray:
        """[G] which drawings of the whole set are held out of training (held_out.rows)."""
        return held_out.rows(self, whole)

    def record(self) -> dict:
        rec = super().record()
        rec.pop("part")  # a recorded scene is its training part
        return rec

    @property
    def count(self) -> int:
        return len(self.library.names)

    # (shape, point) pairs a coverage call: its work memory is a chunk's of segments at a time
    # (exact.boundary_coverage with counts), not the set's largest drawing's
    chunk_pairs: ClassVar[int] = 2**16
    oracle_blocks: ClassVar[int] = 16  # the slice moves' blocks (Scene's): outlines are dear

    def _angles(self):
        lo, hi = self.rotation
        return math.radians(lo), math.radians(hi)

    def _check_common(self, extra_checks) -> None:
        s, r = self.glyph_size, self.rotation
        config.validate(
            self,
            [
                (
                    s is not None and len(s) == 2 and 0 < s[0] < s[1] <= self.size,
                    "glyph_size",
                    f"two numbers 'lo,hi' with 0 < lo < hi <= {self.size}",
                ),
                (
                    r is not None and len(r) == 2 and -180 <= r[0] <= r[1] <= 180,
                    "rotation",
                    "two angles in degrees 'lo,hi' with -180 <= lo <= hi <= 180",
                ),
                (
                    MIN_STROKE_WEIGHT <= self.stroke_weight <= 0.25,
                    "stroke_weight",
                    f"in [{MIN_STROKE_WEIGHT:g}, 0.25] (of the em; thinner, the polygon placed "
                    "in float32 canvas pixels is no longer the drawing's)",
                ),
                (
                    0.0 <= self.unseen_fraction < 1.0,
                    "unseen_fraction",
                    "a fraction in [0, 1) (0: nothing held out)",
                ),
                (self.part in ("train", "unseen"), "part", "'train' or 'unseen'"),
                (
                    not (self._split() and self._named()),
                    "unseen_fraction" if self.unseen_fraction > 0 else self._group_field,
                    "0 or empty while drawings are held out by name (one way of holding out at "
                    "a time)",
                ),
                *extra_checks,
            ],
        )
        try:
            lib = self._drawings()
        except sources.MissingError as e:  # not installed, or no such drawing: one line
            raise config.error(self, self.set_field, f"drawings the libraries have ({e})") from None
        if self._split():
            held_out.check_split(self, lib)
        widest = self._widest(lib)
        if widest * s[1] > self.size:
            fit = math.floor(self.size / widest * 10) / 10  # shown rounded down: it fits
            raise config.error(
                self,
                "glyph_size",
                f"at most {fit:.1f} here (the widest drawing at that size and angle must fit the "
                f"{self.size}-pixel canvas)",
            )

    def _check_held_out(self, field: str) -> None:
        held_out.check_named(self, field)  # the held-out set by name: made now, and disjoint

    def _widest(self, lib) -> float:
        """The largest width or height of any drawing at any allowed angle, in ems (an angle
        grid, with the radius x the grid step as margin between its points)."""
        lo, hi = self._angles()
        n = 1 if lo == hi else 721
        theta = np.linspace(lo, hi, n)
        c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        v = lib.vertices.astype(np.float64)[None]  # [1, G, V, 2]
        x, y = c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]
        span = np.maximum(x.max(-1) - x.min(-1), y.max(-1) - y.min(-1))  # [n, G]
        margin = 0.0 if n == 1 else 2 * float(lib.radius.max()) * (hi - lo) / (n - 1)
        return float(span.max()) + margin

    # --------------------------------------------------------------- placement
    def _extent(self, index_N, size_N, angle_N):
        """([N, 2] lowest, [N, 2] highest offset of the placed polygon from (x, y))."""
        v = jnp.asarray(self.library.vertices)[index_N]  # [N, V, 2]
        c, s = jnp.cos(angle_N)[:, None], jnp.sin(angle_N)[:, None]
        x = c * v[..., 0] - s * v[..., 1]
        y = s * v[..., 0] + c * v[..., 1]
        lo = jnp.stack([x.min(-1), y.min(-1)], -1) * size_N[:, None]
        hi = jnp.stack([x.max(-1), y.max(-1)], -1) * size_N[:, None]
        return lo, hi

    def _index(self, params_NxD):
        return jnp.clip(jnp.round(params_NxD[:, 0]), 0, self.count - 1).astype(jnp.int32)

    def placed(self, params_NxD):
        """The placed polygon's boundary: ([N, S, 2] starts, [N, S, 2] ends, [N, S] weights),
        each row's own segments first (placed_counts)."""
        lib, idx = self.library, self._index(jnp.asarray(params_NxD, jnp.float32))
        moved = self._moved(params_NxD, lib.a), self._moved(params_NxD, lib.b)
        return *moved, jnp.asarray(lib.weight)[idx]

    def _moved(self, params_NxD, v_GxSx2):
        """[N, S, 2] each row's drawing's em-unit points v (one row of v per drawing) placed on
        the canvas (size, angle, x, y), as placed() moves the polygon."""
        p = jnp.asarray(params_NxD, jnp.float32)
        v = jnp.asarray(v_GxSx2)[self._index(p)] * p[:, 1, None, None]
        c, s = jnp.cos(p[:, 2, None]), jnp.sin(p[:, 2, None])
        x = c * v[..., 0] - s * v[..., 1]
        y = s * v[..., 0] + c * v[..., 1]
        return jnp.stack([x, y], -1) + p[:, None, 3:5]

    def boundary(self, params_NxD):
        return self.placed(params_NxD)

    def corners(self, params_NxD):
        """The polygon's corners (Library.corners: where its boundary turns by more than 60
        degrees; a round pen's arcs have none), NaN for padding."""
        return self._moved(params_NxD, self.library.corners())

    def centrelines(self, params_NxD):
        """The centrelines the polygon was drawn around (Library.lines), as segments."""
        lib = self.library
        w = jnp.arange(lib.c_a.shape[1])[None] < jnp.asarray(lib.line_counts)[:, None]
        idx = self._index(jnp.asarray(params_NxD, jnp.float32))
        return self._moved(params_NxD, lib.c_a), self._moved(params_NxD, lib.c_b), w[idx] * 1.0

    def junction_points(self, params_NxD, corner_angle: float):
        """The drawing's junctions (Library.junctions, found once per set and angle)."""
        table, counts = self.library.junctions(float(corner_angle))
        idx = self._index(jnp.asarray(params_NxD, jnp.float32))
        valid = jnp.arange(table.shape[1])[None] < jnp.asarray(counts)[idx][:, None]
        return self._moved(params_NxD, table), valid

    def placed_counts(self, params_NxD):
        """[N] each placed drawing's own boundary segments (the first of placed()'s rows): what
        its coverage costs (exact.boundary_coverage), not the set's largest drawing's."""
        return jnp.asarray(self.library.counts)[self._index(jnp.asarray(params_NxD, jnp.float32))]

    def _coverage(self, params_NxD, points_NxPx2, cell, grid):
        placed, lib = self.placed(params_NxD), self.library
        points_NxPx2 = jnp.asarray(points_NxPx2, jnp.float32)  # a list, too
        n, p, s = *points_NxPx2.shape[:2], lib.a.shape[1]
        # one chunk holds any drawing: no saving; a small batch of a set padded to at most
        # twice its mean drawing: every segment, padding and all, is faster (DENSE_WORK)
        small = n * p * s * grid * (grid + 1) <= polygons.DENSE_WORK
        if s <= polygons.CHUNK or (small and s <= 2 * float(np.mean(lib.counts))):
            return boundary_coverage(*placed, points_NxPx2, cell, grid)
        counts = self.placed_counts(params_NxD)
        return boundary_coverage(*placed, points_NxPx2, cell, grid, counts_N=counts)

    @sampler
    def sample(self, key, n: int):
        return self._sample(key, n, None)

    def _sample(self, key, n: int, index: int | None):
        ki, ks, ka, kx = jax.random.split(key, 4)
        if index is None:
            idx = jax.random.randint(ki, (n,), 0, self.count)
        else:
            idx = jnp.full((n,), index, jnp.int32)
        size = jax.random.uniform(ks, (n,), minval=self.glyph_size[0], maxval=self.glyph_size[1])
        a_lo, a_hi = self._angles()
        angle = jax.random.uniform(ka, (n,), minval=a_lo, maxval=a_hi)
        lo, hi = self._extent(idx, size, angle)
        u = jax.random.uniform(kx, (n, 2))
        xy = -lo + (self.size - hi + lo) * u
        return jnp.concatenate(
            [idx[:, None].astype(jnp.float32), size[:, None], angle[:, None], xy], -1
        )

    @compiled
    def coverage(self, params_NxD, points_NxPx2, *, cell=shapes.CELL, grid=shapes.GRID):
        return self._coverage(params_NxD, points_NxPx2, cell, grid)

    def log_density(self, params_NxD):
        p = jnp.asarray(params_NxD, jnp.float32)
        idx, size, angle, xy = p[:, 0], p[:, 1], p[:, 2], p[:, 3:5]
        s_lo, s_hi = self.glyph_size
        a_lo, a_hi = (np.float32(a) for a in self._angles())
        ok = (idx == jnp.round(idx)) & (idx >= 0) & (idx <= self.count - 1)
        ok &= (size >= s_lo) & (size <= s_hi) & (angle >= a_lo) & (angle <= a_hi)
        lo, hi = self._extent(self._index(p), size, angle)
        room = self.size - hi + lo  # [N, 2]: the span of places for (x, y)
        ok &= jnp.all((xy >= -lo) & (xy <= self.size - hi), -1)
        log_p = -math.log(self.count) - math.log(s_hi - s_lo)
        if a_hi > a_lo:  # a fixed angle is a point mass: no density term
            log_p -= math.log(float(a_hi) - float(a_lo))
        log_p = log_p - jnp.sum(jnp.log(jnp.maximum(room, 1e-12)), -1)
        return jnp.where(ok, log_p, -jnp.inf)

    def support(self) -> np.ndarray:
        a_lo, a_hi = self._angles()
        edge = [0.0, float(self.size)]
        rows = [[0.0, self.count - 1.0], list(self.glyph_size), [a_lo, a_hi], edge, edge]
        return np.array(rows, np.float32)

    def outside(self, params_NxD: np.ndarray) -> str | None:
        """Outside the box support(), or a drawing index that is not a whole number (coverage
        would round it where log_density is -inf)."""
        why = super().outside(params_NxD)
        if why:
            return why
        index = params_NxD[:, 0].astype(np.float32)  # as coverage and log_density read it
        bad = np.flatnonzero(index != np.round(index))
        if not bad.size:
            return None
        r = bad[0]
        return (
            f"column 0, the drawing index, a whole number in [0, {self.count - 1}]; row {r} has "
            f"{params_NxD[r, 0]:g}"
        )

    def hard_bounds(self, points_Px2, hit_P):
        """The support, with (x, y) within radius x the largest size + half the window of
        every point whose window the shape meets."""
        box = jnp.asarray(self.support(), jnp.float32)
        reach = (
            float(self.library.radius.max()) * self.glyph_size[1] + shapes.GRID * shapes.CELL / 2
        )
        pts = jnp.asarray(points_Px2, jnp.float32)
        hit = jnp.asarray(hit_P)[:, None]
        lo = jnp.max(jnp.where(hit, pts - reach, -jnp.inf), 0)
        hi = jnp.min(jnp.where(hit, pts + reach, jnp.inf), 0)
        xy = jnp.stack([jnp.maximum(box[3:, 0], lo), jnp.minimum(box[3:, 1], hi)], -1)
        xy = jnp.stack([jnp.minimum(xy[:, 0], xy[:, 1]), xy[:, 1]], -1)
        return box.at[3:].set(xy)

    # --------------------------------------------------------------- mixture
    def components(self):
        """One component per drawing: the transform's posterior given that drawing (size,
        angle where it varies, x, y), each of prior probability 1 / count."""
        log_p = -math.log(self.count)
        return tuple((log_p, One(self, m)) for m in range(self.count))

    def component_batch(self):
        return np.full(self.count, -math.log(self.count)), functools.partial(One, self)

    def component_of(self, params_NxD):
        return self._index(jnp.asarray(params_NxD, jnp.float32))

    def lift(self, m: int, params_NxDm):
        p = jnp.asarray(params_NxDm, jnp.float32)
        n = p.shape[0]
        idx = jnp.full((n, 1), m, jnp.float32)  # m an int, or traced (component_batch)
        if p.shape[1] == 3:  # the angle fixed: its one value
            angle = jnp.full((n, 1), float(np.float32(self._angles()[0])), jnp.float32)
            return jnp.concatenate([idx, p[:, :1], angle, p[:, 1:]], -1)
        return jnp.concatenate([idx, p], -1)

    def oracle_unsupported(self) -> str | None:
        if self.count <= ORACLE_MAX_DRAWINGS:
            return None
        return (
            f"a set of {self.count} drawings: it screens each drawing as a mixture component "
            "(the 30 default kanji take 20-30 s an example on a 2-core CPU, and the cost grows "
            f"with the set), at most {ORACLE_MAX_DRAWINGS}"
        )

    def unseen(self) -> Scene | None:
        if self.part == "unseen":
            return None
        if self._split():
            return dataclasses.replace(self, part="unseen")
        return self._held_out()

    # --------------------------------------------------------------- figures
    def outlines(self, params_D) -> list[np.ndarray]:
        a, b, w = (np.asarray(x[0], np.float64) for x in self.placed(jnp.asarray(params_D)[None]))
        return chains(a[w > 0], b[w > 0])

    def name_of(self, params_D) -> str:
        return self.library.names[int(round(float(np.asarray(params_D)[0])))]
