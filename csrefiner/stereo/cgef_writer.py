"""Write a CellBinMatrix as the cell-bin GEF (HDF5 group /cellBin) that gefpy 1.3.3 writes and CgefR/stereopy
read: the same datasets, compound dtypes, attribute names and orderings (see docs in the README), plus
/cellBin/label with every cell's original mask label. The file appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path
from csrefiner.stereo.cellbin import CellBinMatrix
from csrefiner.stereo.geometry import BORDER_PAD

CELL_DTYPE = np.dtype([
    ("id", "<u4"), ("x", "<i4"), ("y", "<i4"), ("offset", "<u4"), ("geneCount", "<u4"), ("expCount", "<u4"),
    ("dnbCount", "<u4"), ("area", "<u4"), ("cellTypeID", "<u2"), ("clusterID", "<u2"),
])
CELL_EXP_DTYPE = np.dtype([("geneID", "<u4"), ("count", "<u2")])
GENE_DTYPE = np.dtype([
    ("geneID", "S64"), ("geneName", "S64"), ("offset", "<u4"), ("cellCount", "<u4"), ("expCount", "<u4"),
    ("maxMIDcount", "<u2"),
])
GENE_EXP_DTYPE = np.dtype([("cellID", "<u4"), ("count", "<u2")])
GEFTOOL_VERSION = (1, 3, 3)  # the layout version written (gefpy/geftools 1.3.3)
U2, U4 = np.iinfo(np.uint16).max, np.iinfo(np.uint32).max


def _one(value, dtype) -> np.ndarray:
    return np.array([value], dtype=dtype)


def _s32(text: str) -> np.ndarray:
    return np.array([text.encode("utf-8")[:32]], dtype="S32")


def _summary_attrs(dset, columns: dict[str, np.ndarray]) -> None:
    """average/median (float32) and min/max (uint32) of each column, as gefpy annotates cell and gene."""
    for name, values in columns.items():
        dset.attrs[f"average{name}"] = _one(values.mean() if values.size else 0, np.float32)
        dset.attrs[f"median{name}"] = _one(np.median(values) if values.size else 0, np.float32)
        dset.attrs[f"min{name}"] = _one(values.min() if values.size else 0, np.uint32)
        dset.attrs[f"max{name}"] = _one(values.max() if values.size else 0, np.uint32)


def _cells(m: CellBinMatrix) -> np.ndarray:
    n = m.n_cells
    genes_per_cell = np.diff(m.indptr)
    exp = np.add.reduceat(m.count, m.indptr[:-1]) if m.count.size else np.zeros(n, np.int64)
    exp = np.where(genes_per_cell > 0, exp, 0)  # reduceat repeats a value for empty rows
    cell = np.zeros(n, CELL_DTYPE)
    cell["id"] = np.arange(n)
    cell["x"], cell["y"] = m.x, m.y
    cell["offset"] = m.indptr[:-1]
    cell["geneCount"] = genes_per_cell
    cell["expCount"] = np.minimum(exp, U4)
    cell["dnbCount"] = m.dnb_count
    cell["area"] = np.minimum(m.area, U4)
    return cell


def _genes(m: CellBinMatrix) -> np.ndarray:
    g = m.n_genes
    genes = np.zeros(g, GENE_DTYPE)
    genes["geneID"] = [s.encode("utf-8") for s in m.gene_ids]
    genes["geneName"] = [s.encode("utf-8")[:64] for s in m.gene_names]
    per_gene = np.bincount(m.gene, minlength=g)
    genes["offset"] = np.r_[0, np.cumsum(per_gene)[:-1]]
    genes["cellCount"] = per_gene
    genes["expCount"] = np.minimum(np.bincount(m.gene, weights=m.count, minlength=g), U4)
    top = np.zeros(g, np.int64)
    np.maximum.at(top, m.gene, m.count)
    genes["maxMIDcount"] = np.minimum(top, U2)
    return genes


def write_cgef(m: CellBinMatrix, path: str | os.PathLike, force: bool = False) -> Path:
    import h5py

    from csrefiner import __version__

    if m.indptr[-1] > U4:
        raise CsrefinerError(f"{path}: {m.indptr[-1]:,} non-zero entries exceed what a cell-bin GEF indexes (uint32)")
    count16 = np.minimum(m.count, U2).astype(np.uint16)  # the format stores uint16; larger sums are clipped
    cell = _cells(m)
    cell_of_entry = np.repeat(np.arange(m.n_cells), np.diff(m.indptr))
    gene_major = np.argsort(m.gene, kind="stable")  # cells stay ascending inside each gene
    genes = _genes(m)
    valid = m.border[..., 0] != BORDER_PAD
    bx = (m.border[..., 0].astype(np.int64) + m.x[:, None])[valid]
    by = (m.border[..., 1].astype(np.int64) + m.y[:, None])[valid]

    with atomic_path(path, force=force) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["version"] = _one(4, np.uint32)
        f.attrs["geftool_ver"] = np.array(GEFTOOL_VERSION, np.uint32)
        f.attrs["omics"] = _s32("Transcriptomics")
        f.attrs["bin_type"] = _s32("CellBin")
        f.attrs["resolution"] = _one(m.resolution, np.uint32)
        f.attrs["offsetX"], f.attrs["offsetY"] = _one(m.offset_x, np.int32), _one(m.offset_y, np.int32)
        f.attrs["maxX"] = _one(m.offset_x + m.width - 1, np.int32)
        f.attrs["maxY"] = _one(m.offset_y + m.height - 1, np.int32)
        if m.sn:
            f.attrs["sn"] = _s32(m.sn)
        f.attrs["csrefiner_version"] = _s32(__version__)
        grp = f.create_group("cellBin")

        ds = grp.create_dataset("cell", data=cell)
        _summary_attrs(ds, {k: cell[c].astype(np.int64) for k, c in
                            (("Area", "area"), ("DnbCount", "dnbCount"), ("ExpCount", "expCount"),
                             ("GeneCount", "geneCount"))})
        for name, values in (("X", m.x), ("Y", m.y)):
            ds.attrs[f"min{name}"] = _one(values.min(), np.int32)
            ds.attrs[f"max{name}"] = _one(values.max(), np.int32)

        cell_exp = np.zeros(m.gene.size, CELL_EXP_DTYPE)
        cell_exp["geneID"], cell_exp["count"] = m.gene, count16
        grp.create_dataset("cellExp", data=cell_exp).attrs["maxCount"] = _one(count16.max(initial=0), np.uint16)

        ds = grp.create_dataset("gene", data=genes)
        for k, c in (("CellCount", "cellCount"), ("ExpCount", "expCount")):
            ds.attrs[f"min{k}"] = _one(genes[c].min() if genes.size else 0, np.uint32)
            ds.attrs[f"max{k}"] = _one(genes[c].max(initial=0), np.uint32)

        gene_exp = np.zeros(m.gene.size, GENE_EXP_DTYPE)
        gene_exp["cellID"], gene_exp["count"] = cell_of_entry[gene_major], count16[gene_major]
        grp.create_dataset("geneExp", data=gene_exp).attrs["maxCount"] = _one(count16.max(initial=0), np.uint16)

        ds = grp.create_dataset("cellBorder", data=m.border)
        for name, values, reduce in (("minX", bx, np.min), ("minY", by, np.min), ("maxX", bx, np.max),
                                     ("maxY", by, np.max)):
            ds.attrs[name] = _one(reduce(values) if values.size else 0, np.int32)

        bw, bh = m.block_size
        grp.create_dataset("blockSize", data=np.array(
            [bw, bh, -(-m.width // bw), -(-m.height // bh)], np.uint32))
        grp.create_dataset("blockIndex", data=m.block_index.astype(np.uint32))
        grp.create_dataset("cellTypeList", data=np.array([b"default"], dtype="S32"))
        grp.create_dataset("label", data=m.label.astype(np.uint32))
    return Path(path)
