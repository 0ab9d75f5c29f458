"""Write whole-slide rasters as tiled, pyramidal OME-TIFF from row bands, never holding the whole raster.

The caller supplies `bands(step)`: consecutive row bands of the image subsampled by `step` (1 for full
resolution, 2, 4, ... for the pyramid levels), each band a multiple of the tile height except the last,
or `tiles(step)`: the level's tiles themselves (how `ScratchCanvas` keeps memory independent of the width).
Level 0 goes in the main IFD, the reduced levels in its SubIFDs (the layout QuPath, napari and OME readers
expect). Reduced levels are subsampled (nearest pixel), which keeps label values intact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from csrefiner.io import atomic_path
from csrefiner.io.stable import content_uuid

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
    bands: Bands | None,
    steps: list[int] | None = None,
    rgb: bool = False,
    force: bool = False,
    tile: int = TILE,
    level: int = 6,
    tiles: Callable[[int], Iterable[np.ndarray]] | None = None,
    pixel_size_um: float | None = None,
) -> Path:
    """Write an OME-TIFF (zlib, horizontal predictor) atomically; `steps` defaults to `pyramid_steps(shape)`.

    `tiles(step)`, when given, replaces `bands`: it yields the level's tiles in TIFF order itself (memory
    bounded by a tile, not by a band of the slide's width). A known pixel size goes into the OME-XML
    (PhysicalSizeX/Y) and into every level's TIFF resolution tags (level k: size x its step), so readers of
    either kind scale every level right.
    """
    import tifffile

    from csrefiner.io.frames import ome_physical_size, tiff_resolution

    steps = pyramid_steps(shape) if steps is None else steps
    dtype = np.dtype(dtype)
    options = dict(
        tile=(tile, tile),
        compression="zlib",
        compressionargs={"level": level},
        predictor=True,
        photometric="rgb" if rgb else "minisblack",
    )
    extra = (3,) if rgb else ()
    level0 = tiles(1) if tiles is not None else bands(1)
    ome = {
        "axes": "YXS" if rgb else "YX",
        "UUID": content_uuid(level0, shape, dtype.str, steps),  # reproducible
        **ome_physical_size(pixel_size_um),
    }
    with atomic_path(path, force=force) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            for i, step in enumerate(steps):
                level_shape = (-(-shape[0] // step), -(-shape[1] // step)) + extra
                first = dict(subifds=len(steps) - 1, metadata=ome) if i == 0 else {}
                source = tiles(step) if tiles is not None else _tiles(bands(step), level_shape[1], tile)
                tif.write(
                    source,
                    shape=level_shape,
                    dtype=dtype,
                    subfiletype=0 if i == 0 else 1,
                    **first,
                    **options,
                    **tiff_resolution(pixel_size_um, step),
                )
    return Path(path)


CHUNK = 1 << 21  # pixels the canvas reads or writes per call: bounds memory whatever the slide's size


class ScratchCanvas:
    """A uint32 (H, W) raster in a temporary sparse file, read and written by rectangles (pread / pwrite).

    Resident memory is the rectangle being worked on (a tile, or a block of at most `CHUNK` pixels), never a
    band of the slide's width. The file is created sparse (zeros cost nothing until written); file I/O rather
    than a memory map means a full disk surfaces as an OSError (ENOSPC) instead of SIGBUS.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int]):
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self.nbytes)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * 4

    def _offset(self, y: int, x: int) -> int:
        return (y * self.shape[1] + x) * 4

    def _pread(self, out: np.ndarray, offset: int) -> None:
        view = memoryview(out).cast("B")
        while view.nbytes:
            n = os.preadv(self._fd, [view], offset)
            if n <= 0:
                raise OSError(f"{self.path}: short read at byte {offset}")
            view, offset = view[n:], offset + n

    def _pwrite(self, block: np.ndarray, offset: int) -> None:
        view = memoryview(np.ascontiguousarray(block)).cast("B")
        while view.nbytes:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def read(self, y0: int, y1: int, x0: int, x1: int, step: int = 1) -> np.ndarray:
        """Pixels [y0, y1) x [x0, x1), subsampled by `step` (every step-th row and column from y0, x0)."""
        out = np.empty((-(-(y1 - y0) // step), -(-(x1 - x0) // step)), dtype=np.uint32)
        if step == 1 and x0 == 0 and x1 == self.shape[1]:
            self._pread(out, self._offset(y0, 0))  # whole rows are contiguous: one call
            return out
        row = np.empty(x1 - x0, dtype=np.uint32) if step > 1 else None
        for i, y in enumerate(range(y0, y1, step)):
            if row is None:
                self._pread(out[i], self._offset(y, x0))
            else:
                self._pread(row, self._offset(y, x0))
                out[i] = row[::step]
        return out

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        block = block.astype(np.uint32, copy=False)
        if x0 == 0 and block.shape[1] == self.shape[1]:
            self._pwrite(block, self._offset(y0, 0))
            return
        for i in range(block.shape[0]):
            self._pwrite(block[i], self._offset(y0 + i, x0))

    def blocks(self, pixels: int | None = None) -> Iterator[np.ndarray]:
        """The canvas in row-major blocks of at most `pixels` (default `CHUNK`) pixels (whole rows when a row fits)."""
        h, w = self.shape
        pixels = pixels or CHUNK
        rows, cols = max(1, pixels // w), min(w, pixels)
        for y0 in range(0, h, rows):
            for x0 in range(0, w, cols):
                yield self.read(y0, min(h, y0 + rows), x0, min(w, x0 + cols))

    def tiles(
        self, step: int, tile: int = TILE, lut: np.ndarray | None = None, pixels: int | None = None
    ) -> Iterator[np.ndarray]:
        """Tiles of the canvas subsampled by `step`, mapped through `lut`, in the row-major order TIFF stores.

        Each tile row is read in blocks of k tiles, k chosen so that a block and the canvas row it is
        subsampled from both stay within `pixels`: memory does not depend on the slide or the level.
        """
        h, w = self.shape
        pixels = pixels or CHUNK
        hs, ws = -(-h // step), -(-w // step)
        width = tile * max(1, min(pixels // (tile * tile), pixels // (tile * step)))
        for r0 in range(0, hs, tile):
            r1 = min(hs, r0 + tile)
            for c0 in range(0, ws, width):
                c1 = min(ws, c0 + width)
                block = self.read(r0 * step, min(h, r1 * step), c0 * step, min(w, c1 * step), step)
                if lut is not None:
                    block = lut[block]
                for x in range(0, c1 - c0, tile):
                    yield block[:, x : x + tile].copy()

    def remove(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
