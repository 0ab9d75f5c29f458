"""Write a CellBinMatrix as AnnData (.h5ad): cells x genes CSR with exact integer counts, obs with the mask
label, centre and area, var with gene names, obsm['spatial'] = cell centres; readable by scanpy/anndata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path
from csrefiner.stereo.cellbin import CellBinMatrix


def require_anndata():
    try:
        import anndata
    except ImportError:
        raise CsrefinerError("--h5ad needs the anndata package: pip install 'csrefiner[cgef]'") from None
    return anndata


def to_anndata(m: CellBinMatrix):
    import pandas as pd

    anndata = require_anndata()

    genes_per_cell = np.diff(m.indptr)
    obs = pd.DataFrame(
        {
            "label": m.label.astype(np.int64), "x": m.x, "y": m.y, "area": m.area, "dnb_count": m.dnb_count,
            "gene_count": genes_per_cell, "total_counts": np.asarray(m.csr().sum(axis=1)).ravel(),
        },
        index=pd.Index([str(v) for v in m.label], name="cell"),
    )
    var = pd.DataFrame({"gene_name": m.gene_names}, index=pd.Index(m.gene_ids, name="gene_id"))
    adata = anndata.AnnData(X=m.csr(np.int64 if m.count.max(initial=0) > np.iinfo(np.int32).max else np.int32),
                            obs=obs, var=var)
    if m.exon is not None:
        adata.layers["exon"] = m.csr(adata.X.dtype, values=m.exon)
    adata.obsm["spatial"] = np.column_stack([m.x, m.y]).astype(np.float64)
    adata.uns["cellbin"] = {
        "offset_x": m.offset_x, "offset_y": m.offset_y, "width": m.width, "height": m.height,
        "resolution_nm": m.resolution, "sn": m.sn, "source": "csrefiner cgef",
    }
    return adata


def write_h5ad(m: CellBinMatrix, path: str | os.PathLike, force: bool = False) -> Path:
    adata = to_anndata(m)
    with atomic_path(path, force=force) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)
