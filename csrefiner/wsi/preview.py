"""A PNG overview of a stitched label image: every object in its own colour, tile seams drawn in grey.

Made from the pyramid's smallest level, so it costs a few MB whatever the slide size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.io import write_image
from csrefiner.wsi.manifest import Manifest


def label_colours(labels: np.ndarray) -> np.ndarray:
    """Random-looking but stable colour per label (Knuth's multiplicative hash); background black."""
    hashed = (labels.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFF)
    rgb = np.stack([(hashed >> np.uint64(s)) & np.uint64(0xFF) for s in (16, 8, 0)], axis=-1).astype(np.uint8)
    rgb = np.maximum(rgb, 60)  # no object as dark as the background
    rgb[labels == 0] = 0
    return rgb


def write_preview(
    labels_path: str | os.PathLike, manifest: Manifest, png: str | os.PathLike, force: bool = False
) -> Path:
    import tifffile

    with tifffile.TiffFile(labels_path) as tif:
        small = tif.series[0].levels[-1].asarray()
    rgb = label_colours(small)
    sy, sx = small.shape[0] / manifest.shape[0], small.shape[1] / manifest.shape[1]
    for tile in manifest.tiles:  # core borders are where ownership changes hands
        y0, _, x0, _ = tile.core
        if y0 > 0:
            rgb[min(int(y0 * sy), small.shape[0] - 1), :] = 128
        if x0 > 0:
            rgb[:, min(int(x0 * sx), small.shape[1] - 1)] = 128
    return write_image(png, rgb, force=force)
