"""What one tile's instance mask says about its objects: compact ids, bounding boxes, cut or whole.

An object is *cut* when it touches an interior edge of its tile (an edge with a neighbouring tile): part of
it may lie outside. It is *whole* otherwise. Its *anchor* is the centre of its bounding box in slide
coordinates, the same in every tile that sees the object whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from csrefiner.wsi.tiling import Tile

NO_EDGE = np.iinfo(np.int32).max  # margin of an object in a tile without interior edges


def compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber a tile's labels 1..n in increasing order of the original value (0 stays 0): int32, n."""
    top = int(labels.max()) if labels.size else 0
    if top < labels.size + 2**20:  # a lookup table is cheaper than sorting the pixels
        present = np.bincount(labels.ravel(), minlength=top + 1) > 0
        present[0] = False
        lut = np.cumsum(present, dtype=np.int32) * present
        return lut[labels], int(present.sum())
    values, inverse = np.unique(labels, return_inverse=True)
    local = inverse.reshape(labels.shape).astype(np.int32)
    if values[0] != 0:
        local += 1
    return local, int(values.size - (values[0] == 0))


@dataclass
class TileObjects:
    """Per object (index i is local label i + 1): wholeness, anchor, margin to the nearest interior edge."""

    whole: np.ndarray  # bool
    anchor_y: np.ndarray  # int64, slide coordinates
    anchor_x: np.ndarray
    margin: np.ndarray  # int64 pixels between the bounding box and the closest interior tile edge


def describe(local: np.ndarray, n: int, tile: Tile) -> TileObjects:
    boxes = ndi.find_objects(local, max_label=n)
    y0 = np.array([b[0].start for b in boxes], dtype=np.int64)
    y1 = np.array([b[0].stop for b in boxes], dtype=np.int64)
    x0 = np.array([b[1].start for b in boxes], dtype=np.int64)
    x1 = np.array([b[1].stop for b in boxes], dtype=np.int64)
    top, bottom, left, right = tile.edges
    h, w = local.shape
    margins = [NO_EDGE * np.ones(n, dtype=np.int64)]
    edge_pixels = []
    for interior, margin, pixels in (
        (top, y0, local[0]),
        (bottom, h - y1, local[-1]),
        (left, x0, local[:, 0]),
        (right, w - x1, local[:, -1]),
    ):
        if interior:
            margins.append(margin)
            edge_pixels.append(pixels)
    touched = np.zeros(n + 1, dtype=bool)
    if edge_pixels:
        touched[np.concatenate(edge_pixels)] = True
    return TileObjects(
        whole=~touched[1:],
        anchor_y=tile.y + (y0 + y1 - 1) // 2,
        anchor_x=tile.x + (x0 + x1 - 1) // 2,
        margin=np.min(margins, axis=0),
    )
