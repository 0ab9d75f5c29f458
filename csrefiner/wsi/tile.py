"""Cut a whole slide into overlapping tiles (for per-tile segmentation) plus the manifest `stitch` needs.

Tile files are `<slide>-x<X>_y<Y>_w<W>_h<H>-img.tif` (W, H: the tile's real size; edge tiles are ragged, not
padded), so a segmenter that keeps the sample key writes `<...>-mask.tif` that `stitch` finds by name.
"""

from __future__ import annotations

import os
from pathlib import Path

from csrefiner.io import atomic_dir, safe_name, write_image
from csrefiner.io.frames import resolve_pixel_size
from csrefiner.progress import track
from csrefiner.wsi.manifest import Manifest
from csrefiner.wsi.reader import open_slide
from csrefiner.wsi.tiling import check_grid, check_plan

MANIFEST = "manifest.json"


def tile_slide(
    image: str | os.PathLike,
    out: str | os.PathLike,
    tile_size: int = 2048,
    overlap: int = 128,
    name: str | None = None,
    force: bool = False,
    pixel_size_um: float | None = None,
) -> Manifest:
    """Write every tile of `image` and `manifest.json` into the folder `out` (created atomically).

    The pixel size (`pixel_size_um`, else what the slide says) goes into the manifest and every tile."""
    check_grid(tile_size, overlap, "--tile-size/--overlap")
    if name is not None:
        safe_name(name, "--name")
    um = resolve_pixel_size(pixel_size_um, image)
    with open_slide(image) as slide:
        check_plan(slide.shape, tile_size, overlap, "--tile-size/--overlap")
        manifest = Manifest(
            slide=name or safe_name(slide.name, f"{image}: slide name (set one with --name)"),
            source=str(image),
            shape=tuple(slide.shape),
            dtype=str(slide.dtype),
            channels=slide.channels,
            tile_size=tile_size,
            overlap=overlap,
            pixel_size_um=um,
        )
        with atomic_dir(out, force=force) as tmp:
            for tile in track(manifest.tiles, "tiling", unit="tiles"):
                write_image(
                    Path(tmp) / manifest.image_name(tile), slide.read(tile.y, tile.x, tile.h, tile.w), pixel_size_um=um
                )
            manifest.save(Path(tmp) / MANIFEST)
    return manifest
