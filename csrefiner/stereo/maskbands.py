"""The instance mask read as bands of whole rows, never whole: a chip-sized mask (40,000 x 60,000 px is 9.6 GB
as uint32) is walked band by band, each band validated and returned as uint32.

Tiled or striped TIFFs (the pyramidal OME-TIFF that `stitch` writes is tiled 512 x 512) are decoded through
tifffile's zarr store by the slide reader; bands are whole multiples of the tile/strip height so every chunk
is decoded once per pass. A numpy array (tests, library use) is sliced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import as_labels
from csrefiner.io.images import TIFF_SUFFIXES

BAND_PIXELS = 1 << 24  # pixels per band (64 MB as uint32) unless one row of chunks is larger


def _chunk_rows(path: Path) -> int:
    """Rows decoded together (tile or strip height) in a TIFF; 1 when rows can be read one by one."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return 1
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.series[0].keyframe
            if page.is_tiled:
                return int(page.tilelength)
            if page.is_contiguous:
                return 1
            return int(min(page.rowsperstrip or page.imagelength, page.imagelength))
    except Exception:  # the slide reader below gives the real error with the file name
        return 1


def _read_ahead(read, indices) -> Iterator:
    """read(i + 1) runs in a worker while the caller works on band i (one band more in memory, 64 MB): the tiles'
    zlib decoding otherwise stalls the caller, ~25 s per pass over a 2 x 3 cm chip."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="mask-read") as pool:
        pending = None
        for band in indices:
            ahead = pool.submit(read, band)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()


class MaskBands:
    """`shape` (H, W), `name`, `rows` per band, `bands()` -> (r0, r1, uint32 rows) top to bottom."""

    def __init__(self, mask: str | os.PathLike | np.ndarray):
        self._slide = None
        if isinstance(mask, np.ndarray):
            self.name = "mask array"
            self._array = as_labels(mask, self.name)
            self.shape = self._array.shape
            chunk = 1
        else:
            from csrefiner.wsi.reader import Slide

            path = Path(mask)
            self.name = str(path)
            self._array = None
            self._slide = Slide(path)
            if self._slide.channels != 1:
                shape = (*self._slide.shape, self._slide.channels)
                self.close()
                raise CsrefinerError(
                    f"{path}: a label mask must be 2D, got shape {shape}; give the instance mask "
                    "(uint32 labels), not an image"
                )
            as_labels(np.zeros((1, 1), self._slide.dtype), self.name)  # dtype checks before reading anything
            self.shape = tuple(self._slide.shape)
            chunk = _chunk_rows(path)
        h, w = self.shape
        rows = max(1, BAND_PIXELS // max(w, 1))
        self.rows = max(1, min(h, max(chunk, rows - rows % chunk)))

    @property
    def n_bands(self) -> int:
        return -(-self.shape[0] // self.rows)

    def band_of(self, row: np.ndarray) -> np.ndarray:
        return row // self.rows

    def read(self, band: int) -> tuple[int, int, np.ndarray]:
        r0 = band * self.rows
        r1 = min(r0 + self.rows, self.shape[0])
        if self._array is not None:
            return r0, r1, self._array[r0:r1]
        return r0, r1, as_labels(self._slide.read(r0, 0, r1 - r0, self.shape[1]), self.name)

    def bands(self, description: str) -> Iterator[tuple[int, int, np.ndarray]]:
        from csrefiner.progress import track

        indices = track(range(self.n_bands), f"{description} ({self.n_bands} bands)", total=self.n_bands)
        if self._array is not None:
            yield from (self.read(band) for band in indices)
        else:
            yield from _read_ahead(self.read, indices)

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()
            self._slide = None

    def __enter__(self) -> MaskBands:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
