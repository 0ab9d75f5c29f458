"""sopa's transcript aggregation on chip_scale's stitched mask and GEM, run by chip_scale.py in a sopa venv.

Done the way a sopa user with a label mask and a Stereo-seq GEM would: `sopa.shapes.vectorize` turns the mask into
cell polygons (its default smoothing and simplification), the GEM becomes a SpatialData points element, and
`sopa.aggregate` counts the transcripts per polygon. sopa counts one transcript per points row and has no count
column, so each GEM record is repeated MIDCount times. This file imports no csrefiner: it runs in sopa's venv.

    python chip_scale_sopa.py MASK GEM OUT_NPZ

Prints one JSON line after each phase (seconds so far per phase), so a run stopped by the cap still says how far
it got; OUT_NPZ gets the stitched label and total count of each polygon, for chip_scale's check against truth.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def read_mask(path: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(path, level=0)  # full resolution of the pyramid


def polygons(mask: np.ndarray):
    """Cells as polygons and the mask label of each (vectorize keeps regionprops' ascending-label order)."""
    import sopa
    from scipy import ndimage

    cells = sopa.shapes.vectorize(mask)
    # the label of each region, in the same order; cells emptied by smoothing are dropped by vectorize
    labels = np.array([i + 1 for i, s in enumerate(ndimage.find_objects(mask)) if s is not None])
    return cells, labels[cells.index.to_numpy()]


def read_points(path: str):
    """The GEM as one row per transcript: pixel coordinates are polygon coordinates (find_contours on centres)."""
    import pandas as pd

    gem = pd.read_csv(path, sep="\t", comment="#", dtype={"geneID": "category", "x": np.int32, "y": np.int32})
    rows = np.repeat(np.arange(len(gem)), gem["MIDCount"].to_numpy())
    return gem.iloc[rows][["x", "y", "geneID"]].reset_index(drop=True), int(len(gem))


def build(cells, points):
    from spatialdata import SpatialData
    from spatialdata.models import PointsModel, ShapesModel

    return SpatialData(
        shapes={"cells": ShapesModel.parse(cells)},
        points={"transcripts": PointsModel.parse(points, feature_key="geneID")},
    )


def main() -> None:
    mask_path, gem_path, out = sys.argv[1:4]
    import sopa

    info, t = {}, time.perf_counter()

    def phase(name):
        nonlocal t
        now = time.perf_counter()
        info[f"{name}_s"] = round(now - t, 2)
        t = now
        print(json.dumps(info), flush=True)

    mask = read_mask(mask_path)
    phase("read_mask")
    cells, labels = polygons(mask)
    del mask
    info["polygons"] = len(cells)
    phase("vectorize")
    points, info["records"] = read_points(gem_path)
    info["points"] = len(points)
    phase("read_points")
    sdata = build(cells, points)
    del points
    phase("spatialdata")
    sopa.aggregate(sdata, aggregate_channels=False, shapes_key="cells", points_key="transcripts", gene_column="geneID")
    table = sdata["table"]
    # sopa renames the cells aaaaaaaa-1...; rows stay in polygon order (nothing is filtered at min_transcripts=0)
    assert table.n_obs == labels.size
    counts = np.asarray(table.X.sum(axis=1)).ravel().astype(np.int64)
    info["cells"], info["counts"] = int(table.n_obs), int(counts.sum())
    phase("aggregate")
    np.savez(out, labels=labels, counts=counts)
    info["sopa"] = sopa.__version__
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
