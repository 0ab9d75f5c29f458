"""`csrefiner segment`: apply a pretrained or fine-tuned model to patches or whole-slide tiles.

Masks are written as `<key>-mask.tif` (uint32), `<key>` being the input's sample key, so `evaluate` pairs them
with ground truth and `stitch` with the tiles of its manifest.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_dir, check_writable, is_image_file, list_images, read_image, sample_key, write_labels
from csrefiner.io.pairing import index_by_key, role
from csrefiner.models import backend_names, get_backend
from csrefiner.models.base import Backend, Pretrained, Segmenter, TrainParams
from csrefiner.models.card import read_card, write_json
from csrefiner.progress import track

log = logging.getLogger(__name__)


def backend_for_name(spec: str) -> tuple[Backend, str]:
    """`backend:name`, `backend` (its default model) or a bare pretrained name that one backend knows."""
    head, sep, tail = spec.partition(":")
    if head in backend_names():
        backend = get_backend(head)
        return backend, (tail if sep and tail else backend.default_pretrained)
    owners = [b for b in backend_names() if spec in get_backend(b).known_names]
    if len(owners) == 1:
        return get_backend(owners[0]), spec
    raise CsrefinerError(
        f"--model {spec!r}: say which backend, as BACKEND:NAME (backends: {', '.join(backend_names())}), "
        "e.g. cellpose:cyto3 or stardist:2D_versatile_fluo; `csrefiner models list` shows what is here"
    )


def open_model(model_dir: Path | None, model: str | None, params: TrainParams) -> tuple[Backend, Segmenter, dict]:
    if (model_dir is None) == (model is None):
        raise CsrefinerError("give either --model-dir (a fine-tuned model folder) or --model BACKEND:NAME, not both")
    if model_dir is not None:
        card = read_card(Path(model_dir))
        backend = get_backend(card["backend"])
        source = Pretrained(str(model_dir), Path(model_dir), folder=True)
        info = {"model_dir": str(model_dir), "backend": backend.name}
    else:
        backend, name = backend_for_name(model)
        source = backend.resolve(name)
        if source.scratch:
            raise CsrefinerError("--model ...:scratch is an untrained network; fine-tune it first")
        info = {"model": f"{backend.name}:{name}", "backend": backend.name}
    backend.check_options(params.options)
    backend.check_installed()
    return backend, backend.load(source, params), info


def list_inputs(path: Path) -> list[Path]:
    """One image, or every image of a folder that is not a mask (`-mask` files sit beside patches)."""
    path = Path(path)
    if path.is_file():
        if not is_image_file(path):
            raise CsrefinerError(f"{path}: not an image file (.tif/.tiff/.png/.jpg)")
        return [path]
    images = [p for p in list_images(path) if role(p) != "mask"]
    if not images:
        raise CsrefinerError(f"{path}: only masks in this folder; give the images to segment")
    index_by_key(images, str(path))  # two files for one sample would overwrite each other's mask
    return images


def check_against_manifest(images: list[Path], manifest_path: Path) -> None:
    """Every input must be a tile of the manifest, with the tile's size (so `stitch` accepts the masks)."""
    from csrefiner.wsi.manifest import Manifest

    manifest = Manifest.load(manifest_path)
    tiles = {manifest.key(t): t for t in manifest.tiles}
    for path in images:
        tile = tiles.get(sample_key(path))
        if tile is None:
            raise CsrefinerError(
                f"{path.name}: not a tile of {manifest_path} (slide '{manifest.slide}'); "
                "segment the tiles that `csrefiner tile` wrote for this manifest"
            )


def predict_checked(segmenter: Segmenter, image, source: Path):
    labels = segmenter.predict(image)
    if labels.shape != image.shape[:2] or labels.dtype != np.uint32:
        raise CsrefinerError(
            f"{source}: model returned {labels.dtype} {labels.shape} for a {image.shape[:2]} image (backend bug)"
        )
    return labels


def segment_tiled(
    segmenter: Segmenter, path: Path, out_mask: Path, tile_size: int, overlap: int, pixel_size_um: float | None = None
) -> int:
    """A slide larger than one tile: read tile by tile, segment, stitch (bounded memory, no seams)."""
    from csrefiner.wsi.manifest import Manifest
    from csrefiner.wsi.reader import open_slide
    from csrefiner.wsi.stitch import stitch_tiles
    from csrefiner.wsi.tiling import check_grid

    check_grid(tile_size, overlap, "--tile-size/--overlap")
    with tempfile.TemporaryDirectory(prefix=f".{out_mask.name}.", dir=out_mask.parent) as scratch:
        scratch = Path(scratch)
        with open_slide(path) as slide:
            manifest = Manifest(
                slide=sample_key(path),
                source=str(path),
                shape=tuple(slide.shape),
                dtype=str(slide.dtype),
                channels=slide.channels,
                tile_size=tile_size,
                overlap=overlap,
                pixel_size_um=pixel_size_um,
            )
            for tile in track(manifest.tiles, f"segment {path.name} tile by tile"):
                region = slide.read(tile.y, tile.x, tile.h, tile.w)
                write_labels(scratch / f"{manifest.key(tile)}-mask.tif", predict_checked(segmenter, region, path))
        manifest.save(scratch / "manifest.json")
        return stitch_tiles(scratch / "manifest.json", scratch, out_mask).objects


def image_shape(path: Path) -> tuple[int, int]:
    from csrefiner.wsi.reader import open_slide

    with open_slide(path) as slide:
        return tuple(slide.shape)


def check_tiling(images: list[Path], tile_size: int, overlap: int) -> set[Path]:
    """The images to segment tile by tile, each plan checked before any model is loaded or mask written."""
    from csrefiner.wsi.tiling import check_grid, check_plan

    if not tile_size:
        return set()
    check_grid(tile_size, overlap, "--tile-size/--overlap")
    tiled = set()
    for path in images:
        shape = image_shape(path)
        if max(shape) > tile_size:
            check_plan(shape, tile_size, overlap, f"{path}: --tile-size/--overlap")
            tiled.add(path)
    return tiled


def segment(
    model_dir: Path | None,
    model: str | None,
    input_path: Path,
    out: Path,
    params: TrainParams,
    manifest: Path | None = None,
    force: bool = False,
    tile_size: int = 4096,
    overlap: int = 128,
    pixel_size_um: float | None = None,
) -> dict:
    """Segment every input; an image larger than `tile_size` on a side goes tile by tile and is stitched.

    Each mask carries its image's pixel size (or `pixel_size_um`) in its TIFF resolution tags."""
    from csrefiner.io.frames import resolve_pixel_size

    check_writable(out, force)
    images = list_inputs(input_path)
    if manifest is not None:
        check_against_manifest(images, manifest)
    tiled = check_tiling(images, tile_size, overlap)
    backend, segmenter, info = open_model(model_dir, model, params)
    start = time.perf_counter()
    counts = {}
    with atomic_dir(out, force=force) as tmp:
        for path in track(images, f"segment ({backend.name})"):
            key = sample_key(path)
            um = resolve_pixel_size(pixel_size_um, path)
            if path in tiled:
                log.info("%s: larger than %d px, segmented tile by tile (overlap %d)", path.name, tile_size, overlap)
                counts[key] = segment_tiled(segmenter, path, tmp / f"{key}-mask.tif", tile_size, overlap, um)
                continue
            labels = predict_checked(segmenter, read_image(path), path)
            write_labels(tmp / f"{key}-mask.tif", labels, pixel_size_um=um)
            counts[key] = int(np.count_nonzero(np.unique(labels)))
            log.debug("%s: %d objects", path.name, counts[key])
        info |= {"device": params.device, "images": len(images), "objects": counts, **segmenter.describe()}
        write_json(tmp / "segment.json", info)  # no timings: reruns give byte-identical files
    return info | {"seconds": round(time.perf_counter() - start, 2)}
