"""`csrefiner suggest`: rank patches by how much the models disagree and write the top N, ready to annotate.

Each tile is fused once (csrefiner.hitl.consensus); the tile is cut into patch-size windows (the last window
of a row or column is moved back to end at the tile's edge, so nothing is left out); every window gets the
disagreement score of csrefiner.hitl.disagreement. The top N windows are written as CSRefiner patches named
`<slide>-x{X}_y{Y}_w{W}_h{H}-img.tif` with the consensus as `-mask.tif`, the starting mask to correct.
X, Y are slide coordinates when the tile's own name carries them (`chipA-x2048_y0_w2048_h2048`), else
coordinates inside the tile (the tile's name is then the slide name).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import pandas as pd

from csrefiner.hitl.batch import check_votes
from csrefiner.hitl.consensus import fuse
from csrefiner.hitl.disagreement import disagreement
from csrefiner.hitl.inputs import align_predictions, image_index, load_tile, tile_image
from csrefiner.hitl.plots import suggestion_sheet
from csrefiner.io import atomic_dir, check_writable, parse_coords, patch_name, write_image, write_labels
from csrefiner.metrics.overlap import sequential
from csrefiner.progress import track

SHEET_PANELS = 8


def window_starts(length: int, size: int) -> list[int]:
    """Starts of windows of `size` covering 0..length; the last one ends at the edge (may overlap)."""
    if size <= 0 or size >= length:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def windows(shape: tuple[int, int], size: int) -> list[tuple[slice, slice]]:
    h = min(size, shape[0]) if size > 0 else shape[0]
    w = min(size, shape[1]) if size > 0 else shape[1]
    return [
        (slice(y, y + h), slice(x, x + w))
        for y in window_starts(shape[0], size)
        for x in window_starts(shape[1], size)
    ]


def _renumber(labels: np.ndarray) -> np.ndarray:
    return sequential(labels)[0].reshape(labels.shape).astype(np.uint32)


def _rank_key(row: dict) -> tuple:
    return (-row["disagreement"], -row["unmatched_share"], row["name"])


def _tile_rows(key, stack, image, fused, size, iou, names):
    """(row, crops) for every window of one tile."""
    origin = parse_coords(key)
    slide, x0, y0 = (origin.slide, origin.x, origin.y) if origin else (key, 0, 0)
    for box in windows(stack[0].shape, size):
        crops = [s[box] for s in stack]
        score = disagreement(crops, iou)
        y, x = box[0].start, box[1].start
        h, w = box[0].stop - y, box[1].stop - x
        cons = _renumber(fused.labels[box])
        row = {
            "name": patch_name(slide, x0 + x, y0 + y, w, h), "tile": key, "x": x0 + x, "y": y0 + y, "w": w, "h": h,
            **score,
            **{f"n_objects_{n}": int(sequential(c)[1].size) for n, c in zip(names, crops)},
            "n_consensus": int(cons.max()),
        }
        yield row, {"image": image[box], "mask": cons, "models": crops}


def _top(candidates: list, n: int) -> list:
    """The n best candidates, one per patch name (overlapping tiles can yield the same window twice)."""
    seen, out = set(), []
    for cand in sorted(candidates, key=lambda c: c[0]):
        if cand[1]["name"] not in seen and len(out) < n:
            seen.add(cand[1]["name"])
            out.append(cand)
    return out


def suggest_folders(
    preds: Sequence[str | os.PathLike],
    image_dir: str | os.PathLike,
    out: str | os.PathLike,
    names: Sequence[str],
    top: int = 20,
    patch_size: int = 256,
    min_votes: int | None = None,
    iou: float = 0.5,
    skip_missing: bool = False,
    force: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Write out/patches/ (top N image + consensus mask pairs), ranking.csv, suggest.png, summary.json.

    Returns the ranking of every patch and the summary (with notes about skipped tiles)."""
    check_writable(out, force)
    tiles, notes = align_predictions(preds, skip_missing)
    k = check_votes(min_votes, len(preds))
    images = image_index(image_dir)
    rows, best = [], []  # best: (rank key, crops) of the current top N
    for tile in track(tiles, "suggest"):
        stack = load_tile(tile)
        image = tile_image(images, tile, stack[0].shape, image_dir)
        fused = fuse(stack, k, iou, names)
        for row, crops in _tile_rows(tile.key, stack, image, fused, patch_size, iou, names):
            rows.append(row)
            best.append((_rank_key(row), row, crops))
        best = _top(best, top)
    ranking = pd.DataFrame(rows)
    ranking = ranking.iloc[sorted(range(len(rows)), key=lambda i: _rank_key(rows[i]))].reset_index(drop=True)
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    ranking.insert(1, "selected", ranking["rank"] <= top)
    with atomic_dir(out, force=force) as tmp:
        (tmp / "patches").mkdir()
        panels = []
        for rank, (_, row, crops) in enumerate(best, start=1):
            write_image(tmp / "patches" / f"{row['name']}-img.tif", crops["image"])
            write_labels(tmp / "patches" / f"{row['name']}-mask.tif", crops["mask"])
            if rank <= SHEET_PANELS:
                panels.append({"rank": rank, "name": row["name"], "disagreement": row["disagreement"], **crops})
        ranking.to_csv(tmp / "ranking.csv", index=False)
        suggestion_sheet(panels, names, tmp / "suggest.png")
        summary = {
            "models": dict(zip(names, map(str, preds))), "min_votes": k, "iou": iou, "patch_size": patch_size,
            "n_tiles": len(tiles), "n_patches_ranked": len(ranking), "top": [r["name"] for _, r, _ in best],
            "skipped": notes,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return ranking, summary
