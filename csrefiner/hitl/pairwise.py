"""One-to-one matches between every pair of models on one tile (the stardist objective, via csrefiner.metrics)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from csrefiner.metrics.matching import matched_pairs
from csrefiner.metrics.overlap import label_overlap, sequential


@dataclass(frozen=True)
class PairMatch:
    a: int  # model index
    b: int
    obj_a: np.ndarray  # 0-based object index in model a (sorted label order) of each matched pair
    obj_b: np.ndarray
    iou: np.ndarray  # IoU of each matched pair


@dataclass(frozen=True)
class Pairwise:
    """Objects of each model (original label ids, in sorted order) and the matches of every model pair."""

    ids: list[np.ndarray]
    matches: list[PairMatch]

    @property
    def n_objects(self) -> list[int]:
        return [int(i.size) for i in self.ids]


def object_ids(labels: np.ndarray) -> np.ndarray:
    """Label ids present (sorted): object i of a model is ids[i], the order label_overlap uses."""
    return sequential(labels)[1]


def match_models(stack: Sequence[np.ndarray], iou: float = 0.5) -> Pairwise:
    """Match the objects of every pair of models one-to-one at IoU >= `iou`."""
    ids = [object_ids(s) for s in stack]
    matches = []
    for a, b in itertools.combinations(range(len(stack)), 2):
        ov = label_overlap(stack[a], stack[b])
        tp = matched_pairs(ov, iou)
        matches.append(PairMatch(a, b, ov.pair_true[tp], ov.pair_pred[tp], ov.pair_iou[tp]))
    return Pairwise(ids, matches)
