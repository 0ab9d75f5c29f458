"""Read rectangles of a whole slide without loading the slide.

- Tiled or striped compressed TIFF / OME-TIFF: tifffile's zarr store decodes only the chunks a rectangle
  touches, so memory is bounded by the rectangle plus a few chunks.
- Uncompressed contiguous TIFF: the pixels are mapped per read and the mapping is dropped afterwards, so
  resident memory does not grow as the slide is walked.
- PNG / JPEG cannot be read in parts: they are loaded whole (they are small by nature of those formats).

A slide is a 2D grey or RGB plane: singleton axes (T, Z, C of OME-TIFF) are indexed away; channel-first RGB
comes back channel-last.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import read_image
from csrefiner.io.images import TIFF_SUFFIXES
from csrefiner.io.pairing import sample_key

MAX_CHUNK_BYTES = 256 * 2**20  # a compressed chunk larger than this would be decoded for every tile


class Slide:
    """A lazily read slide: `shape` (H, W), `dtype`, `channels`, `read(y, x, h, w)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise CsrefinerError(f"{self.path}: no such slide file")
        self.name = sample_key(self.path)  # "chipA-img.tif" -> "chipA": tile keys stay free of role suffixes
        self._tif = None
        self._array = None
        try:
            if self.path.suffix.lower() in TIFF_SUFFIXES:
                self._open_tiff()
            else:
                self._array = read_image(self.path)
                self.shape = self._array.shape[:2]
                self.dtype = self._array.dtype
                self.channels = 3 if self._array.ndim == 3 else 1
        except CsrefinerError:
            self.close()
            raise
        except Exception as exc:  # tifffile/zarr raise many types; the user needs the file name
            self.close()
            raise CsrefinerError(f"{self.path}: cannot be opened as a slide ({type(exc).__name__}: {exc})") from exc

    def _open_tiff(self) -> None:
        import tifffile

        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        self._axes, self._full_shape = series.axes, tuple(series.shape)
        self._plan_axes()
        self.dtype = np.dtype(series.dtype)
        self._check_complete(series)
        if series.dataoffset is not None:  # uncompressed and contiguous: map it
            self._offset = series.dataoffset
            self._byteorder = self._tif.byteorder
            return
        import zarr

        self._zarr = zarr.open(series.aszarr(level=0), mode="r")
        chunk_bytes = math.prod(self._zarr.chunks) * self.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise CsrefinerError(
                f"{self.path}: stored as one compressed block of {chunk_bytes / 2**20:.0f} MiB, so every tile would "
                "decode the whole slide; convert it to a tiled TIFF first, e.g. "
                "`python -c \"import tifffile; tifffile.imwrite('tiled.tif', tifffile.imread('in.tif'), "
                "tile=(512, 512), compression='zlib')\"` "
                "or `vips tiffsave in.tif tiled.tif --tile --compression deflate`"
            )

    def _check_complete(self, series) -> None:
        """A truncated copy fails here, before any output, instead of mid-slide (bad zlib data, short mmap)."""
        size = self.path.stat().st_size
        end = max(
            (
                o + n
                for page in series.pages
                if page is not None
                for o, n in zip(page.dataoffsets, page.databytecounts)
                if n
            ),
            default=0,
        )
        if end > size:
            raise CsrefinerError(
                f"{self.path}: truncated: its pixel data runs to byte {end:,} but the file has {size:,} bytes; "
                "the copy or export is incomplete: copy the slide again"
            )

    def _plan_axes(self) -> None:
        """Index singleton axes away; keep Y, X and an RGB(A) channel axis."""
        index, kept = [], []
        for axis, size in zip(self._axes, self._full_shape):
            if axis in "YX" or (axis in "SC" and size in (3, 4)):
                index.append(slice(None))
                kept.append(axis)
            elif size == 1:
                index.append(0)
            else:
                raise CsrefinerError(
                    f"{self.path}: axis {axis} has {size} planes (axes {self._axes}, shape {self._full_shape}); "
                    "export the one 2D grey or RGB plane to segment"
                )
        if "Y" not in kept or "X" not in kept:
            raise CsrefinerError(f"{self.path}: no Y and X axes (axes {self._axes}); not a 2D slide")
        self._kept = "".join(kept)
        self._index = tuple(index)
        sizes = dict(zip(self._axes, self._full_shape))
        self.shape = (sizes["Y"], sizes["X"])
        self.channels = 3 if len(kept) == 3 else 1

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Pixels [y, y+h) x [x, x+w): (h, w) grey or (h, w, 3) RGB in the slide's dtype."""
        if y < 0 or x < 0 or h < 1 or w < 1 or y + h > self.shape[0] or x + w > self.shape[1]:
            raise CsrefinerError(f"{self.path}: rectangle y={y} x={x} h={h} w={w} lies outside the {self.shape} slide")
        if self._array is not None:
            return np.array(self._array[y : y + h, x : x + w])
        try:
            return self._read_tiff(y, x, h, w)
        except Exception as exc:  # a damaged chunk (bad compressed data, short file) is the file's fault
            raise CsrefinerError(
                f"{self.path}: damaged pixel data around x={x} y={y} ({type(exc).__name__}: {exc}); the file is "
                "corrupt or incomplete: copy or export the slide again"
            ) from None

    def _read_tiff(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        index = list(self._index)
        spatial = {"Y": slice(y, y + h), "X": slice(x, x + w)}
        for i, axis in enumerate(self._axes):
            if axis in spatial and index[i] == slice(None):
                index[i] = spatial[axis]
        if hasattr(self, "_zarr"):
            region = np.asarray(self._zarr[tuple(index)])
        else:
            mapped = np.memmap(
                self.path,
                dtype=self.dtype.newbyteorder(self._byteorder),
                mode="r",
                offset=self._offset,
                shape=self._full_shape,
            )
            region = np.array(mapped[tuple(index)], dtype=self.dtype)
            del mapped  # unmap now: pages read for this rectangle must not accumulate in RSS
        return self._channels_last(region)

    def _channels_last(self, region: np.ndarray) -> np.ndarray:
        if self.channels == 3:
            region = np.moveaxis(region, [self._kept.index("Y"), self._kept.index("X")], [0, 1])
            region = region[..., :3]  # drop alpha
        elif self._kept == "XY":
            region = region.T
        return np.ascontiguousarray(region)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_slide(path: str | os.PathLike) -> Slide:
    return Slide(path)
