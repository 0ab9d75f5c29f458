"""The coordinate model every csrefiner output follows, and the physical pixel size that goes with it.

Three frames, one mask:

- **pixel frame**: (x, y) of the stitched mask and of the slide it was segmented from; x to the right, y down,
  origin at the top-left corner of pixel (0, 0). Two conventions exist inside it and each output says which:
  *pixel edges* (pixel (row r, column c) is the square [c, c+1) x [r, r+1): QuPath, the GeoJSON we write) and
  *pixel centres* (pixel (r, c) is the point (c, r): numpy, napari, spatialdata's raster elements, DNBs).
- **chip (DNB) frame**: the Stereo-seq matrix's own coordinates, chip = pixel + offset, the offset being the
  GEM header's #OffsetX/#OffsetY or the bin1 GEF's minX/minY (0 when absent). One mask pixel is one DNB.
- **micrometres**: um = pixel x pixel size (and chip um = chip x pixel size). The pixel size is read from the
  slide (OME PhysicalSizeX/Y with units, else TIFF XResolution/YResolution with ResolutionUnit), or given as
  --pixel-size; a Stereo-seq matrix implies resolution / 1000 um (500 nm DNB pitch -> 0.5 um).

Where each output stands: tiles, the stitched mask and GeoJSON are in the pixel frame (the mask's OME-XML and
TIFF resolution tags carry the pixel size); the cell-bin GEF is in the chip frame, as gefpy writes it
(offsetX/offsetY attributes hold the offset); the .h5ad keeps obsm['spatial'] in the chip frame (as the GEF)
and records offset and pixel size in uns['csrefiner_frames']; the SpatialData export keeps every element in
its pixel frame and registers transformations to the 'microns' and 'chip' coordinate systems.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from csrefiner.errors import CsrefinerError

UM_PER_UNIT = {  # OME UnitsLength symbols -> micrometres
    "m": 1e6,
    "dm": 1e5,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "um": 1.0,
    "\u03bcm": 1.0,
    "micron": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "Å": 1e-4,
    "in": 25_400.0,
    "ft": 304_800.0,
}
UM_PER_RESOLUTION_UNIT = {2: 25_400.0, 3: 10_000.0}  # TIFF ResolutionUnit: 2 inch, 3 centimetre
STEREO_DEFAULT_NM = 500


@dataclass(frozen=True)
class Frames:
    """How one output's pixels map to the chip and to micrometres (pixel size None: unknown)."""

    offset_x: int = 0
    offset_y: int = 0
    pixel_size_um: float | None = None

    def as_dict(self) -> dict:
        return {
            "frame": "chip = pixel + offset; um = pixel * pixel_size_um",
            "offset_x": int(self.offset_x),
            "offset_y": int(self.offset_y),
            "pixel_size_um": float(self.pixel_size_um) if self.pixel_size_um else None,
        }


def check_pixel_size(um: float | None, source: str = "--pixel-size") -> float | None:
    if um is None:
        return None
    if not (isinstance(um, (int, float)) and math.isfinite(um) and um > 0):
        raise CsrefinerError(f"{source}: pixel size {um!r} is not a positive number of micrometres; give e.g. 0.5")
    return float(um)


def stereo_pixel_size(resolution_nm: int | None) -> float:
    """A DNB's pitch in micrometres: the mask pixel size when the mask is registered to the chip."""
    return (resolution_nm or STEREO_DEFAULT_NM) / 1000.0


def _square(sx: float | None, sy: float | None, path: Path, what: str) -> float | None:
    if sx is None and sy is None:
        return None
    sx, sy = sx or sy, sy or sx
    if abs(sx - sy) > 1e-6 * max(sx, sy):
        raise CsrefinerError(
            f"{path}: {what} says non-square pixels ({sx} x {sy} um); csrefiner needs square "
            "pixels: resample the slide or pass --pixel-size to override"
        )
    return float(sx)


def _ome_pixel_size(xml: str, path: Path) -> float | None:
    pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if not pixels:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(0)))
    sizes = []
    for axis in "XY":
        value = attrs.get(f"PhysicalSize{axis}")
        unit = attrs.get(f"PhysicalSize{axis}Unit", "µm")
        if value is None:
            sizes.append(None)
            continue
        if unit not in UM_PER_UNIT:
            raise CsrefinerError(
                f"{path}: OME PhysicalSize{axis}Unit {unit!r} is not a length unit csrefiner knows; "
                "pass --pixel-size in micrometres"
            )
        sizes.append(check_pixel_size(float(value) * UM_PER_UNIT[unit], f"{path}: OME PhysicalSize{axis}"))
    return _square(*sizes, path, "its OME metadata")


def _tiff_tag_pixel_size(page, path: Path) -> float | None:
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    unit = int(unit.value) if unit is not None else 2  # TIFF's default unit is the inch
    if unit not in UM_PER_RESOLUTION_UNIT or "XResolution" not in tags:
        return None
    sizes = []
    for name in ("XResolution", "YResolution"):
        tag = tags.get(name)
        if tag is None:
            sizes.append(None)
            continue
        num, den = tag.value
        per_unit = num / den if den else 0
        if per_unit <= 1:  # 1 pixel per inch/cm is what writers put when they know nothing
            return None
        sizes.append(UM_PER_RESOLUTION_UNIT[unit] / per_unit)
    return _square(*sizes, path, "its TIFF resolution tags")


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """The slide's pixel size in micrometres from OME-XML, else TIFF resolution tags; None if it says nothing."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                um = _ome_pixel_size(tif.ome_metadata, path)
                if um is not None:
                    return um
            return _tiff_tag_pixel_size(tif.pages.first, path)
    except CsrefinerError:
        raise
    except Exception as exc:  # tifffile raises many types; the user needs the file name
        raise CsrefinerError(f"{path}: cannot read its pixel size ({type(exc).__name__}: {exc})") from exc


def resolve_pixel_size(given: float | None, path: str | os.PathLike | None) -> float | None:
    """--pixel-size wins over what the file says."""
    if given is not None:
        return check_pixel_size(given)
    return read_pixel_size(path) if path is not None else None


def tiff_resolution(um: float | None, step: int = 1) -> dict:
    """tifffile keyword arguments for XResolution/YResolution in pixels per centimetre (level subsampled by step)."""
    if not um:
        return {}
    per_cm = 1e4 / (um * step)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def ome_physical_size(um: float | None) -> dict:
    """OME Pixels attributes for tifffile's `metadata=` (PhysicalSizeX/Y in micrometres)."""
    if not um:
        return {}
    return {"PhysicalSizeX": um, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": um, "PhysicalSizeYUnit": "µm"}
