"""`csrefiner suggest`: rank patches by how much the models disagree and write the top N, ready to annotate.

Each tile is fused once (csrefiner.hitl.consensus); the tile is cut into patch-size windows (the last window
of a row or column is moved back to end at the tile's edge, so nothing is left out); every window gets the
disagreement score of csrefiner.hitl.disagreement. The top N windows are written as CSRefiner patches named
`<slide>-x{X}_y{Y}_w{W}_h{H}-img.tif` with the consensus as `-mask.tif`, the starting mask to correct.
X, Y are slide coordinates when the tile's own name carries them (`chipA-x2048_y0_w2048_h2048`), else
coordinates inside the tile (the tile's name is then the slide name).

Windows overlapping a patch already annotated (csrefiner.hitl.exclude) are ranked but never proposed, and the
proposed windows never overlap one another, so no pixel is offered for annotation twice. With `pseudo` > 0 the
windows where the models agree best (and found objects) are written too, as consensus pseudo-labels
(`pseudo/`, the "easy" patches of `finetune --pseudo`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from csrefiner.hitl.batch import check_votes
from csrefiner.hitl.consensus import fuse
from csrefiner.hitl.disagreement import disagreement
from csrefiner.hitl.exclude import Exclusion, overlaps
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
        (slice(y, y + h), slice(x, x + w)) for y in window_starts(shape[0], size) for x in window_starts(shape[1], size)
    ]


def _renumber(labels: np.ndarray) -> np.ndarray:
    return sequential(labels)[0].reshape(labels.shape).astype(np.uint32)


def _rank_key(row: dict) -> tuple:
    return (-row["disagreement"], -row["unmatched_share"], row["name"])


def _easy_key(row: dict) -> tuple:
    """Most agreed first; among equal scores the window with more consensus objects."""
    return (row["disagreement"], row["unmatched_share"], -row["n_consensus"], row["name"])


def _tile_rows(key, stack, image, fused, size, iou, names, excluded: Exclusion):
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
            "name": patch_name(slide, x0 + x, y0 + y, w, h),
            "tile": key,
            "x": x0 + x,
            "y": y0 + y,
            "w": w,
            "h": h,
            **score,
            **{f"n_objects_{n}": int(sequential(c)[1].size) for n, c in zip(names, crops)},
            "n_consensus": int(cons.max()),
        }
        row["excluded_by"] = excluded.hit(parse_coords(row["name"])) or ""
        yield row, {"image": image[box], "mask": cons, "models": crops}


def _top(candidates: list, n: int, taken: list | None = None) -> list:
    """The n best candidates (rank key, row, crops) that overlap neither each other nor `taken` (rows); one per
    patch name (overlapping tiles can yield the same window twice)."""
    chosen = [parse_coords(r["name"]) for r in taken or []]
    out = []
    for cand in sorted(candidates, key=lambda c: c[0]):
        if len(out) == n:
            break
        where = parse_coords(cand[1]["name"])
        if not any(overlaps(where, c) for c in chosen):
            chosen.append(where)
            out.append(cand)
    return out


def _write_pairs(folder, chosen: list) -> None:
    folder.mkdir()
    for _, row, crops in chosen:
        write_image(folder / f"{row['name']}-img.tif", crops["image"])
        write_labels(folder / f"{row['name']}-mask.tif", crops["mask"])


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
    excluded: Exclusion | None = None,
    pseudo: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Write out/patches/ (top N image + consensus mask pairs), ranking.csv, suggest.png, summary.json (and
    out/pseudo/ with the `pseudo` most agreed windows).

    Returns the ranking of every patch and the summary (with notes about skipped tiles)."""
    check_writable(out, force)
    tiles, notes = align_predictions(preds, skip_missing)
    k = check_votes(min_votes, len(preds))
    images = image_index(image_dir)
    excluded = excluded or Exclusion()
    rows, best, easy = [], [], []  # best / easy: (key, row, crops) of the current top N / most agreed windows
    for tile in track(tiles, "suggest"):
        stack = load_tile(tile)
        image = tile_image(images, tile, stack[0].shape, image_dir)
        fused = fuse(stack, k, iou, names)
        for row, crops in _tile_rows(tile.key, stack, image, fused, patch_size, iou, names, excluded):
            rows.append(row)
            if not row["excluded_by"]:
                best.append((_rank_key(row), row, crops))
                if pseudo and row["n_consensus"]:
                    easy.append((_easy_key(row), row, crops))
        best = _top(best, top)
        easy = _top(easy, pseudo + 4 * top) if pseudo else []  # spares for those a top window overlaps
    easy = _top(easy, pseudo, [r for _, r, _ in best])
    warnings = []
    if len(easy) < pseudo:  # the pool runs out in late rounds: say so instead of leaving finetune an empty folder
        warnings.append(
            f"--pseudo {pseudo}: only {len(easy)} windows are left that are neither suggested nor excluded and hold "
            "a consensus object" + ("; no pseudo/ folder written, train without --pseudo" if not easy else "")
        )
    ranking = _ranking(rows, [r for _, r, _ in best], [r for _, r, _ in easy])
    with atomic_dir(out, force=force) as tmp:
        _write_pairs(tmp / "patches", best)
        if easy:
            _write_pairs(tmp / "pseudo", easy)
        panels = [
            {"rank": rank, "name": row["name"], "disagreement": row["disagreement"], **crops}
            for rank, (_, row, crops) in enumerate(best[:SHEET_PANELS], start=1)
        ]
        ranking.to_csv(tmp / "ranking.csv", index=False)
        suggestion_sheet(panels, names, tmp / "suggest.png")
        summary = {
            "models": dict(zip(names, map(str, preds))),
            "min_votes": k,
            "iou": iou,
            "patch_size": patch_size,
            "n_tiles": len(tiles),
            "n_patches_ranked": len(ranking),
            "top": [r["name"] for _, r, _ in best],
            "pseudo": [r["name"] for _, r, _ in easy],
            "excluded": {
                "sources": excluded.sources,
                "n_patches": len(excluded.names),
                "n_windows": int((ranking.excluded_by != "").sum()),
            },
            "skipped": notes,
            "warnings": warnings,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return ranking, summary


def _ranking(rows: list[dict], top: list[dict], easy: list[dict]) -> pd.DataFrame:
    """Every window, proposable ones first in rank order, then the excluded ones (with the patch they overlap)."""
    order = sorted(range(len(rows)), key=lambda i: (bool(rows[i]["excluded_by"]), _rank_key(rows[i])))
    ranking = pd.DataFrame(rows, columns=list(rows[0]) if rows else None).iloc[order].reset_index(drop=True)
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    first = ~ranking.duplicated(["name"])  # the best-ranked copy of a window that two tiles share
    ranking.insert(1, "selected", ranking.name.isin({r["name"] for r in top}) & first)
    ranking.insert(2, "pseudo", ranking.name.isin({r["name"] for r in easy}) & first)
    ranking.insert(3, "excluded", ranking.excluded_by != "")
    return ranking
