"""Find images, masks and predictions that belong together, by CSRefiner's naming or by shared stems.

CSRefiner names annotated patches `<name>-img.tif` and `<name>-mask.tif`; `<name>` may carry the patch's slide
coordinates (`chipA-x512_y512_w256_h256`). Predictions written by csrefiner keep that `<name>`, so everything
is paired by one *sample key*: the file stem without its role suffix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.io.images import is_image_file

ROLE_SUFFIXES = ("-img", "-mask", "-pred", "_cp_masks", "_masks", "_mask", "_img")
_COORDS = re.compile(r"^(?P<slide>.*?)-?x(?P<x>\d+)_y(?P<y>\d+)_w(?P<w>\d+)_h(?P<h>\d+)$")


def file_stem(path: str | os.PathLike) -> str:
    """Stem without any image extension (`a.ome.tif` -> `a`)."""
    name = Path(path).name
    lower = name.lower()
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg"):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def sample_key(path: str | os.PathLike) -> str:
    """The name that pairs an image, its ground truth and every prediction of it."""
    stem = file_stem(path)
    for suffix in ROLE_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def role(path: str | os.PathLike) -> str | None:
    stem = file_stem(path)
    if stem.endswith("-img"):
        return "img"
    if stem.endswith("-mask"):
        return "mask"
    return None


@dataclass(frozen=True)
class SlideCoords:
    slide: str
    x: int
    y: int
    w: int
    h: int


def parse_coords(name: str) -> SlideCoords | None:
    """Slide coordinates from a patch name like `chipA-x512_y512_w256_h256-img.tif`, or None."""
    match = _COORDS.match(sample_key(name))
    if not match:
        return None
    g = match.groupdict()
    return SlideCoords(g["slide"], int(g["x"]), int(g["y"]), int(g["w"]), int(g["h"]))


def patch_name(slide: str, x: int, y: int, w: int, h: int) -> str:
    """The sample key of a patch cut from `slide` at (x, y) with size (w, h)."""
    return f"{slide}-x{x}_y{y}_w{w}_h{h}"


def safe_name(name: str, what: str) -> str:
    """A name that becomes part of file names (slide, patch, sample key): one plain path component.

    Separators or `..` would put files outside the output folder (and outside its atomic write); a leading dot
    would hide them from every folder listing of csrefiner.
    """
    if not name or any(c in name for c in "/\\\0") or ".." in name or name.startswith("."):
        raise CsrefinerError(
            f"{what} {name!r}: not usable in file names (empty, a path separator, '..' or a leading dot); "
            "use letters, digits, '-' and '_'"
        )
    return name


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CsrefinerError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise CsrefinerError(f"{folder}: no images (.tif/.tiff/.png/.jpg) in this folder")
    return files


def index_by_key(files: list[Path], what: str) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in files:
        key = sample_key(path)
        if key in index:
            raise CsrefinerError(f"{what}: {index[key].name} and {path.name} both stand for sample '{key}'; keep one")
        index[key] = path
    return index


def image_mask_pairs(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(key, image, mask) for a CSRefiner-style folder of `<name>-img.*` / `<name>-mask.*` files."""
    files = list_images(folder)
    images = index_by_key([p for p in files if role(p) == "img"], f"{folder} (images)")
    masks = index_by_key([p for p in files if role(p) == "mask"], f"{folder} (masks)")
    if not images and not masks:
        raise CsrefinerError(f"{folder}: no '<name>-img.tif' / '<name>-mask.tif' pairs; name patches that way")
    lonely = sorted(set(images) ^ set(masks))
    if lonely:
        names = ", ".join((images.get(k) or masks[k]).name for k in lonely[:5])
        raise CsrefinerError(f"{folder}: {len(lonely)} file(s) without their partner image/mask: {names}")
    return [(k, images[k], masks[k]) for k in sorted(images)]


def pair_folders(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(key, ground truth, prediction) for two folders paired by sample key.

    Ground-truth folders may mix `-img` and `-mask` files (CSRefiner layout): only masks count as truth there.
    Every prediction needs its ground truth and every ground truth its prediction.
    """
    gt_files = list_images(gt_dir)
    if any(role(p) == "mask" for p in gt_files):
        gt_files = [p for p in gt_files if role(p) != "img"]
    gt = index_by_key(gt_files, str(gt_dir))
    pred = index_by_key([p for p in list_images(pred_dir) if role(p) != "img"], str(pred_dir))
    no_gt = sorted(set(pred) - set(gt))
    if no_gt:
        names = ", ".join(pred[k].name for k in no_gt[:5])
        raise CsrefinerError(f"{pred_dir}: {len(no_gt)} prediction(s) without ground truth in {gt_dir}: {names}")
    no_pred = sorted(set(gt) - set(pred))
    if no_pred:
        names = ", ".join(gt[k].name for k in no_pred[:5])
        raise CsrefinerError(f"{pred_dir}: no prediction for {len(no_pred)} ground-truth mask(s) of {gt_dir}: {names}")
    return [(k, gt[k], pred[k]) for k in sorted(gt)]
