"""Time csrefiner's matching and evaluation against stardist.matching on the same label pairs, at 512, 1024 and
2048 px (~300, ~1,250, ~5,000 objects; the prediction drops 10% of the cells and grows the rest by 1 px).

Two comparisons, timed in the same run, interleaved, best of `--repeat` per pair:
- one threshold: `csrefiner.metrics.matching.matching(gt, pred, 0.5)` vs `stardist.matching.matching(gt, pred, 0.5)`;
- the sweep: `evaluate_arrays` (10 thresholds 0.50:0.95 + AJI+ + pixel scores) vs stardist's matching with the
  same 10 thresholds.
Every result is checked against stardist (TP and F1 at each threshold).

    .venv/bin/python benchmarks/evaluate_vs_stardist.py [--sizes 512,1024,2048] [--pairs 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.segmentation import expand_labels

from csrefiner.metrics.evaluate import evaluate_arrays
from csrefiner.metrics.matching import THRESHOLD_SWEEP, matching
from csrefiner.synth import EASY, nuclei_labels


def make_pair(size: int, seed: int):
    gt, _ = nuclei_labels((size, size), EASY, seed)
    rng = np.random.default_rng(seed)
    pred = gt.copy()
    drop = rng.choice(np.unique(gt)[1:], size=gt.max() // 10, replace=False)
    pred[np.isin(pred, drop)] = 0
    return gt, expand_labels(pred, 1)


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from stardist.matching import matching as stardist_matching

    stardist_matching(*make_pair(256, 99), thresh=0.5)  # numba compilation outside the timing
    evaluate_arrays(*make_pair(256, 99), THRESHOLD_SWEEP)
    print(
        "| size | objects | stardist 1 thr ms | csrefiner matching ms | speed-up | stardist 10 thr ms | "
        "csrefiner evaluate ms | speed-up | same TP/F1 |\n|---|---|---|---|---|---|---|---|---|"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        rows = []
        for seed in range(args.pairs):
            gt, pred = make_pair(size, seed)
            repeat = args.repeat if size < 2048 else 1  # stardist takes seconds per call at 2048
            t_sd1, ref1 = best(lambda: stardist_matching(gt, pred, thresh=0.5), repeat)
            t_us1, ours1 = best(lambda: matching(gt, pred, 0.5), args.repeat)
            t_sd10, ref10 = best(lambda: stardist_matching(gt, pred, thresh=THRESHOLD_SWEEP), repeat)
            t_us10, res = best(lambda: evaluate_arrays(gt, pred, THRESHOLD_SWEEP), args.repeat)
            same = (
                ref1.tp == ours1["tp"]
                and abs(ref1.f1 - ours1["f1"]) < 1e-12
                and all(
                    r.tp == res.counts[t].tp and abs(r.f1 - res.counts[t].scores()["f1"]) < 1e-12
                    for r, t in zip(ref10, THRESHOLD_SWEEP)
                )
            )
            rows.append((int(gt.max()), t_sd1, t_us1, t_sd10, t_us10, same))
        n, sd1, us1, sd10, us10 = (np.median([r[i] for r in rows]) for i in range(5))
        print(
            f"| {size} | {n:,.0f} | {sd1 * 1e3:.1f} | {us1 * 1e3:.1f} | {sd1 / us1:.1f}x | {sd10 * 1e3:.1f} | "
            f"{us10 * 1e3:.1f} | {sd10 / us10:.1f}x | {all(r[5] for r in rows)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
