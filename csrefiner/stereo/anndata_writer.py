"""Write a CellBinMatrix as AnnData (.h5ad): cells x genes CSR with exact integer counts, obs with the mask
label, centre and area, var with gene names, obsm['spatial'] = cell centres; readable by scanpy/anndata.

Frames: obsm['spatial'] is in the chip (DNB) frame, as the cell-bin GEF; uns['cellbin'] records the offset
(chip = mask pixel + offset) and the pixel size in micrometres. Two flavours are filled in so each client
opens the file as what it is: scanpy/squidpy's uns['spatial'][library_id] (scalefactors, optional low-res
image placed in the chip frame) and stereopy's cell-bin keys (bin_type, bin_size, resolution, sn,
obsm['cell_border'] as (N, 32, 2) offsets from the centre padded with 32767, as in the GEF)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path
from csrefiner.io.frames import stereo_pixel_size
from csrefiner.io.isolated import write_in_child
from csrefiner.stereo.cellbin import CellBinMatrix


def require_anndata():
    try:
        import anndata
    except ImportError:
        raise CsrefinerError("--h5ad needs the anndata package: pip install 'csrefiner[cgef]'") from None
    return anndata


def to_anndata(m: CellBinMatrix, pixel_size_um: float | None = None, lowres: np.ndarray | None = None):
    import pandas as pd

    anndata = require_anndata()

    genes_per_cell = np.diff(m.indptr)
    obs = pd.DataFrame(
        {
            "label": m.label.astype(np.int64),
            "x": m.x,
            "y": m.y,
            "area_px": m.area,
            "dnb_count": m.dnb_count,
            "gene_count": genes_per_cell,
            "total_counts": np.asarray(m.csr().sum(axis=1)).ravel(),
        },
        index=pd.Index([str(v) for v in m.label], name="cell"),
    )
    var = pd.DataFrame({"gene_name": m.gene_names}, index=pd.Index(m.gene_ids, name="gene_id"))
    adata = anndata.AnnData(
        X=m.csr(np.int64 if m.count.max(initial=0) > np.iinfo(np.int32).max else np.int32), obs=obs, var=var
    )
    if m.exon is not None:
        adata.layers["exon"] = m.csr(adata.X.dtype, values=m.exon)
    adata.obsm["spatial"] = np.column_stack([m.x, m.y]).astype(np.float64)
    adata.uns["cellbin"] = {
        "offset_x": m.offset_x,
        "offset_y": m.offset_y,
        "width": m.width,
        "height": m.height,
        "resolution_nm": m.resolution,
        "sn": m.sn,
        "source": "csrefiner cgef",
        "pixel_size_um": pixel_size_um or stereo_pixel_size(m.resolution),
        "spatial_frame": "chip (DNB): chip = mask pixel + (offset_x, offset_y); um = chip * pixel_size_um",
    }
    adata.uns["spatial"] = {library_id(m): scanpy_library(m, lowres)}
    adata.uns["bin_type"], adata.uns["bin_size"], adata.uns["resolution"] = "cell_bins", 1, int(m.resolution)
    adata.uns["sn"] = pd.DataFrame([["-1", m.sn]], columns=["batch", "sn"])  # stereopy's layout
    adata.obsm["cell_border"] = m.border
    return adata


def library_id(m: CellBinMatrix) -> str:
    return m.sn or "csrefiner"


def scanpy_library(m: CellBinMatrix, lowres: np.ndarray | None = None, max_side: int = 2000) -> dict:
    """scanpy's uns['spatial'] entry: full resolution = the chip frame (obsm['spatial']); the low-res image (the
    stitch preview, which covers the mask) is pasted where the mask lies in the chip frame."""
    diameter = 2 * np.sqrt(np.mean(m.area) / np.pi) if m.n_cells else 1.0
    library = {
        "scalefactors": {
            "tissue_hires_scalef": 1.0,
            "tissue_lowres_scalef": 1.0,
            "spot_diameter_fullres": float(diameter),
        },
        "metadata": {"source": "csrefiner cgef"},
    }
    if lowres is not None:
        image, scale = place_lowres(m, lowres, max_side)
        library["images"] = {"hires": image, "lowres": image}  # squidpy's default is hires, scanpy takes either
        library["scalefactors"]["tissue_hires_scalef"] = library["scalefactors"]["tissue_lowres_scalef"] = scale
    return library


def place_lowres(m: CellBinMatrix, preview: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The preview scaled into a canvas of the chip frame from (0, 0) (at most max_side px a side)."""
    from skimage.transform import resize

    full_h, full_w = m.offset_y + m.height, m.offset_x + m.width
    scale = min(preview.shape[1] / m.width, max_side / max(full_h, full_w))
    h, w = max(1, round(m.height * scale)), max(1, round(m.width * scale))
    if preview.shape[:2] != (h, w):
        preview = resize(preview, (h, w) + preview.shape[2:], order=0, preserve_range=True, anti_aliasing=False).astype(
            preview.dtype
        )
    canvas = np.zeros((max(1, round(full_h * scale)), max(1, round(full_w * scale))) + preview.shape[2:], preview.dtype)
    y0, x0 = min(round(m.offset_y * scale), canvas.shape[0] - h), min(round(m.offset_x * scale), canvas.shape[1] - w)
    canvas[y0 : y0 + h, x0 : x0 + w] = preview
    return canvas, float(scale)


def write_h5ad(
    m: CellBinMatrix,
    path: str | os.PathLike,
    force: bool = False,
    pixel_size_um: float | None = None,
    lowres: np.ndarray | None = None,
) -> Path:
    adata = to_anndata(m, pixel_size_um, lowres)
    with atomic_path(path, force=force) as tmp:
        write_in_child(lambda: adata.write_h5ad(tmp), path)  # a disk filling up mid-write crashes HDF5
    return Path(path)
