"""Human-in-the-loop numbers on generated tiles with exact ground truth.

1. Consensus of three corrupted copies vs each copy and vs a naive fusion (foreground pixel majority, then
   connected components, what one gets by voting on binary masks), F1 at IoU 0.5 against the truth.
2. Ranking: Spearman correlation of the disagreement scores with the corruption level of each tile.
3. QuPath GeoJSON round trip: csrefiner's pixel-edge tracing vs skimage.measure.find_contours + polygon fill
   (the usual script), objects recovered at IoU >= 0.95 and the worst object's IoU.
4. Time to fuse three 2048 x 2048 predictions.

Run: `.venv/bin/python benchmarks/hitl.py [--tiles 24]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import spearmanr

from csrefiner.hitl.consensus import fuse
from csrefiner.hitl.geojson import Feature, features_to_labels, labels_to_features
from csrefiner.metrics.matching import match_counts, matching
from csrefiner.metrics.overlap import label_overlap
from csrefiner.synth import EASY, HARD, nuclei_image, nuclei_labels
from csrefiner.synth.corrupt import corrupt_labels


def naive_fusion(stack) -> np.ndarray:
    votes = sum((s > 0).astype(int) for s in stack)
    return ndi.label(2 * votes > len(stack))[0].astype(np.uint32)


def consensus_table(n_tiles: int) -> None:
    levels = np.linspace(0.05, 0.6, n_tiles)
    rows = []
    for i, level in enumerate(levels):
        _, gt = nuclei_image((256, 256), HARD if i % 2 else EASY, seed=500 + i)
        copies = [corrupt_labels(gt, level, seed=10 * i + k) for k in range(3)]
        fused = fuse(copies, 2, 0.5)
        rows.append(
            {
                "level": level,
                "copies": [matching(gt, c)["f1"] for c in copies],
                "naive": matching(gt, naive_fusion(copies))["f1"],
                "consensus": matching(gt, fused.labels)["f1"],
                "disagreement": fused.stats["disagreement"],
                "unmatched": fused.stats["unmatched_share"],
            }
        )
    print("1. F1 vs truth (IoU 0.5), mean over tiles per corruption band")
    print(f"{'level':>11} {'tiles':>5} {'best copy':>9} {'mean copy':>9} {'naive vote':>10} {'consensus':>9}")
    bands = np.array_split(np.arange(n_tiles), 3)
    for band in [*bands, np.arange(n_tiles)]:
        sel = [rows[i] for i in band]
        lo, hi = sel[0]["level"], sel[-1]["level"]
        best = np.mean([max(r["copies"]) for r in sel])
        mean = np.mean([np.mean(r["copies"]) for r in sel])
        label = "all" if len(band) == n_tiles else f"{lo:.2f}-{hi:.2f}"
        print(
            f"{label:>11} {len(sel):>5} {best:9.3f} {mean:9.3f} {np.mean([r['naive'] for r in sel]):10.3f} "
            f"{np.mean([r['consensus'] for r in sel]):9.3f}"
        )
    lv = [r["level"] for r in rows]
    print("\n2. Spearman correlation with the corruption level")
    for key in ("disagreement", "unmatched"):
        print(f"{key:>14}: rho = {spearmanr(lv, [r[key] for r in rows]).statistic:.3f}")


def find_contours_round_trip(labels: np.ndarray) -> np.ndarray:
    """The common script: find_contours at 0.5 per object, fill the polygons by skimage.draw.polygon."""
    from skimage.draw import polygon
    from skimage.measure import find_contours

    out = np.zeros_like(labels)
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        crop = np.pad(labels[box] == k, 1)
        for c in find_contours(crop.astype(float), 0.5):
            rr, cc = polygon(c[:, 0] - 1 + box[0].start, c[:, 1] - 1 + box[1].start, labels.shape)
            out[rr, cc] = k
    return out


def with_holes(seed: int) -> np.ndarray:
    """512^2 dense touching nuclei, plus a band of 30 ring-shaped objects (a hole each) and their islands."""
    from skimage.draw import disk

    _, lab = nuclei_image((512, 512), HARD, seed=seed)
    lab[:48] = 0
    top = int(lab.max())
    for i in range(30):
        centre = (24, 12 + 16.5 * i)
        for radius, label in ((8, top + 2 * i + 1), (4, 0), (2, top + 2 * i + 2)):
            rr, cc = disk(centre, radius, shape=lab.shape)
            lab[rr, cc] = label
    return lab


def round_trip_table() -> None:
    lab = with_holes(9)
    print("\n3. mask -> polygons -> mask (512 x 512 dense touching nuclei + 30 objects with a hole)")
    print(f"{'method':>28} {'objects':>7} {'IoU>=0.95':>9} {'worst IoU':>9} {'same pixels':>13} {'seconds':>7}")
    t = time.perf_counter()
    fc = labels_to_features(lab)
    back, _ = features_to_labels([Feature("bench", i, f) for i, f in enumerate(fc["features"])], lab.shape)
    ours = (back, time.perf_counter() - t)
    t = time.perf_counter()
    theirs = (find_contours_round_trip(lab), time.perf_counter() - t)
    for name, (out, sec) in (("csrefiner pixel-edge tracing", ours), ("find_contours + polygon", theirs)):
        ov = label_overlap(lab, out)
        best = np.zeros(ov.n_true)
        np.maximum.at(best, ov.pair_true, ov.pair_iou)
        ok = match_counts(ov, 0.95).tp
        exact = np.array_equal(lab > 0, out > 0)
        print(f"{name:>28} {ov.n_true:>7} {ok:>9} {best.min():9.3f} {str(exact):>13} {sec:7.2f}")


def _big(seed: int, level: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """2048^2 truth and 3 corrupted copies, built from 16 tiles of 512^2 (corrupting per tile is faster)."""
    gts, copies = [], [[] for _ in range(3)]
    for t in range(16):
        gt, _ = nuclei_labels((512, 512), HARD, seed=seed + t, first_label=1 + 10_000 * t)
        gts.append(gt)
        for k in range(3):
            copies[k].append(corrupt_labels(gt, level, seed=100 * t + k))
    grid = lambda tiles: np.block([tiles[r * 4 : r * 4 + 4] for r in range(4)])  # noqa: E731
    return grid(gts), [grid(c) for c in copies]


def timing() -> None:
    gt, copies = _big(1, 0.2)
    t = time.perf_counter()
    fused = fuse(copies, 2, 0.5)
    print(
        f"\n4. fuse 3 x 2048^2 ({len(np.unique(gt)) - 1} true objects -> {fused.stats['n_consensus']} fused): "
        f"{time.perf_counter() - t:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=24)
    args = parser.parse_args()
    round_trip_table()
    consensus_table(args.tiles)
    timing()


if __name__ == "__main__":
    main()
