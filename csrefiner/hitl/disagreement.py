"""How much models disagree on a tile: the score `csrefiner suggest` ranks tiles by.

For M models on one tile, with objects matched one-to-one at IoU >= t between every pair of models:
- pairwise F1(a, b) = 2 TP / (n_a + n_b), 1 when neither model found an object (they agree on "empty");
- mean_pairwise_f1 = the mean over the M(M-1)/2 pairs;
- unmatched_share = objects (of all models) matched in no other model / all objects (0 on an empty tile);
- disagreement = 1 - mean_pairwise_f1 (0: all models found the same objects; 1: no object in common).
Ties in disagreement are ranked by unmatched_share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from csrefiner.hitl.pairwise import Pairwise, match_models


def pair_f1(n_a: int, n_b: int, tp: int) -> float:
    return 1.0 if n_a + n_b == 0 else 2.0 * tp / (n_a + n_b)


def scores(pw: Pairwise) -> dict[str, float]:
    n = pw.n_objects
    f1 = [pair_f1(n[m.a], n[m.b], m.iou.size) for m in pw.matches]
    matched = [np.zeros(k, dtype=bool) for k in n]
    for m in pw.matches:
        matched[m.a][m.obj_a] = True
        matched[m.b][m.obj_b] = True
    total = sum(n)
    unmatched = sum(int((~x).sum()) for x in matched)
    mean_f1 = float(np.mean(f1))
    return {
        "mean_pairwise_f1": mean_f1,
        "unmatched_share": unmatched / total if total else 0.0,
        "disagreement": 1.0 - mean_f1,
    }


def disagreement(stack: Sequence[np.ndarray], iou: float = 0.5) -> dict[str, float]:
    """Disagreement scores of one tile predicted by several models (label masks of the same shape)."""
    return scores(match_models(stack, iou))
