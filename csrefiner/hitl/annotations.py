"""`csrefiner annotations to-masks / to-geojson` on files: QuPath GeoJSON <-> CSRefiner `-mask.tif`.

Coordinates are those of the image the GeoJSON belongs to (origin "image", QuPath's default when the patch is
opened on its own). With origin "slide" they are slide coordinates: the patch's position is read from its
CSRefiner name (`chipA-x512_y768_w256_h256-img.tif`) and subtracted (to-masks) or added (to-geojson).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.hitl.geojson import (
    DEFAULT_CLASS,
    DEFAULT_COLOR,
    features_to_labels,
    labels_to_features,
    read_features,
    select,
)
from csrefiner.io import (
    atomic_path,
    check_outputs,
    check_writable,
    outputs_together,
    parse_coords,
    read_image,
    read_labels,
    sample_key,
    write_image,
    write_labels,
)
from csrefiner.models.data import check_instance_mask

ORIGINS = ("image", "slide")
GEOJSON_SUFFIXES = (".geojson", ".json")


def geojson_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The given files, with folders expanded to their *.geojson / *.json files (sorted)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in GEOJSON_SUFFIXES)
            if not found:
                raise CsrefinerError(f"{p}: no .geojson or .json file in this folder")
            files += found
        else:
            files.append(p)
    return files


def origin_offset(name: str | os.PathLike, origin: str) -> tuple[int, int]:
    """(x, y) of the patch in the slide for origin "slide", (0, 0) for "image"."""
    if origin not in ORIGINS:
        raise CsrefinerError(f"--origin {origin!r}: choose one of {', '.join(ORIGINS)}")
    if origin == "image":
        return 0, 0
    coords = parse_coords(Path(name).name)
    if coords is None:
        raise CsrefinerError(
            f"{name}: --origin slide needs the patch position in the name (<slide>-x{{X}}_y{{Y}}_w{{W}}_h{{H}}-img.tif)"
        )
    return coords.x, coords.y


def to_masks(
    geojson: Sequence[str | os.PathLike],
    image: str | os.PathLike,
    out_dir: str | os.PathLike,
    origin: str = "image",
    object_types: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    use_nucleus: bool = False,
    lenient: bool = False,
    with_image: bool = False,
    force: bool = False,
) -> dict:
    """Rasterise the features of GeoJSON file(s) into out_dir/<key>-mask.tif (key and shape from `image`)."""
    key = sample_key(image)
    out_dir = Path(out_dir)
    mask_path, img_path = out_dir / f"{key}-mask.tif", out_dir / f"{key}-img.tif" if with_image else None
    check_outputs([*geojson, image], [mask_path, img_path])
    for path in (mask_path, img_path):
        check_writable(path or mask_path, force)
    pixels = read_image(image)
    offset = origin_offset(image, origin)
    features = [f for path in geojson_files(geojson) for f in read_features(path)]
    chosen, notes = select(features, object_types, classes)
    labels, more = features_to_labels(chosen, pixels.shape[:2], offset, lenient, use_nucleus)
    with outputs_together(mask_path, img_path):
        write_labels(mask_path, labels, force=force)
        if img_path is not None:
            write_image(img_path, pixels, force=force)
    return {
        "mask": mask_path,
        "image": img_path,
        "n_features": len(features),
        "n_objects": int(labels.max()),
        "notes": notes + more,
    }


def parse_color(text: str) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise CsrefinerError(f"--color {text!r}: give red,green,blue in 0..255, e.g. 0,200,255")
    return rgb


def to_geojson(
    mask: str | os.PathLike,
    out: str | os.PathLike,
    object_type: str = "annotation",
    class_name: str = DEFAULT_CLASS,
    color: Sequence[int] = DEFAULT_COLOR,
    origin: str = "image",
    force: bool = False,
) -> dict:
    """One QuPath feature per object of a label mask, written as a GeoJSON FeatureCollection."""
    out = check_writable(out, force)
    labels = read_labels(mask)
    check_instance_mask(labels, str(mask))  # a binary mask would become one object per value, not per blob
    offset = origin_offset(mask, origin)
    collection = labels_to_features(labels, object_type, class_name, color, offset, key=sample_key(mask))
    with atomic_path(out, force=force) as tmp:
        tmp.write_text(json.dumps(collection))
    return {"out": out, "n_objects": len(collection["features"])}
