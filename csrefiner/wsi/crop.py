"""Cut a slide (and its label mask) into fixed-size patches for annotation and training.

Unlike CSRefiner's crop, edge remainders are kept: a patch that runs past the slide edge is padded to the
full size, and its name records the *valid* extent (`<slide>-x<X>_y<Y>_w<W>_h<H>` with W, H <= size) so the
padding is never mistaken for tissue. Images are padded by reflection (or zeros); label masks are always
padded with 0 (background): reflecting a mask would mirror nuclei into the padding under duplicate ids.
`crops.json` lists every patch with its valid extent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import as_labels, atomic_dir, patch_name, safe_name, write_image, write_labels, write_text
from csrefiner.progress import track
from csrefiner.wsi.reader import Slide, open_slide
from csrefiner.wsi.tiling import axis_starts, check_plan

PAD_MODES = ("reflect", "constant")
CROPS_JSON = "crops.json"


def pad_to(patch: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Pad the bottom/right of a 2D or RGB patch to size x size (`mode` reflect or constant 0)."""
    widths = [(0, size - patch.shape[0]), (0, size - patch.shape[1])] + [(0, 0)] * (patch.ndim - 2)
    if not any(after for _, after in widths):
        return patch
    return np.pad(patch, widths, mode=mode) if mode == "reflect" else np.pad(patch, widths)


def _open_mask(mask: str | os.PathLike, slide: Slide) -> Slide:
    labels = open_slide(mask)
    if labels.shape != slide.shape:
        labels.close()
        raise CsrefinerError(
            f"{mask}: mask is {labels.shape} but the image {slide.path} is {slide.shape}; give the mask of this image"
        )
    if labels.channels != 1 or labels.dtype.kind not in "ui":
        labels.close()
        raise CsrefinerError(
            f"{mask}: {labels.dtype} with {labels.channels} channel(s) is not an instance label mask; "
            "save integer labels (0 = background)"
        )
    return labels


def check_patches(slide: Slide, size: int, stride: int) -> None:
    """A patch larger than the whole slide is padding, not data; a plan of millions of patches is a typo."""
    h, w = slide.shape
    if size > h and size > w:
        raise CsrefinerError(
            f"{slide.path}: --size {size} is larger than the whole {h} x {w} slide; use a patch "
            f"size of at most {max(h, w)} px"
        )
    check_plan(slide.shape, size, size - stride, f"{slide.path}: --size/--stride", "patches", min_size=1)


def crop_slide(
    image: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 256,
    mask: str | os.PathLike | None = None,
    stride: int | None = None,
    pad: str = "reflect",
    name: str | None = None,
    force: bool = False,
) -> list[dict]:
    """Write `<key>-img.tif` (and `<key>-mask.tif`) for every patch plus crops.json; returns the records."""
    stride = size if stride is None else stride
    if size < 1 or not 1 <= stride <= size:
        raise CsrefinerError(f"--size {size} / --stride {stride}: need size >= 1 and 1 <= stride <= size")
    if pad not in PAD_MODES:
        raise CsrefinerError(f"--pad {pad!r}: choose one of {', '.join(PAD_MODES)}")
    if name is not None:
        safe_name(name, "--name")
    with open_slide(image) as slide:
        check_patches(slide, size, stride)
        name = name or safe_name(slide.name, f"{image}: slide name (set one with --name)")
        labels = _open_mask(mask, slide) if mask is not None else None
        try:
            return _write_crops(slide, labels, Path(out), size, stride, pad, name, force)
        finally:
            if labels is not None:
                labels.close()


def _write_crops(
    slide: Slide, labels: Slide | None, out: Path, size: int, stride: int, pad: str, name: str, force: bool
) -> list[dict]:
    h, w = slide.shape
    spots = [(y, x) for y in axis_starts(h, size, size - stride) for x in axis_starts(w, size, size - stride)]
    records = []
    with atomic_dir(out, force=force) as tmp:
        for y, x in track(spots, "cropping"):
            ph, pw = min(size, h - y), min(size, w - x)
            key = patch_name(name, x, y, pw, ph)
            record = {"key": key, "x": x, "y": y, "w": pw, "h": ph, "image": f"{key}-img.tif"}
            write_image(tmp / record["image"], pad_to(slide.read(y, x, ph, pw), size, pad))
            if labels is not None:
                patch = as_labels(labels.read(y, x, ph, pw), f"{labels.path} at x={x} y={y}")
                record["mask"] = f"{key}-mask.tif"
                write_labels(tmp / record["mask"], pad_to(patch, size, "constant"))
            records.append(record)
        info = {
            "slide": name,
            "source": str(slide.path),
            "mask": str(labels.path) if labels else None,
            "shape": list(slide.shape),
            "size": size,
            "stride": stride,
            "pad": pad,
            "crops": records,
        }
        write_text(tmp / CROPS_JSON, json.dumps(info, indent=1) + "\n")
    return records
