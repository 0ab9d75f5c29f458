"""Cell outlines of a whole-slide label image, traced band by band: QuPath GeoJSON and polygons for SpatialData.

Convention: pixel edges (QuPath's). Pixel (row r, column c) is the square [c, c+1) x [r, r+1), so vertices sit
on pixel corners and a cell's polygon encloses exactly its pixels' centres (c + 0.5, r + 0.5). Readers that
put pixel centres at integer coordinates (numpy, napari, DNB positions) see the same outline shifted by half
a pixel: shift by (-0.5, -0.5) to compare, and never aggregate points on shared edges twice.

Memory: the mask is read in row bands through the lazy slide reader. Pass 1 records every label's bounding
box; pass 2 traces each cell once, in the band holding its top row, reading just the rows it spans.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from csrefiner.errors import CsrefinerError
from csrefiner.hitl.tracing import object_polygons
from csrefiner.io import atomic_path
from csrefiner.progress import track
from csrefiner.wsi.reader import open_slide

BAND_ROWS = 1024


def _bands(shape: tuple[int, int], rows: int) -> list[tuple[int, int]]:
    return [(y, min(shape[0], y + rows)) for y in range(0, shape[0], rows)]


def label_boxes(slide, rows: int = BAND_ROWS) -> pd.DataFrame:
    """Per label (index): y0, y1, x0, x1 of its pixels (half-open), from one streamed pass over the mask."""
    parts = []
    for y0, y1 in track(_bands(slide.shape, rows), "outlines: bounding boxes"):
        band = slide.read(y0, 0, y1 - y0, slide.shape[1])
        if band.ndim != 2 or not np.issubdtype(band.dtype, np.integer):
            raise CsrefinerError(f"{slide.path}: not a label image (dtype {band.dtype}, shape {band.shape})")
        r, c = np.nonzero(band)
        if r.size:
            frame = pd.DataFrame({"label": band[r, c], "y": r + y0, "x": c})
            parts.append(frame.groupby("label").agg(y0=("y", "min"), y1=("y", "max"), x0=("x", "min"), x1=("x", "max")))
        del band, r, c
    if not parts:
        return pd.DataFrame(columns=["y0", "y1", "x0", "x1"], dtype=np.int64)
    boxes = pd.concat(parts).groupby(level=0).agg({"y0": "min", "y1": "max", "x0": "min", "x1": "max"})
    boxes[["y1", "x1"]] += 1
    return boxes


def iter_outlines(mask: str | os.PathLike, rows: int = BAND_ROWS) -> Iterator[tuple[int, list[list[np.ndarray]]]]:
    """(label, polygons) per cell in label order within each band; polygons are [exterior, hole, ...] rings of
    (x, y) pixel-corner vertices in the mask's pixel frame (one polygon per 4-connected piece)."""
    with open_slide(mask) as slide:
        boxes = label_boxes(slide, rows)
        for y0, y1 in track(_bands(slide.shape, rows), "outlines: tracing"):
            here = boxes[(boxes.y0 >= y0) & (boxes.y0 < y1)]
            if here.empty:
                continue
            bottom = int(here.y1.max())
            window = slide.read(y0, 0, bottom - y0, slide.shape[1])
            for label, b in zip(here.index.to_numpy(), here.itertuples(index=False)):
                crop = window[b.y0 - y0 : b.y1 - y0, b.x0 : b.x1] == label
                corner = np.array([b.x0, b.y0])
                yield int(label), [[ring + corner for ring in poly] for poly in object_polygons(crop)]
            del window


def write_slide_geojson(
    mask: str | os.PathLike,
    out: str | os.PathLike,
    origin: tuple[int, int] = (0, 0),
    object_type: str = "detection",
    class_name: str = "Cell",
    force: bool = False,
    rows: int = BAND_ROWS,
) -> int:
    """QuPath FeatureCollection of every cell, streamed to `out` (atomic); `origin` (x, y) is added to every
    vertex (where the mask's pixel (0, 0) lies on the slide). Returns the number of features."""
    from csrefiner.hitl.geojson import DEFAULT_COLOR, object_feature

    n = 0
    key = Path(mask).name
    with atomic_path(out, force=force) as tmp, open(tmp, "w") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for label, polygons in iter_outlines(mask, rows):
            feature = object_feature(label, polygons, np.asarray(origin), object_type, class_name, DEFAULT_COLOR, key)
            fh.write((",\n" if n else "") + json.dumps(feature))
            n += 1
        fh.write("\n]}\n")
    return n
