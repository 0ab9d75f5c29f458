"""Which objects of two neighbouring tiles are the same object: IoU inside the strip both tiles cover.

Two views of one object agree on the shared strip (exactly, for a perfect segmenter; closely, for a model
that sees enough context there), while distinct objects barely overlap. A pair is linked when its IoU
within the strip exceeds `min_iou`; with `min_iou >= 0.5` each object has at most one partner per seam.
"""

from __future__ import annotations

import numpy as np


def strip_links(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """(k, 2) int64 pairs of node ids (a's, b's) whose IoU in the common strip is > min_iou; 0 = background."""
    a = a.ravel().astype(np.int64, copy=False)
    b = b.ravel().astype(np.int64, copy=False)
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.empty((0, 2), dtype=np.int64)
    base = int(b.max()) + 1
    pairs, n_ab = np.unique(a[both] * base + b[both], return_counts=True)
    pa, pb = pairs // base, pairs % base
    ids_a, n_a = np.unique(a[a > 0], return_counts=True)
    ids_b, n_b = np.unique(b[b > 0], return_counts=True)
    area_a = n_a[np.searchsorted(ids_a, pa)]
    area_b = n_b[np.searchsorted(ids_b, pb)]
    iou = n_ab / (area_a + area_b - n_ab)
    keep = iou > min_iou
    return np.stack([pa[keep], pb[keep]], axis=1)
