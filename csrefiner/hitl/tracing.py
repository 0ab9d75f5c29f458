"""Mask -> polygons by tracing pixel edges, the way QuPath itself turns a labelled image into ROIs.

Vertices sit on pixel corners: pixel (row r, column c) is the unit square [c, c+1) x [r, r+1) in (x, y), the
convention of QuPath and GeoJSON exports of it. Filling the traced polygons by pixel centres gives back
exactly the same pixels, so a mask survives the round trip unchanged.

Each object is split into 4-connected pieces (a MultiPolygon when there are several); each piece gives one
exterior ring and one ring per hole. Walking an edge with the object on its left, at a corner where two
object pixels touch only diagonally the walk turns left, staying on the same 4-connected piece; so two
objects that touch never share a ring, and diagonal neighbours become separate polygons.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# Directions in image coordinates (y down), clockwise on screen: a left turn from d is (d - 1) % 4.
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])  # E, S, W, N as (dx, dy)
FOUR = ndi.generate_binary_structure(2, 1)


def _edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed boundary edges (start vertex, end vertex, direction) with the object on the walker's left.

    `mask` must have a background border; vertex (x, y) has id y * (w + 1) + x.
    """
    b = mask.astype(np.int8)
    w1 = b.shape[1] + 1
    starts, ends, dirs = [], [], []
    dh = b[1:, :] - b[:-1, :]  # [r-1, c]: horizontal edge at y = r, from x = c to c + 1
    for sign, direction, dx0, dx1 in ((-1, 0, 0, 1), (1, 2, 1, 0)):  # object above -> east, below -> west
        r, c = np.nonzero(dh == sign)
        starts.append((r + 1) * w1 + c + dx0)
        ends.append((r + 1) * w1 + c + dx1)
        dirs.append(np.full(r.size, direction))
    dv = b[:, 1:] - b[:, :-1]  # [r, c-1]: vertical edge at x = c, from y = r to r + 1
    for sign, direction, dy0, dy1 in ((1, 1, 0, 1), (-1, 3, 1, 0)):  # object right -> south, left -> north
        r, c = np.nonzero(dv == sign)
        starts.append((r + dy0) * w1 + c + 1)
        ends.append((r + dy1) * w1 + c + 1)
        dirs.append(np.full(r.size, direction))
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(dirs)


def trace_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Closed rings of corner vertices, (k, 2) int arrays of (x, y) with the first vertex repeated last.

    Rings run with the object on their left on screen (y down): exteriors have negative shoelace area in
    (x, y) numbers, holes positive. Only corners are kept (no vertex in the middle of a straight run).
    """
    padded = np.pad(mask.astype(bool), 1)
    start, end, direction = _edges(padded)
    w1 = padded.shape[1] + 1
    n_vertices = (padded.shape[0] + 1) * w1
    out1 = np.full(n_vertices, -1, dtype=np.int64)  # up to two outgoing edges per vertex (two at pinches)
    out2 = np.full(n_vertices, -1, dtype=np.int64)
    order = np.argsort(start, kind="stable")
    first = np.r_[True, start[order][1:] != start[order][:-1]]
    out1[start[order[first]]] = order[first]
    out2[start[order[~first]]] = order[~first]
    used = np.zeros(start.size, dtype=bool)
    rings = []
    # Start only where a vertex has one way out, so a ring never swallows the other loop of a pinch.
    for e0 in np.flatnonzero(out2[start] < 0):
        if used[e0]:
            continue
        corners, e = [], int(e0)
        while not used[e]:
            used[e] = True
            nxt, alt = out1[end[e]], out2[end[e]]
            if alt >= 0 and direction[nxt] != (direction[e] - 1) % 4:  # pinch: take the left turn
                nxt = alt
            if direction[nxt] != direction[e]:
                corners.append(end[e])
            e = int(nxt)
        corners = np.array(corners, dtype=np.int64)
        xy = np.stack([corners % w1, corners // w1], axis=1) - 1  # undo the padding
        rings.append(np.vstack([xy, xy[:1]]))
    return rings


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ring in (x, y) numbers (positive = counter-clockwise with y up)."""
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def object_polygons(mask: np.ndarray) -> list[list[np.ndarray]]:
    """Polygons of one object's boolean mask: per 4-connected piece [exterior, hole, ...] in (x, y).

    Rings are oriented as RFC 7946 asks (exterior counter-clockwise, holes clockwise, with y up).
    """
    pieces, n = ndi.label(mask, structure=FOUR)
    boxes = ndi.find_objects(pieces)
    polygons = []
    for k in range(1, n + 1):
        box = boxes[k - 1]
        rings = [r[::-1] + (box[1].start, box[0].start) for r in trace_rings(pieces[box] == k)]
        rings.sort(key=signed_area, reverse=True)  # the exterior (the only positive ring) first
        polygons.append(rings)
    return polygons
