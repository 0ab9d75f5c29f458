"""`csrefiner demo`: the steps that exist, end to end, on data generated on the spot.

Generated hard-region patches (dense, touching, blurred nuclei) are segmented by a naive threshold baseline and
by a seeded watershed, then `evaluate` compares the two with paired statistics.
"""

from __future__ import annotations

import time
from pathlib import Path

from csrefiner.io import atomic_dir, patch_name, write_image, write_labels
from csrefiner.metrics.evaluate import evaluate_folders
from csrefiner.metrics.report import write_evaluation
from csrefiner.models.classical import threshold_components, watershed_nuclei
from csrefiner.progress import track
from csrefiner.synth import HARD, nuclei_image


def run_demo(out: Path, n_patches: int = 12, size: int = 256, seed: int = 0, force: bool = False) -> dict:
    start = time.perf_counter()
    with atomic_dir(out, force=force) as tmp:
        segmenters = {"threshold": threshold_components, "watershed": watershed_nuclei}
        for folder in ("patches", *segmenters):
            (tmp / folder).mkdir()
        for i in track(range(n_patches), "generate and segment"):
            img, gt = nuclei_image((size, size), HARD, seed + i)
            key = patch_name("demo", 0, i * size, size, size)
            write_image(tmp / "patches" / f"{key}-img.tif", img)
            write_labels(tmp / "patches" / f"{key}-mask.tif", gt)
            for name, fn in segmenters.items():
                write_labels(tmp / name / f"{key}-mask.tif", fn(img))
        results = []
        for name in segmenters:
            results += evaluate_folders(tmp / "patches", tmp / name, name)
        info = write_evaluation(results, tmp / "evaluation", iou=0.5)
    info["seconds"] = round(time.perf_counter() - start, 1)
    return info
