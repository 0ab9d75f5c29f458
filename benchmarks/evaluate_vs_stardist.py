"""Time csrefiner's matching against stardist.matching on the same 2048x2048 label pairs (~5,000 objects).

Prints a table; run with `.venv/bin/python benchmarks/evaluate_vs_stardist.py [--pairs 3]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.segmentation import expand_labels

from csrefiner.metrics.matching import matching
from csrefiner.synth import EASY, nuclei_labels


def pairs(n: int):
    style = EASY
    for seed in range(n):
        gt, _ = nuclei_labels((2048, 2048), style, seed)
        rng = np.random.default_rng(seed)
        pred = gt.copy()
        drop = rng.choice(np.unique(gt)[1:], size=gt.max() // 10, replace=False)
        pred[np.isin(pred, drop)] = 0
        yield gt, expand_labels(pred, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    from stardist.matching import matching as stardist_matching

    stardist_matching(*next(pairs(1)), thresh=0.5)  # numba warm-up outside the timing
    print(f"{'pair':>4} {'objects':>8} {'stardist s':>10} {'csrefiner s':>11} {'speed-up':>8} {'same F1':>7}")
    ratios = []
    for i, (gt, pred) in enumerate(pairs(args.pairs)):
        t0 = time.perf_counter()
        ref = stardist_matching(gt, pred, thresh=0.5)
        t1 = time.perf_counter()
        ours = matching(gt, pred, 0.5)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
        same = abs(ref.f1 - ours["f1"]) < 1e-12 and ref.tp == ours["tp"]
        print(f"{i:>4} {int(gt.max()):>8} {t1 - t0:>10.2f} {t2 - t1:>11.3f} {ratios[-1]:>7.0f}x {str(same):>7}")
    print(f"median speed-up: {np.median(ratios):.0f}x")


if __name__ == "__main__":
    main()
