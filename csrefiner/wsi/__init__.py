"""Whole slides: lazy tiled reading, the tile grid and manifest, patch cropping, seam-free stitching."""

from csrefiner.wsi.crop import crop_slide
from csrefiner.wsi.manifest import Manifest
from csrefiner.wsi.reader import Slide, open_slide
from csrefiner.wsi.stitch import StitchReport, stitch_tiles
from csrefiner.wsi.tile import tile_slide
from csrefiner.wsi.tiling import Tile, plan_tiles
from csrefiner.wsi.writer import write_pyramid

__all__ = [
    "Manifest",
    "Slide",
    "StitchReport",
    "Tile",
    "crop_slide",
    "open_slide",
    "plan_tiles",
    "stitch_tiles",
    "tile_slide",
    "write_pyramid",
]
