"""The simulated annotator: each patch `suggest` picked gets its ground truth in place of the consensus mask.

This is where a person would correct the suggested masks (e.g. in QuPath via `csrefiner annotations`); the
demo's generated slide has exact ground truth, so the correction is perfect and instant.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from skimage.segmentation import relabel_sequential

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_dir, parse_coords, read_labels, write_labels

ANNOTATE_JSON = "annotate.json"


def in_hard_region(hard_x0: int, x: int, w: int) -> bool:
    return x + w / 2 >= hard_x0


def annotate(suggested: Path, gt_mask: Path, config: dict, out: Path, force: bool = False) -> dict:
    """Copy suggested/patches/<name>-img.tif and write <name>-mask.tif from the slide's ground truth."""
    suggested = Path(suggested)
    summary_path = suggested / "summary.json"
    if not summary_path.is_file():
        raise CsrefinerError(f"{suggested}: no summary.json; give the folder `csrefiner suggest --out` wrote")
    names = json.loads(summary_path.read_text())["top"]
    labels = read_labels(gt_mask)
    hard = 0
    with atomic_dir(out, force=force) as tmp:
        for name in names:
            c = parse_coords(name)
            if c.y + c.h > labels.shape[0] or c.x + c.w > labels.shape[1]:
                raise CsrefinerError(f"{name}: outside the ground truth {gt_mask} ({labels.shape}); wrong slide?")
            shutil.copy(suggested / "patches" / f"{name}-img.tif", tmp / f"{name}-img.tif")
            box = labels[c.y: c.y + c.h, c.x: c.x + c.w]
            write_labels(tmp / f"{name}-mask.tif", relabel_sequential(box)[0].astype(np.uint32))
            hard += in_hard_region(config["hard_x0"], c.x, c.w)
        info = {"patches": names, "selected": len(names), "in_hard_region": int(hard)}
        (tmp / ANNOTATE_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return info
