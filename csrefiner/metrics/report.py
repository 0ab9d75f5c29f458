"""Write an evaluation folder: per-image CSV, IoU sweep, summary JSON, paired tests, box plots, Markdown."""

from __future__ import annotations

import json
from pathlib import Path

from csrefiner.io import atomic_dir
from csrefiner.metrics.compare import box_plots, markdown, paired_tests
from csrefiner.metrics.evaluate import ImageResult, evaluate_folders, per_image_table, summary, sweep_table


def evaluate_methods(gt: Path, methods: list[tuple[str, Path]], out: Path, iou: float, force: bool = False) -> dict:
    """Every (name, prediction folder) scored against gt, written to out as write_evaluation does."""
    results = [r for name, folder in methods for r in evaluate_folders(gt, folder, name, iou)]
    return write_evaluation(results, out, iou, force=force)


def write_evaluation(results: list[ImageResult], out: Path, iou: float, force: bool = False) -> dict:
    table = per_image_table(results, iou)
    info = summary(results, table, iou)
    several = table.method.nunique() > 1
    tests = paired_tests(table) if several else None
    with atomic_dir(out, force=force) as tmp:
        table.to_csv(tmp / "per_image.csv", index=False)
        sweep_table(results).to_csv(tmp / "iou_sweep.csv", index=False)
        if tests is not None:
            tests.to_csv(tmp / "paired_tests.csv", index=False)
            info["paired_tests"] = tests.to_dict(orient="records")
        box_plots(table, tmp)
        (tmp / "summary.json").write_text(json.dumps(info, indent=2))
        (tmp / "summary.md").write_text(markdown(info, tests))
    return info
