"""`csrefiner consensus` on folders: fuse every tile, write masks, agreement tables and a picture."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import pandas as pd

from csrefiner.errors import CsrefinerError
from csrefiner.hitl.consensus import OBJECT_COLUMNS, fuse
from csrefiner.hitl.inputs import align_predictions, image_index, load_tile, tile_image
from csrefiner.hitl.plots import agreement_plot
from csrefiner.io import atomic_dir, check_writable, write_image, write_labels
from csrefiner.progress import track


def check_votes(min_votes: int | None, n_models: int) -> int:
    """K of `--min-votes`, by default a majority of the models (more than half)."""
    k = n_models // 2 + 1 if min_votes is None else int(min_votes)
    if not 1 <= k <= n_models:
        raise CsrefinerError(f"--min-votes {k} is impossible with {n_models} --pred folders; give 1..{n_models}")
    return k


def consensus_folders(
    preds: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    names: Sequence[str],
    min_votes: int | None = None,
    iou: float = 0.5,
    image_dir: str | os.PathLike | None = None,
    skip_missing: bool = False,
    force: bool = False,
) -> dict:
    """Write out/patches/<key>-mask.tif (+ -img.tif with image_dir), objects.csv, tiles.csv, agreement.png,
    summary.json. Returns the summary (with the notes about skipped tiles)."""
    check_writable(out, force)
    tiles, notes = align_predictions(preds, skip_missing)
    k = check_votes(min_votes, len(preds))
    images = image_index(image_dir) if image_dir else None
    objects, rows = [], []
    with atomic_dir(out, force=force) as tmp:
        (tmp / "patches").mkdir()
        for tile in track(tiles, "consensus"):
            stack = load_tile(tile)
            image = tile_image(images, tile, stack[0].shape, image_dir) if images is not None else None
            fused = fuse(stack, k, iou, names)
            write_labels(tmp / "patches" / f"{tile.key}-mask.tif", fused.labels)
            if image is not None:
                write_image(tmp / "patches" / f"{tile.key}-img.tif", image)
            objects.append(fused.objects.assign(tile=tile.key))
            rows.append({"tile": tile.key, **fused.stats})
        table = pd.concat(objects, ignore_index=True) if objects else pd.DataFrame(columns=OBJECT_COLUMNS)
        table = table[["tile", *OBJECT_COLUMNS]]
        tile_table = pd.DataFrame(rows)
        table.to_csv(tmp / "objects.csv", index=False)
        tile_table.to_csv(tmp / "tiles.csv", index=False)
        agreement_plot(table, tile_table, tmp / "agreement.png")
        summary = {
            "models": dict(zip(names, map(str, preds))),
            "min_votes": k,
            "iou": iou,
            "n_tiles": len(tiles),
            "n_objects": int(len(table)),
            "mean_agreement": float(table.agreement.mean()) if len(table) else None,
            "mean_disagreement": float(tile_table.disagreement.mean()),
            "skipped": notes,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
