"""Training targets from instance labels: the nucleus mask and HoVer-Net's horizontal/vertical distance maps.

For every nucleus, each pixel's x (y) offset from the nucleus centroid is scaled to [-1, 1] separately on each
side (negative offsets by the largest negative one, positive by the largest positive one), so touching nuclei
meet with a jump from +1 to -1 - the edge that post-processing finds with a gradient filter.
"""

from __future__ import annotations

import numpy as np


def _side_scaled(offset: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    lo = np.zeros(n + 1)
    hi = np.zeros(n + 1)
    np.minimum.at(lo, ids, offset)
    np.maximum.at(hi, ids, offset)
    scale = np.where(offset < 0, -lo[ids], hi[ids])
    return np.divide(offset, scale, out=np.zeros_like(offset), where=scale > 0)


def hv_maps(labels: np.ndarray) -> np.ndarray:
    """(2, H, W) float32: horizontal then vertical distance map; 0 on background."""
    labels = np.asarray(labels)
    out = np.zeros((2, *labels.shape), dtype=np.float32)
    fg = labels > 0
    if not fg.any():
        return out
    _, ids = np.unique(labels[fg], return_inverse=True)
    ids = ids.ravel() + 1
    n = int(ids.max())
    ys, xs = np.nonzero(fg)
    count = np.bincount(ids, minlength=n + 1).astype(np.float64)
    cy = np.bincount(ids, ys, minlength=n + 1) / np.maximum(count, 1)
    cx = np.bincount(ids, xs, minlength=n + 1) / np.maximum(count, 1)
    out[0][fg] = _side_scaled(xs - cx[ids], ids, n)
    out[1][fg] = _side_scaled(ys - cy[ids], ids, n)
    return out


def targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) int64 nucleus mask (0/1) and (2, H, W) HV maps."""
    return (np.asarray(labels) > 0).astype(np.int64), hv_maps(labels)
