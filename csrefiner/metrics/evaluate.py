"""Evaluate instance segmentations against ground truth: per image, macro and micro (pooled) averages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from csrefiner.errors import CsrefinerError
from csrefiner.io import pair_folders, read_labels
from csrefiner.metrics.matching import THRESHOLD_SWEEP, MatchCounts, aji_plus, match_counts
from csrefiner.metrics.overlap import label_overlap
from csrefiner.progress import track

# Columns people compare between methods (paired statistics, box plots), in display order.
KEY_METRICS = (
    "precision",
    "recall",
    "f1",
    "object_jaccard",
    "object_dice",
    "pixel_jaccard",
    "pixel_dice",
    "panoptic_quality",
    "aji_plus",
    "ap_50_95",
)


@dataclass
class ImageResult:
    """Everything additive about one (ground truth, prediction) pair, so images can be pooled exactly."""

    method: str
    image: str
    counts: dict[float, MatchCounts]
    aji: tuple[int, int]
    foreground: tuple[int, int, int]
    extra: dict = field(default_factory=dict)


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def evaluate_arrays(y_true: np.ndarray, y_pred: np.ndarray, thresholds: Sequence[float], method="", image=""):
    if y_true.shape != y_pred.shape:
        raise CsrefinerError(f"{image}: ground truth {y_true.shape} and prediction {y_pred.shape} differ in shape")
    ov = label_overlap(y_true, y_pred)
    counts = {float(t): match_counts(ov, float(t)) for t in thresholds}
    foreground = (int(ov.pair_inter.sum()), int(ov.true_area.sum()), int(ov.pred_area.sum()))  # no pixel pass
    return ImageResult(method, image, counts, aji_plus(ov), foreground)


def scores(counts: dict[float, MatchCounts], aji: tuple[int, int], fg: tuple[int, int, int], iou: float) -> dict:
    """The metric row at threshold `iou`, plus AP over 0.50:0.95 and the pixel/AJI scores."""
    row = counts[iou].scores()
    inter, t, p = fg
    row["aji_plus"] = _ratio(*aji)
    row["pixel_jaccard"] = _ratio(inter, t + p - inter)
    row["pixel_dice"] = _ratio(2 * inter, t + p)
    row["ap_50_95"] = float(np.mean([counts[th].scores()["accuracy"] for th in THRESHOLD_SWEEP]))
    return row


def evaluate_folders(gt_dir: Path, pred_dir: Path, method: str, iou: float = 0.5) -> list[ImageResult]:
    pairs = pair_folders(gt_dir, pred_dir)
    thresholds = sorted(set(THRESHOLD_SWEEP) | {float(iou)})
    results = []
    for key, gt_path, pred_path in track(pairs, f"evaluate {method}"):
        y_true, y_pred = read_labels(gt_path), read_labels(pred_path)
        if y_true.shape != y_pred.shape:
            raise CsrefinerError(
                f"{pred_path}: shape {y_pred.shape} differs from its ground truth {gt_path} {y_true.shape}"
            )
        results.append(evaluate_arrays(y_true, y_pred, thresholds, method, key))
    return results


def per_image_table(results: list[ImageResult], iou: float) -> pd.DataFrame:
    rows = [{"method": r.method, "image": r.image, **scores(r.counts, r.aji, r.foreground, iou)} for r in results]
    return pd.DataFrame(rows)


def pooled(results: list[ImageResult], iou: float) -> dict:
    """Micro average: counts and pixels summed over all images, then the scores computed once."""
    thresholds = results[0].counts.keys()
    counts = {t: sum((r.counts[t] for r in results[1:]), results[0].counts[t]) for t in thresholds}
    aji = tuple(int(sum(r.aji[i] for r in results)) for i in range(2))
    fg = tuple(int(sum(r.foreground[i] for r in results)) for i in range(3))
    return scores(counts, aji, fg, iou)


def sweep_table(results: list[ImageResult]) -> pd.DataFrame:
    """Pooled scores at each IoU threshold of 0.50:0.95, one row per method and threshold."""
    rows = []
    for method in dict.fromkeys(r.method for r in results):
        mine = [r for r in results if r.method == method]
        for t in THRESHOLD_SWEEP:
            total = sum((r.counts[t] for r in mine[1:]), mine[0].counts[t])
            rows.append({"method": method, **total.scores()})
    return pd.DataFrame(rows)


def summary(results: list[ImageResult], table: pd.DataFrame, iou: float) -> dict:
    out = {"iou_threshold": iou, "methods": {}}
    for method in dict.fromkeys(r.method for r in results):
        mine = table[table.method == method]
        numeric = mine.drop(columns=["method", "image"])
        out["methods"][method] = {
            "n_images": int(len(mine)),
            "macro": {k: float(v) for k, v in numeric.mean().items()},
            "micro": pooled([r for r in results if r.method == method], iou),
        }
    return out
