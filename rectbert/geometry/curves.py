"""The curves of SVG line drawings as polylines within a tolerance of them, end points exact:
Bézier curves in equal parameter steps (the chord error of a step h is at most h^2 / 8 x the
largest second derivative), elliptical arcs and circles in equal angle steps (the sagitta of a
step dθ is at most max(rx, ry) (1 - cos(dθ / 2))), every arc vertex on the ellipse. svg.py
reads documents and path data into these."""

from __future__ import annotations

import math

import numpy as np


def check_tolerance(tolerance: float):
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"flattening tolerance must be a positive number; got {tolerance!r}")


def bezier(p: np.ndarray, tolerance: float) -> np.ndarray:
    """A quadratic (3 control points) or cubic (4) Bézier as a polyline within `tolerance`
    of it, in equal parameter steps h: the chord error of a step is at most h^2 / 8 x
    max |B''|, and B'' is a convex combination of the control polygon's second differences
    (times 2 for a quadratic, 6 for a cubic), so their largest norm bounds it."""
    degree = len(p) - 1
    second = p[:-2] - 2 * p[1:-1] + p[2:]
    bend = degree * (degree - 1) * float(np.max(np.linalg.norm(second, axis=-1)))
    n = max(1, math.ceil(math.sqrt(bend / (8 * tolerance))))
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    s = 1 - t
    if degree == 2:
        curve = s**2 * p[0] + 2 * s * t * p[1] + t**2 * p[2]
    else:
        curve = s**3 * p[0] + 3 * s**2 * t * p[1] + 3 * s * t**2 * p[2] + t**3 * p[3]
    curve[0], curve[-1] = p[0], p[-1]
    return curve


def _steps(sweep: float, radius: float, tolerance: float) -> int:
    """The number of equal angle steps over `sweep` radians of an ellipse whose larger radius
    is `radius` that keeps every step's sagitta, at most radius (1 - cos(step / 2)) =
    2 radius sin^2(step / 4), within `tolerance` (an ellipse is a circle of that radius
    squeezed along one axis, which moves no point farther from its chord)."""
    if tolerance >= 2 * radius:
        return 1
    step = 4 * math.asin(math.sqrt(tolerance / (2 * radius)))
    return max(1, math.ceil(abs(sweep) / step))


def arc(p1, p2, rx, ry, rotation, large, sweep, tolerance) -> np.ndarray:
    """The SVG elliptical arc from p1 to p2 (distinct (x, y) pairs) as a polyline within
    `tolerance` of it, its vertices on the ellipse, by the endpoint-to-centre conversion of
    SVG 1.1 appendix F.6.5 and the radius correction of F.6.6 (a zero radius: the straight
    segment; a negative one: its absolute value)."""
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0:
        return np.array([p1, p2], np.float64)
    phi = math.radians(rotation % 360)
    cos, sin = math.cos(phi), math.sin(phi)
    # F.6.5.1: the half chord in the ellipse's axes
    dx, dy = (p1[0] - p2[0]) / 2, (p1[1] - p2[1]) / 2
    x1, y1 = cos * dx + sin * dy, -sin * dx + cos * dy
    # F.6.6: radii too small for the chord grow, in proportion, until the ellipse just fits;
    # then the centre is the chord's midpoint (F.6.5.2's radicand is 0: computing it would
    # leave a rounding error, whose square root moves the centre by some 1e-8 of the radius)
    scale = (x1 / rx) ** 2 + (y1 / ry) ** 2
    if scale >= 1:
        rx, ry, coef = rx * math.sqrt(scale), ry * math.sqrt(scale), 0.0
    else:  # F.6.5.2: the centre in the ellipse's axes
        num = (rx * ry) ** 2 - (rx * y1) ** 2 - (ry * x1) ** 2
        coef = math.sqrt(max(0.0, num / ((rx * y1) ** 2 + (ry * x1) ** 2)))
    if large == sweep:
        coef = -coef
    cxp, cyp = coef * rx * y1 / ry, -coef * ry * x1 / rx
    # F.6.5.3: the centre
    centre = (
        cos * cxp - sin * cyp + (p1[0] + p2[0]) / 2,
        sin * cxp + cos * cyp + (p1[1] + p2[1]) / 2,
    )
    # F.6.5.4: the start angle and the signed sweep (positive: the positive-angle direction)
    theta1 = math.atan2((y1 - cyp) / ry, (x1 - cxp) / rx)
    theta2 = math.atan2((-y1 - cyp) / ry, (-x1 - cxp) / rx)
    delta = theta2 - theta1
    if sweep and delta < 0:
        delta += 2 * math.pi
    elif not sweep and delta > 0:
        delta -= 2 * math.pi
    n = _steps(delta, max(rx, ry), tolerance)
    theta = theta1 + delta * np.arange(n + 1) / n
    return _ellipse_points(centre, rx, ry, cos, sin, theta, p1, p2)


def _ellipse_points(centre, rx, ry, cos, sin, theta, first, last) -> np.ndarray:
    """The ellipse's points at angles theta, the first and last replaced by the exact ones."""
    x, y = rx * np.cos(theta), ry * np.sin(theta)
    pts = np.stack([cos * x - sin * y + centre[0], sin * x + cos * y + centre[1]], axis=-1)
    pts[0], pts[-1] = first, last
    return pts


def ellipse(cx: float, cy: float, rx: float, ry: float, tolerance: float) -> np.ndarray:
    """The axis-aligned ellipse as a closed polyline (its first vertex repeated at the end),
    from (cx + rx, cy) in the positive-angle direction (clockwise on a y-down canvas, as SVG
    draws it), vertices on the ellipse and every chord's sagitta within `tolerance`."""
    check_tolerance(tolerance)
    if not (rx >= 0 and ry >= 0):
        raise ValueError(f"an ellipse's radii must not be negative; got {rx!r}, {ry!r}")
    n = max(4, _steps(2 * math.pi, max(rx, ry), tolerance))  # 4 at least: a shape, not a line
    first = (cx + rx, cy)
    theta = 2 * math.pi * np.arange(n + 1) / n
    return _ellipse_points((cx, cy), rx, ry, 1.0, 0.0, theta, first, first)


def circle(cx: float, cy: float, r: float, tolerance: float) -> np.ndarray:
    """The circle as a closed polyline (its first vertex repeated at the end), vertices on the
    circle and every chord's sagitta within `tolerance`."""
    if not r >= 0:
        raise ValueError(f"a circle's radius must not be negative; got {r!r}")
    return ellipse(cx, cy, r, r, tolerance)


# ----------------------------------------------------------------------------- documents
