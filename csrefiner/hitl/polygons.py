"""GeoJSON polygon geometry -> pixels: parse, validate and fill by pixel centres.

Coordinates are QuPath's: x to the right, y down, pixel (r, c) covers [c, c+1) x [r, r+1), so a pixel
belongs to a polygon when its centre (c + 0.5, r + 0.5) lies inside. Inside a Polygon the rings combine by
the even-odd rule (holes cut out); the polygons of a MultiPolygon are united.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.draw import polygon as fill_polygon

AREA_TYPES = ("Polygon", "MultiPolygon")
_PAIR_BUDGET = 2_000_000  # segment pairs compared at once when looking for crossings


class GeometryError(ValueError):
    """A geometry that cannot be used as it is; the caller names the feature."""


class NotAnArea(GeometryError):
    """A valid geometry without area (points, lines): skipped with a message, never an error."""


@dataclass
class Shape:
    polygons: list[list[np.ndarray]]  # per polygon: [exterior, hole, ...], each (k, 2) float (x, y), closed
    notes: list[str]  # harmless repairs made while reading (e.g. a ring closed)


def _ring(raw, notes: list[str]) -> np.ndarray:
    try:
        ring = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError("coordinates are not lists of [x, y] numbers") from None
    if ring.ndim != 2 or ring.shape[1] < 2:
        raise GeometryError(f"a ring is not a list of [x, y] positions (array shape {ring.shape})")
    ring = ring[:, :2]
    if not np.isfinite(ring).all():
        raise GeometryError("a ring has non-finite coordinates (NaN or infinity)")
    keep = np.r_[True, np.any(ring[1:] != ring[:-1], axis=1)]  # drop repeated consecutive vertices
    ring = ring[keep]
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    elif len(ring) > 2:
        notes.append("a ring was not closed (first position != last); closed it")
    if len(np.unique(ring, axis=0)) < 3:
        raise GeometryError("a ring has fewer than 3 distinct vertices (no area)")
    return np.vstack([ring, ring[:1]])


def parse_geometry(geometry) -> Shape:
    """Rings of a GeoJSON Polygon / MultiPolygon; anything else raises GeometryError."""
    if not isinstance(geometry, dict):
        raise GeometryError("no geometry")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind not in AREA_TYPES:
        raise NotAnArea(f"geometry type {kind!r} has no area (only Polygon and MultiPolygon become objects)")
    if not isinstance(coords, list) or not coords:
        raise GeometryError(f"{kind} without coordinates")
    raw = [coords] if kind == "Polygon" else coords
    notes: list[str] = []
    polygons = []
    for poly in raw:
        if not isinstance(poly, list) or not poly:
            raise GeometryError("a polygon without rings")
        polygons.append([_ring(r, notes) for r in poly])
    return Shape(polygons, sorted(set(notes)))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def first_crossing(rings: list[np.ndarray]) -> tuple[float, float] | None:
    """A point where two edges of the rings cross or run along each other, or None.

    Edges that only touch (at a vertex, or a vertex on another edge) are allowed, as in OGC simple features:
    pixel-traced outlines touch themselves where pixels meet diagonally.
    """
    seg = np.concatenate([np.stack([r[:-1], r[1:]], axis=1) for r in rings])
    p, d = seg[:, 0], seg[:, 1] - seg[:, 0]
    n = len(seg)
    block = max(1, _PAIR_BUDGET // max(n, 1))
    for lo in range(0, n, block):
        i = np.arange(lo, min(n, lo + block))[:, None]
        j = np.arange(n)[None, :]
        upper = j > i
        qp = p[None, :, :] - p[i[:, 0], None, :]
        denom = _cross(d[i[:, 0], None, :], d[None, :, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = _cross(qp, d[None, :, :]) / denom
            u = _cross(qp, d[i[:, 0], None, :]) / denom
            proper = (denom != 0) & (t > 0) & (t < 1) & (u > 0) & (u < 1)
            collinear = (denom == 0) & (_cross(qp, d[i[:, 0], None, :]) == 0)
            dd = np.einsum("ik,ik->i", d, d)[i[:, 0], None]
            t0 = np.einsum("ijk,ik->ij", qp, d[i[:, 0]]) / dd
            t1 = t0 + np.einsum("jk,ik->ij", d, d[i[:, 0]]) / dd
            overlap = np.minimum(1, np.maximum(t0, t1)) - np.maximum(0, np.minimum(t0, t1)) > 1e-12
        bad = upper & (proper | (collinear & overlap))
        if bad.any():
            a, b = np.argwhere(bad)[0]
            a += lo
            if proper[a - lo, b]:
                x, y = p[a] + t[a - lo, b] * d[a]
            else:
                x, y = p[b]
            return float(x), float(y)
    return None


def _fill(ring: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    r0, c0, h, w = box
    rows, cols = fill_polygon(ring[:, 1] - 0.5 - r0, ring[:, 0] - 0.5 - c0, shape=(h, w))
    out = np.zeros((h, w), dtype=bool)
    out[rows, cols] = True
    return out


def bounds(shape: Shape) -> tuple[float, float, float, float]:
    """(x min, y min, x max, y max) of every vertex."""
    xy = np.concatenate([r for poly in shape.polygons for r in poly])
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def area(shape: Shape) -> float:
    """Area enclosed (exteriors minus holes), in pixels."""
    from csrefiner.hitl.tracing import signed_area

    return float(sum(abs(signed_area(p[0])) - sum(abs(signed_area(h)) for h in p[1:]) for p in shape.polygons))


def pixel_window(shape: Shape, limit: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(row, col, height, width) of the pixels a shape can touch, cut to 0..limit when given (may be empty)."""
    x0, y0, x1, y1 = bounds(shape)
    r0, c0, r1, c1 = int(np.floor(y0)), int(np.floor(x0)), int(np.ceil(y1)), int(np.ceil(x1))
    if limit is not None:
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, limit[0]), min(c1, limit[1])
    return r0, c0, max(r1 - r0, 0), max(c1 - c0, 0)


def rasterise(shape: Shape, window: tuple[int, int, int, int] | None = None, even_odd_only: bool = False) -> np.ndarray:
    """Boolean mask of the shape's pixels inside `window` (row, col, height, width; default: all of it).

    Validates ring structure at pixel level: a hole must lie inside its exterior and holes must not overlap
    (GeometryError otherwise), unless even_odd_only, which XORs every ring as QuPath's lenient readers do.
    """
    box = pixel_window(shape) if window is None else window
    mask = np.zeros(box[2:], dtype=bool)
    for poly in shape.polygons:
        outer = _fill(poly[0], box)
        holes = np.zeros_like(outer)
        for hole in poly[1:]:
            cut = _fill(hole, box)
            if not even_odd_only and (cut & holes).any():
                raise GeometryError("two holes of one polygon overlap")
            if not even_odd_only and (cut & ~outer).any():
                raise GeometryError("a hole lies (partly) outside its polygon's exterior ring")
            holes ^= cut
        mask |= outer ^ holes
    return mask
