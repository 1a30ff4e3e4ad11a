"""Independent references the tests share: a shape's region and its cell areas by shapely,
from the closed rings a scene's outlines() gives (nothing of rectbert's own geometry)."""

import numpy as np
import shapely
from shapely.geometry import Polygon, box


def signed_area(ring_Vx2) -> float:
    """The shoelace area of a closed ring in (x, y): > 0 counter-clockwise with y up."""
    x, y = np.asarray(ring_Vx2, np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def region(rings):
    """The shape the rings bound (Scene.outlines' convention): from the largest ring to the
    smallest, one of positive signed area adds its inside, one of negative area cuts it (a
    hole; an island inside a hole adds again). Overlapping rings of one sign: their union."""
    shape = Polygon()
    for ring in sorted(rings, key=lambda r: -abs(signed_area(r))):
        if len(ring) < 3:
            continue
        inside = Polygon(np.asarray(ring, np.float64)).buffer(0)
        shape = shape.union(inside) if signed_area(ring) > 0 else shape.difference(inside)
    return shape


def cell_areas(shape, points_Px2, cell: float = 16.0, grid: int = 4) -> np.ndarray:
    """[P, grid*grid] the covered fraction of each cell of the grid x grid window of `cell`
    pixel cells centred on each point (row-major), by shapely."""
    points = np.asarray(points_Px2, np.float64)
    r, c = np.divmod(np.arange(grid * grid), grid)
    x0 = points[:, :1] + (c - grid / 2) * cell  # [P, G]
    y0 = points[:, 1:] + (r - grid / 2) * cell
    cells = shapely.box(x0, y0, x0 + cell, y0 + cell)
    return shapely.area(shapely.intersection(shape, cells)) / cell**2


def pixel_areas(shape, size: int, canvas: int = 256) -> np.ndarray:
    """[size, size] each pixel's covered fraction of a canvas x canvas image at `size`."""
    step = canvas / size
    t = np.arange(size) * step
    x0, y0 = np.meshgrid(t, t)  # [row, col]
    cells = shapely.box(x0, y0, x0 + step, y0 + step)
    return (
        shapely.area(shapely.intersection(shape.intersection(box(0, 0, canvas, canvas)), cells))
        / step**2
    )


# Shapes built here from each family's definition of its parameters (its docstring), not
# from the library's polygons: what pins a specific family's exact shape.
def rects_of(params_D) -> list[Polygon]:
    """`rects` (and `rect`): (x0, y0, x1, y1) per slot, an empty slot all 0."""
    return [box(*r) for r in np.asarray(params_D, np.float64).reshape(-1, 4) if r[0] != r[2]]


def rotated_of(params_D) -> list[Polygon]:
    """`rotated` (cx, cy, w, h, theta): corners c + R(theta)(+-w/2, +-h/2)."""
    cx, cy, w, h, t = np.asarray(params_D, np.float64)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return [Polygon(np.array([cx, cy]) + half @ rot.T)]


def junction_of(params_D) -> list[Polygon]:
    """`junction` (jx, jy, width, then length, angle per stroke; unused: length 0): stroke
    corners j +- (w/2) n and j + length u +- (w/2) n."""
    p = np.asarray(params_D, np.float64)
    j, half, out = p[:2], p[2] / 2, []
    for length, a in p[3:].reshape(-1, 2):
        if length > 0:
            u, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
            far = j + length * u
            out.append(Polygon([j - half * n, far - half * n, far + half * n, j + half * n]))
    return out


def coverage(scene, params_NxD, points_NxPx2, cell: float = 16.0, grid: int = 4) -> np.ndarray:
    """[N, P, grid*grid] by shapely: each shape's region (its outlines) in each window."""
    return np.stack(
        [
            cell_areas(region(scene.outlines(p)), q, cell, grid)
            for p, q in zip(np.asarray(params_NxD), np.asarray(points_NxPx2), strict=True)
        ]
    )
