"""Write whole-slide rasters as tiled, pyramidal OME-TIFF from row bands, never holding the whole raster.

The caller supplies `bands(step)`: consecutive row bands of the image subsampled by `step` (1 for full
resolution, 2, 4, ... for the pyramid levels), each band a multiple of the tile height except the last.
Level 0 goes in the main IFD, the reduced levels in its SubIFDs (the layout QuPath, napari and OME readers
expect). Reduced levels are subsampled (nearest pixel), which keeps label values intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from csrefiner.io import atomic_path

TILE = 256
Bands = Callable[[int], Iterable[np.ndarray]]


def pyramid_steps(shape: tuple[int, int], smallest: int = 1024) -> list[int]:
    """Subsampling steps 1, 2, 4, ... until the longest side fits in `smallest` pixels."""
    steps = [1]
    while max(shape) // steps[-1] > smallest:
        steps.append(steps[-1] * 2)
    return steps


def _tiles(bands: Iterable[np.ndarray], width: int, tile: int) -> Iterator[np.ndarray]:
    """Cut row bands into tiles in the row-major order TIFF stores them (copies, so no band outlives its row)."""
    pending = None
    for band in bands:
        if pending is not None:
            band = np.concatenate([pending, band])
        full = band.shape[0] // tile * tile
        for y in range(0, full, tile):
            for x in range(0, width, tile):
                yield band[y : y + tile, x : x + tile].copy()
        pending = band[full:].copy() if full < band.shape[0] else None
        del band  # before the next band is made: one band in memory at a time
    if pending is not None:
        for x in range(0, width, tile):
            yield pending[:, x : x + tile].copy()


def write_pyramid(
    path: str | os.PathLike,
    shape: tuple[int, int],
    dtype,
    bands: Bands,
    steps: list[int] | None = None,
    rgb: bool = False,
    force: bool = False,
    tile: int = TILE,
    level: int = 6,
    pixel_size_um: float | None = None,
) -> Path:
    """Write an OME-TIFF (zlib, horizontal predictor) atomically; `steps` defaults to `pyramid_steps(shape)`.

    A known pixel size goes into the OME-XML (PhysicalSizeX/Y) and into every level's TIFF resolution tags
    (level k: size x its step), so readers of either kind scale every level right."""
    import tifffile

    from csrefiner.io.frames import ome_physical_size, tiff_resolution

    steps = pyramid_steps(shape) if steps is None else steps
    dtype = np.dtype(dtype)
    options = dict(
        tile=(tile, tile), compression="zlib", compressionargs={"level": level}, predictor=True,
        photometric="rgb" if rgb else "minisblack",
    )
    extra = (3,) if rgb else ()
    with atomic_path(path, force=force) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            for i, step in enumerate(steps):
                level_shape = (-(-shape[0] // step), -(-shape[1] // step)) + extra
                meta = {"axes": "YXS" if rgb else "YX", **ome_physical_size(pixel_size_um)}
                first = dict(subifds=len(steps) - 1, metadata=meta) if i == 0 else {}
                tif.write(
                    _tiles(bands(step), level_shape[1], tile), shape=level_shape, dtype=dtype,
                    subfiletype=0 if i == 0 else 1, **first, **options, **tiff_resolution(pixel_size_um, step),
                )
    return Path(path)


class ScratchCanvas:
    """A uint32 (H, W) raster in a temporary file, mapped one row band at a time.

    Only the band being painted is mapped, and it is unmapped when done, so resident memory is one band
    however large the slide. The file is created sparse (zeros cost nothing until written).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int]):
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        with open(self.path, "wb") as fh:
            fh.truncate(self.shape[0] * self.shape[1] * 4)

    def band(self, y0: int, y1: int, writable: bool = True) -> np.memmap:
        """Rows [y0, y1) as a memmap; `del` it (after `flush`) to release the pages."""
        return np.memmap(self.path, dtype=np.uint32, mode="r+" if writable else "r",
                         offset=y0 * self.shape[1] * 4, shape=(y1 - y0, self.shape[1]))

    def bands(self, step: int, rows: int, lut: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Row bands of the canvas subsampled by `step`, each `rows` output rows high, mapped through `lut`."""
        h = self.shape[0]
        for y0 in range(0, h, rows * step):
            y1 = min(h, y0 + rows * step)
            mapped = self.band(y0, y1, writable=False)
            band = np.array(mapped[::step, ::step])
            del mapped
            if lut is not None:
                band = lut[band]
            yield band
            del band

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
