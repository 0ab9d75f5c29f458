"""`csrefiner export --zarr`: the slide, the stitched mask, the cell outlines and the cell-bin matrix as one
SpatialData zarr store (the scverse model napari-spatialdata, squidpy and sopa load).

Elements (all in the mask's pixel frame, see csrefiner.io.frames):
- image `slide`: the slide as (c, y, x), multiscale, read lazily through dask from the tiled TIFF;
- labels `cell_labels`: the stitched uint32 mask, multiscale, read lazily from the OME-TIFF;
- shapes `cell_boundaries`: one polygon per cell (index = mask label), traced band by band along pixel edges
  and stored in spatialdata's pixel-centre convention (pixel (r, c) centred at (c, r), so vertices sit at
  half-integers, as spatialdata's `to_polygons` and napari draw them): the QuPath GeoJSON minus 0.5 px;
- table `table`: the cells x genes AnnData from our .h5ad or cell-bin GEF, annotating `cell_labels` and
  `cell_boundaries` (region_key 'region', instance_key 'cell_id' = mask label; one row per cell and region).
Every element carries the same transformations: 'global' (pixels, identity), 'microns' (scale by the pixel
size, when known) and 'chip' (translation by the matrix offset, Stereo-seq DNB coordinates).

Needs the `spatialdata` extra (numpy/dask pins clash with the segmentation backends): its own venv,
`make venv-clients`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError

IMAGE, LABELS, SHAPES, TABLE = "slide", "cell_labels", "cell_boundaries", "table"
REGION_KEY, INSTANCE_KEY = "region", "cell_id"


def require_spatialdata():
    try:
        import spatialdata  # noqa: F401
    except ImportError:
        raise CsrefinerError(
            "--zarr needs the spatialdata package, which cannot share the segmentation environment: "
            "`make venv-clients`, then run `.venv-clients/bin/csrefiner export ...`"
        ) from None


def lazy_tiff(path: str | os.PathLike, level: int = 0):
    """A dask array of one pyramid level of a TIFF, with the file's axes as tifffile names them."""
    import dask.array as da
    import tifffile
    import zarr

    series = tifffile.TiffFile(path).series[0]
    store = series.aszarr(level=level)
    arr = zarr.open(store, mode="r")
    return da.from_zarr(arr), series.axes


def _to_dims(arr, axes: str, path, want: str):
    """Index singleton axes away and order the rest as `want` ('yx' or 'cyx'; S/C -> c)."""
    index, kept = [], []
    for axis, size in zip(axes, arr.shape):
        a = {"S": "c", "C": "c"}.get(axis, axis.lower())
        if a in want and a not in kept:
            index.append(slice(None))
            kept.append(a)
        elif size == 1:
            index.append(0)
        else:
            raise CsrefinerError(f"{path}: axis {axis} has {size} planes; export one 2D grey or RGB plane")
    arr = arr[tuple(index)]
    if "c" in want and "c" not in kept:
        arr, kept = arr[None], ["c"] + kept
    return arr.transpose([kept.index(a) for a in want])


def scale_factors(shape: tuple[int, int], smallest: int = 1024) -> list[int]:
    """Factors of 2 until the longest side fits in `smallest` pixels (as the stitched pyramid)."""
    factors, side = [], max(shape)
    while side > smallest:
        factors.append(2)
        side //= 2
    return factors


def transformations(pixel_size_um: float | None, offset: tuple[int, int]) -> dict:
    from spatialdata.transformations import Identity, Scale, Translation

    t = {"global": Identity(), "chip": Translation([offset[0], offset[1]], axes=("x", "y"))}
    if pixel_size_um:
        t["microns"] = Scale([pixel_size_um, pixel_size_um], axes=("x", "y"))
    return t


def read_table(path: str | os.PathLike):
    """AnnData of our .h5ad, or built from our cell-bin GEF (counts, label, centre, offset)."""
    import anndata

    path = Path(path)
    with open(path, "rb") as fh:
        hdf5 = fh.read(8) == b"\x89HDF\r\n\x1a\n"
    if not hdf5:
        raise CsrefinerError(f"{path}: not an HDF5 file; give the .h5ad or .cellbin.gef `csrefiner cgef` wrote")
    import h5py

    with h5py.File(path, "r") as f:
        is_gef = "cellBin" in f
    if not is_gef:
        return anndata.read_h5ad(path)
    return _gef_table(path)


def _gef_table(path: Path):
    import anndata
    import h5py
    import pandas as pd
    from scipy import sparse

    with h5py.File(path, "r") as f:
        g = f["cellBin"]
        if "label" not in g:
            raise CsrefinerError(
                f"{path}: a cell-bin GEF without /cellBin/label (not written by csrefiner); "
                "cells cannot be matched to mask labels: export with --table CELLS.h5ad"
            )
        cell, exp, genes, label = g["cell"][:], g["cellExp"][:], g["gene"][:], g["label"][:]
        offset = int(f.attrs["offsetX"][0]), int(f.attrs["offsetY"][0])
        um = float(f.attrs["csrefiner_pixel_size_um"][0]) if "csrefiner_pixel_size_um" in f.attrs else None
        resolution = int(f.attrs["resolution"][0])
    indptr = np.r_[cell["offset"].astype(np.int64), len(exp)]
    X = sparse.csr_matrix(
        (exp["count"].astype(np.int32), exp["geneID"].astype(np.int64), indptr), shape=(len(cell), len(genes))
    )
    obs = pd.DataFrame(
        {"label": label.astype(np.int64), "x": cell["x"], "y": cell["y"], "area_px": cell["area"]},
        index=pd.Index([str(v) for v in label], name="cell"),
    )
    var = pd.DataFrame({"gene_name": genes["geneName"].astype(str)}, index=pd.Index(genes["geneID"].astype(str)))
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.obsm["spatial"] = np.column_stack([cell["x"], cell["y"]]).astype(np.float64)
    adata.uns["cellbin"] = {
        "offset_x": offset[0],
        "offset_y": offset[1],
        "resolution_nm": resolution,
        **({"pixel_size_um": um} if um else {}),
    }
    return adata


def _annotating(adata, regions: list[str]):
    """One row per cell and region: the table annotates the labels and the shapes by mask label."""
    import anndata
    import pandas as pd

    parts = []
    for region in regions:
        part = adata.copy()
        part.obs[REGION_KEY] = region
        part.obs[INSTANCE_KEY] = part.obs["label"].astype(np.int64).to_numpy()
        part.obs_names = [f"{region}-{v}" for v in part.obs[INSTANCE_KEY]]
        parts.append(part)
    table = anndata.concat(parts, merge="same", uns_merge="first") if len(parts) > 1 else parts[0]
    table.obs[REGION_KEY] = pd.Categorical(table.obs[REGION_KEY], categories=regions)
    for key in ("spatial",):  # scanpy's image dictionary is not a SpatialData table's business
        table.uns.pop(key, None)
    return table


def shapes_frame(mask: str | os.PathLike, rows: int):
    """GeoDataFrame of every cell's outline (index = mask label), traced band by band."""
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, Polygon

    from csrefiner.wsi.outlines import iter_outlines

    labels, geoms = [], []
    for label, polygons in iter_outlines(mask, rows):
        polys = [Polygon(p[0] - 0.5, [h - 0.5 for h in p[1:]]) for p in polygons]  # edges -> centre convention
        labels.append(label)
        geoms.append(polys[0] if len(polys) == 1 else MultiPolygon(polys))
    return gpd.GeoDataFrame(geometry=geoms, index=np.asarray(labels, dtype=np.int64))


def export_spatialdata(
    out: str | os.PathLike,
    mask: str | os.PathLike,
    image: str | os.PathLike | None = None,
    table: str | os.PathLike | None = None,
    pixel_size_um: float | None = None,
    offset: tuple[int, int] | None = None,
    force: bool = False,
    rows: int = 1024,
    chunk: int = 1024,
) -> dict:
    """Write the SpatialData store `out` (atomically); returns what was written."""
    require_spatialdata()
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel, ShapesModel, TableModel

    from csrefiner.io import atomic_dir
    from csrefiner.io.frames import check_pixel_size, read_pixel_size

    adata = read_table(table) if table is not None else None
    meta = adata.uns.get("cellbin", {}) if adata is not None else {}
    um = (
        check_pixel_size(pixel_size_um)
        or read_pixel_size(mask)
        or (read_pixel_size(image) if image else None)
        or meta.get("pixel_size_um")
    )
    offset = offset if offset is not None else (int(meta.get("offset_x", 0)), int(meta.get("offset_y", 0)))
    t = transformations(um, offset)

    labels, axes = lazy_tiff(mask)
    labels = _to_dims(labels, axes, mask, "yx")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CsrefinerError(f"{mask}: dtype {labels.dtype} is not a label image")
    shape = tuple(labels.shape)
    factors = scale_factors(shape)
    elements = {
        "labels": {
            LABELS: Labels2DModel.parse(
                labels.rechunk(chunk), dims=("y", "x"), transformations=t, scale_factors=factors or None
            )
        }
    }
    if image is not None:
        img, axes = lazy_tiff(image)
        img = _to_dims(img, axes, image, "cyx")
        if tuple(img.shape[1:]) != shape:
            raise CsrefinerError(
                f"{image}: slide is {img.shape[1]}x{img.shape[2]} px but the mask {mask} is "
                f"{shape[0]}x{shape[1]}; give the slide the mask was segmented from"
            )
        elements["images"] = {
            IMAGE: Image2DModel.parse(
                img.rechunk((img.shape[0], chunk, chunk)),
                dims=("c", "y", "x"),
                transformations=t,
                scale_factors=factors or None,
            )
        }
    cells = shapes_frame(mask, rows)
    elements["shapes"] = {SHAPES: ShapesModel.parse(cells, transformations=t)}
    if adata is not None:
        missing = np.setdiff1d(adata.obs["label"].to_numpy(np.int64), cells.index.to_numpy())
        if missing.size:
            raise CsrefinerError(
                f"{table}: {missing.size} cells (e.g. label {missing[0]}) are not in the mask {mask}; "
                "give the matrix built from this mask"
            )
        elements["tables"] = {
            TABLE: TableModel.parse(
                _annotating(adata, [LABELS, SHAPES]),
                region=[LABELS, SHAPES],
                region_key=REGION_KEY,
                instance_key=INSTANCE_KEY,
            )
        }
    sdata = SpatialData(**elements)
    with atomic_dir(out, force=force) as tmp:
        os.rmdir(tmp)  # spatialdata creates the store itself
        sdata.write(tmp)
    return {
        "cells": len(cells),
        "shape": shape,
        "pixel_size_um": um,
        "offset": offset,
        "image": image is not None,
        "table": adata is not None,
        "levels": len(factors) + 1,
    }
