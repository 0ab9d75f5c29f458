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

from csrefiner.demo import layout as L
from csrefiner.demo.data import read_spec
from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_dir, parse_coords, read_image, read_labels, safe_name, write_labels

ANNOTATE_JSON = "annotate.json"


def in_hard_region(hard_x0: int, x: int, w: int) -> bool:
    return x + w / 2 >= hard_x0


def suggested_names(suggested: Path) -> list[str]:
    """The patch names `suggest` picked (its summary.json), each a safe slide-coordinate name."""
    path = Path(suggested) / "summary.json"
    if not path.is_file():
        raise CsrefinerError(f"{suggested}: no summary.json; give the folder `csrefiner suggest --out` wrote")
    try:
        names = json.loads(path.read_text())["top"]
        names = [safe_name(str(n), f"{path}: patch name") for n in names]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CsrefinerError(
            f"{path}: no readable list of patches ('top'; {exc!r}); run `csrefiner suggest` again"
        ) from None
    for name in names:
        if parse_coords(name) is None or not (Path(suggested) / "patches" / f"{name}-img.tif").is_file():
            raise CsrefinerError(
                f"{path}: patch {name!r} has no slide coordinates or no patches/{name}-img.tif; "
                "run `csrefiner suggest` again"
            )
    return names


def check_same_slide(patch: Path, slide: np.ndarray, c, slide_path: Path) -> None:
    """A patch of another slide would silently get this slide's ground truth: its pixels must be the slide's."""
    box = slide[c.y : c.y + c.h, c.x : c.x + c.w]
    if box.shape[:2] != (c.h, c.w) or not np.array_equal(read_image(patch)[: c.h, : c.w], box):
        raise CsrefinerError(
            f"{patch}: not the pixels of {slide_path} at x={c.x} y={c.y}; these patches come from "
            "another slide (or another `demo data` seed): give the --data folder they were cut from"
        )


def annotate(
    suggested: Path, gt_mask: Path, config: dict, out: Path, force: bool = False, slide_image: Path | None = None
) -> dict:
    """Copy suggested/patches/<name>-img.tif and write <name>-mask.tif from the slide's ground truth."""
    suggested = Path(suggested)
    if "hard_x0" not in config:
        raise CsrefinerError(f"demo config without 'hard_x0' ({sorted(config)}); run `csrefiner demo data` again")
    names = suggested_names(suggested)
    labels = read_labels(gt_mask)
    slide = read_image(slide_image) if slide_image is not None else None
    hard = 0
    for name in names:
        c = parse_coords(name)
        if c.y + c.h > labels.shape[0] or c.x + c.w > labels.shape[1]:
            raise CsrefinerError(f"{name}: outside the ground truth {gt_mask} ({labels.shape}); wrong slide?")
        if slide is not None:
            check_same_slide(suggested / "patches" / f"{name}-img.tif", slide, c, slide_image)
    with atomic_dir(out, force=force) as tmp:
        for name in names:
            c = parse_coords(name)
            shutil.copy(suggested / "patches" / f"{name}-img.tif", tmp / f"{name}-img.tif")
            box = labels[c.y : c.y + c.h, c.x : c.x + c.w]
            write_labels(tmp / f"{name}-mask.tif", relabel_sequential(box)[0].astype(np.uint32))
            hard += in_hard_region(config["hard_x0"], c.x, c.w)
        info = {"patches": names, "selected": len(names), "in_hard_region": int(hard)}
        (tmp / ANNOTATE_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return info


def annotate_from_data(suggested: Path, data_dir: Path, out: Path, force: bool = False) -> dict:
    """`demo annotate`: the suggested patches, with the ground truth of the `demo data` folder's slide."""
    data_dir = Path(data_dir)
    spec = read_spec(data_dir)
    gt, slide = data_dir / Path(L.SLIDE_GT).name, data_dir / Path(L.SLIDE_IMAGE).name
    return annotate(suggested, gt, spec["config"], out, force, slide)
