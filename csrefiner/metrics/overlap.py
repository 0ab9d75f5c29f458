"""Sparse overlap between two instance label images.

Labels may be any uint32 values (not sequential). Only pairs of objects that share pixels are stored, so the
cost grows with the number of pixels and overlapping pairs, never with n_true x n_pred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this many distinct label values a lookup table relabels faster than sorting.
_LUT_LIMIT = 1 << 25


def sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to 0..n (background stays 0). Returns (flat sequential ids, original id of each 1..n)."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top < _LUT_LIMIT:
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present).astype(np.uint32)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[flat], ids
    ids, inverse = np.unique(flat, return_inverse=True)
    if ids[0] == 0:
        return inverse.astype(np.int64), ids[1:]
    return inverse.astype(np.int64) + 1, ids


@dataclass(frozen=True)
class Overlap:
    """Object sizes and the intersections of every overlapping (true, pred) pair, in sequential ids (0-based)."""

    true_ids: np.ndarray  # original label of true object i
    pred_ids: np.ndarray
    true_area: np.ndarray  # pixels of true object i
    pred_area: np.ndarray
    pair_true: np.ndarray  # index i of each overlapping pair
    pair_pred: np.ndarray  # index j of each overlapping pair
    pair_inter: np.ndarray  # shared pixels of each pair

    @property
    def n_true(self) -> int:
        return int(self.true_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def pair_union(self) -> np.ndarray:
        return self.true_area[self.pair_true] + self.pred_area[self.pair_pred] - self.pair_inter

    @property
    def pair_iou(self) -> np.ndarray:
        # float32 like stardist.matching, so thresholds and scores agree bit for bit with the reference.
        return (self.pair_inter / self.pair_union).astype(np.float32)


def label_overlap(y_true: np.ndarray, y_pred: np.ndarray) -> Overlap:
    """Sizes and sparse pairwise intersections of two label images of the same shape."""
    t_flat, p_flat = y_true.ravel(), y_pred.ravel()
    top_t = int(t_flat.max()) if t_flat.size else 0
    top_p = int(p_flat.max()) if p_flat.size else 0
    if (top_t + 1) * (top_p + 1) <= max(4 * t_flat.size, 1 << 20):
        return _dense_overlap(t_flat, p_flat, top_t, top_p)
    return _sparse_overlap(y_true, y_pred)


def _dense_overlap(t_flat: np.ndarray, p_flat: np.ndarray, top_t: int, top_p: int) -> Overlap:
    """One bincount of (true, pred) label pairs over a table no larger than a few times the image.

    The usual case (labels numbered 1..n): a single pass over the pixels, no relabelling and no sort, which
    is what makes small images fast. Pairs come out in (true, pred) order, as from the sorting path.
    """
    width = top_p + 1
    key = t_flat.astype(np.intp) * width
    key += p_flat
    joint = np.bincount(key, minlength=(top_t + 1) * width).reshape(top_t + 1, width)
    t_area, p_area = joint.sum(axis=1), joint.sum(axis=0)
    t_present, p_present = t_area[1:] > 0, p_area[1:] > 0
    inter = joint[1:, 1:]
    pt, pp = np.nonzero(inter)
    return Overlap(
        true_ids=(np.flatnonzero(t_present) + 1).astype(np.uint32),
        pred_ids=(np.flatnonzero(p_present) + 1).astype(np.uint32),
        true_area=t_area[1:][t_present],
        pred_area=p_area[1:][p_present],
        pair_true=(np.cumsum(t_present) - 1)[pt],
        pair_pred=(np.cumsum(p_present) - 1)[pp],
        pair_inter=inter[pt, pp],
    )


def _sparse_overlap(y_true: np.ndarray, y_pred: np.ndarray) -> Overlap:
    """Relabel both images 1..n, then count the pairs of foreground pixels by sorting."""
    t, true_ids = sequential(y_true)
    p, pred_ids = sequential(y_pred)
    true_area = np.bincount(t, minlength=true_ids.size + 1)[1:]
    pred_area = np.bincount(p, minlength=pred_ids.size + 1)[1:]
    both = (t > 0) & (p > 0)
    keys = (t[both] - 1) * np.int64(max(pred_ids.size, 1)) + (p[both] - 1)
    keys, inter = np.unique(keys, return_counts=True)
    stride = max(pred_ids.size, 1)
    return Overlap(
        true_ids=true_ids,
        pred_ids=pred_ids,
        true_area=true_area,
        pred_area=pred_area,
        pair_true=keys // stride,
        pair_pred=keys % stride,
        pair_inter=inter,
    )
