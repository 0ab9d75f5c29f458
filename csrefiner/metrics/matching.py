"""Instance matching with the same objective and numbers as `stardist.matching.matching`.

A prediction matches a true object one-to-one; the assignment first maximises the number of pairs with
IoU >= threshold and then their summed IoU (stardist's cost `-(iou >= t) - iou / (2 n)`), solved exactly.
Because non-overlapping pairs cost nothing, the problem splits into connected components of the overlap
graph. When the pairs above threshold already form a matching (always for t > 0.5, where an object has at
most one partner above 0.5), every optimal assignment takes exactly those pairs and no solver is needed;
otherwise the conflicting components are solved with the Hungarian algorithm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from csrefiner.metrics.overlap import Overlap, label_overlap

THRESHOLD_SWEEP = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50:0.05:0.95


def _safe_divide(x, y) -> float:
    """x / y in x's own precision (float32 stays float32), 0 when y is 0."""
    return float(x / y) if y != 0 else 0.0


@dataclass(frozen=True)
class MatchCounts:
    """Additive counts of one image at one threshold: pooled over images by summing."""

    thresh: float
    n_true: int
    n_pred: int
    tp: int
    sum_matched_iou: float
    sum_matched_dice: float

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp

    def __add__(self, other: MatchCounts) -> MatchCounts:
        if other.thresh != self.thresh:
            raise ValueError("cannot pool counts of different thresholds")
        return MatchCounts(
            self.thresh,
            self.n_true + other.n_true,
            self.n_pred + other.n_pred,
            self.tp + other.tp,
            self.sum_matched_iou + other.sum_matched_iou,
            self.sum_matched_dice + other.sum_matched_dice,
        )

    def scores(self) -> dict[str, float]:
        """Scores named as in stardist, plus object-level Dice of matched pairs.

        IoU-derived scores use float32 arithmetic as stardist does, so they agree with it to the last bit.
        """
        tp, fp, fn = self.tp, self.fp, self.fn
        s = np.float32(self.sum_matched_iou)
        return {
            "thresh": self.thresh,
            "fp": fp,
            "tp": tp,
            "fn": fn,
            "precision": _safe_divide(tp, tp + fp),
            "recall": _safe_divide(tp, tp + fn),
            "accuracy": _safe_divide(tp, tp + fp + fn),
            "f1": _safe_divide(2 * tp, 2 * tp + fp + fn),
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            "mean_true_score": _safe_divide(s, self.n_true),
            "mean_matched_score": _safe_divide(s, tp),
            "panoptic_quality": _safe_divide(s, tp + fp / 2 + fn / 2),
            "object_jaccard": _safe_divide(s, tp),
            "object_dice": _safe_divide(self.sum_matched_dice, tp),
        }


def _components(ov: Overlap) -> np.ndarray:
    """Component id of each overlapping pair in the bipartite overlap graph."""
    n = ov.n_true + ov.n_pred
    graph = coo_matrix(
        (np.ones(ov.pair_true.size, dtype=np.int8), (ov.pair_true, ov.n_true + ov.pair_pred)), shape=(n, n)
    )
    _, node_comp = connected_components(graph, directed=False)
    return node_comp[ov.pair_true]


def _solve_component(rows, cols, iou, thresh, n_matched) -> np.ndarray:
    """Indices (into rows/cols/iou) of the pairs stardist's assignment selects in one component."""
    r_ids, r = np.unique(rows, return_inverse=True)
    c_ids, c = np.unique(cols, return_inverse=True)
    scores = np.zeros((r_ids.size, c_ids.size), dtype=np.float32)
    scores[r, c] = iou
    costs = -(scores >= thresh).astype(float) - scores / (2 * n_matched)
    ri, ci = linear_sum_assignment(costs)
    chosen = np.full((r_ids.size, c_ids.size), -1, dtype=np.int64)
    chosen[r, c] = np.arange(iou.size)
    picked = chosen[ri, ci]
    return picked[picked >= 0]


def matched_pairs(ov: Overlap, thresh: float) -> np.ndarray:
    """Indices of the overlapping pairs that are true positives at `thresh` (one-to-one, optimal)."""
    iou = ov.pair_iou
    above = np.flatnonzero(iou >= thresh)
    t_dup = np.bincount(ov.pair_true[above], minlength=ov.n_true) > 1
    p_dup = np.bincount(ov.pair_pred[above], minlength=ov.n_pred) > 1
    if not (t_dup.any() or p_dup.any()):
        return above
    # Some objects have several partners above threshold: solve those components exactly.
    comp = _components(ov)
    conflict = np.zeros(comp.max() + 1, dtype=bool)
    clash = t_dup[ov.pair_true[above]] | p_dup[ov.pair_pred[above]]
    conflict[comp[above[clash]]] = True
    keep = [above[~conflict[comp[above]]]]
    n_matched = min(ov.n_true, ov.n_pred)
    order = np.argsort(comp, kind="stable")
    bounds = np.searchsorted(comp[order], np.flatnonzero(conflict), side="left")
    ends = np.searchsorted(comp[order], np.flatnonzero(conflict), side="right")
    for lo, hi in zip(bounds, ends):
        idx = order[lo:hi]
        picked = idx[_solve_component(ov.pair_true[idx], ov.pair_pred[idx], iou[idx], thresh, n_matched)]
        keep.append(picked[iou[picked] >= thresh])
    return np.sort(np.concatenate(keep))


def match_counts(ov: Overlap, thresh: float) -> MatchCounts:
    if not 0 < thresh <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {thresh}")
    tp_idx = matched_pairs(ov, thresh)
    iou = ov.pair_iou[tp_idx]
    return MatchCounts(
        thresh=float(thresh),
        n_true=ov.n_true,
        n_pred=ov.n_pred,
        tp=int(tp_idx.size),
        sum_matched_iou=float(iou.sum()),  # float32 pairwise sum in true-label order, as stardist
        sum_matched_dice=float((2 * iou.astype(np.float64) / (1 + iou)).sum()),
    )


def aji_plus(ov: Overlap) -> tuple[int, int]:
    """(intersection, union) sums of AJI+ (one-to-one pairing maximising total IoU, as in HoVer-Net's stats).

    Returned as integer sums so images can be pooled; AJI+ = intersection / union.
    """
    iou = ov.pair_iou
    paired = np.zeros(0, dtype=np.int64)
    if iou.size:
        comp = _components(ov)
        size = np.bincount(comp)
        single = size[comp] == 1  # most objects overlap one partner only: paired without a solver
        picks = [np.flatnonzero(single)]
        multi = np.flatnonzero(~single)
        order = multi[np.argsort(comp[multi], kind="stable")]
        sorted_comp = comp[order]
        starts = np.flatnonzero(np.r_[True, sorted_comp[1:] != sorted_comp[:-1]]) if order.size else order
        ends = np.r_[starts[1:], sorted_comp.size]
        for lo, hi in zip(starts, ends):
            idx = order[lo:hi]
            r_ids, r = np.unique(ov.pair_true[idx], return_inverse=True)
            c_ids, c = np.unique(ov.pair_pred[idx], return_inverse=True)
            cost = np.zeros((r_ids.size, c_ids.size))
            cost[r, c] = -iou[idx]
            chosen = np.full(cost.shape, -1, dtype=np.int64)
            chosen[r, c] = idx
            ri, ci = linear_sum_assignment(cost)
            got = chosen[ri, ci]
            picks.append(got[got >= 0])
        paired = np.concatenate(picks)
    inter = int(ov.pair_inter[paired].sum())
    union = int(ov.pair_union[paired].sum())
    true_left = np.ones(ov.n_true, dtype=bool)
    true_left[ov.pair_true[paired]] = False
    pred_left = np.ones(ov.n_pred, dtype=bool)
    pred_left[ov.pair_pred[paired]] = False
    union += int(ov.true_area[true_left].sum() + ov.pred_area[pred_left].sum())
    return inter, union


def foreground_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int]:
    """(|T and P|, |T|, |P|) of foreground pixels, for pixel-level Dice and Jaccard."""
    t = y_true > 0
    p = y_pred > 0
    return int(np.count_nonzero(t & p)), int(np.count_nonzero(t)), int(np.count_nonzero(p))


def matching(y_true: np.ndarray, y_pred: np.ndarray, thresh: float = 0.5) -> dict[str, float]:
    """Scores of one image pair at one threshold, named like `stardist.matching.matching(...)._asdict()`."""
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: {y_true.shape} vs {y_pred.shape}")
    return match_counts(label_overlap(y_true, y_pred), thresh).scores()


__all__ = ["THRESHOLD_SWEEP", "MatchCounts", "aji_plus", "foreground_counts", "match_counts", "matching", "asdict"]
