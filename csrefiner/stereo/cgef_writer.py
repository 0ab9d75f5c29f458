"""Write a CellBinMatrix as the cell-bin GEF (HDF5 group /cellBin) that gefpy 1.3.3 writes and CgefR/stereopy
read: the same datasets, compound dtypes, attribute names and orderings (docs/cgef.md, Layout), plus
/cellBin/label with every cell's original mask label. The file appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path
from csrefiner.io.isolated import write_in_child
from csrefiner.stereo.cellbin import CellBinMatrix
from csrefiner.stereo.cgef_chunks import (
    ENTRY_CHUNK,
    create,
    gene_major,
    gene_max,
    row_sums,
    spans,
    write_cell_major,
)
from csrefiner.stereo.geometry import BORDER_PAD

CELL_DTYPE = np.dtype(
    [
        ("id", "<u4"),
        ("x", "<i4"),
        ("y", "<i4"),
        ("offset", "<u4"),
        ("geneCount", "<u4"),
        ("expCount", "<u4"),
        ("dnbCount", "<u4"),
        ("area", "<u4"),
        ("cellTypeID", "<u2"),
        ("clusterID", "<u2"),
    ]
)
CELL_EXP_DTYPE = np.dtype([("geneID", "<u4"), ("count", "<u2")])
GENE_DTYPE = np.dtype(
    [
        ("geneID", "S64"),
        ("geneName", "S64"),
        ("offset", "<u4"),
        ("cellCount", "<u4"),
        ("expCount", "<u4"),
        ("maxMIDcount", "<u2"),
    ]
)
GENE_EXP_DTYPE = np.dtype([("cellID", "<u4"), ("count", "<u2")])
GEFTOOL_VERSION = (1, 3, 3)  # the layout version written (gefpy/geftools 1.3.3)
U2, U4 = np.iinfo(np.uint16).max, np.iinfo(np.uint32).max
CELL_CHUNK = 1 << 16  # cells per step when measuring the borders


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
    cell = np.zeros(n, CELL_DTYPE)
    cell["id"] = np.arange(n)
    cell["x"], cell["y"] = m.x, m.y
    cell["offset"] = m.indptr[:-1]
    cell["geneCount"] = np.diff(m.indptr)
    cell["expCount"] = np.minimum(row_sums(m.indptr, m.count), U4)
    cell["dnbCount"] = m.dnb_count
    cell["area"] = np.minimum(m.area, U4)
    return cell


def _genes(m: CellBinMatrix) -> np.ndarray:
    g = m.n_genes
    genes = np.zeros(g, GENE_DTYPE)
    genes["geneID"] = [s.encode("utf-8") for s in m.gene_ids]
    genes["geneName"] = [s.encode("utf-8")[:64] for s in m.gene_names]
    per_gene = entries_per_gene(m)
    genes["offset"] = np.r_[0, np.cumsum(per_gene)[:-1]]
    genes["cellCount"] = per_gene
    genes["expCount"] = np.minimum(gene_sums(m, m.count), U4)
    genes["maxMIDcount"] = np.minimum(gene_max(m.gene, m.count, g), U2)
    return genes


def entries_per_gene(m: CellBinMatrix) -> np.ndarray:
    per_gene = np.zeros(m.n_genes, np.int64)
    for e0, e1 in spans(m.gene.size, ENTRY_CHUNK):
        per_gene += np.bincount(m.gene[e0:e1], minlength=m.n_genes)
    return per_gene


def gene_sums(m: CellBinMatrix, values: np.ndarray) -> np.ndarray:
    """Sum of `values` per gene as float64 (exact for integer sums below 2^53), in bounded chunks."""
    total = np.zeros(m.n_genes, np.float64)
    for e0, e1 in spans(values.size, ENTRY_CHUNK):
        total += np.bincount(m.gene[e0:e1], weights=values[e0:e1], minlength=m.n_genes)
    return total


def _top16(values: np.ndarray) -> np.ndarray:
    """The largest value clipped to uint16, as the maxCount/maxExon attributes hold it."""
    return _one(min(int(values.max(initial=0)), U2), np.uint16)


def _border_extent(m: CellBinMatrix) -> dict[str, int]:
    """min/max of the absolute border points (chip frame), a chunk of cells at a time."""
    lo, hi = [np.iinfo(np.int64).max] * 2, [np.iinfo(np.int64).min] * 2
    for c0, c1 in spans(m.n_cells, CELL_CHUNK):
        part = m.border[c0:c1]
        valid = part[..., 0] != BORDER_PAD
        for axis, centre in enumerate((m.x[c0:c1], m.y[c0:c1])):
            points = (part[..., axis].astype(np.int64) + centre[:, None])[valid]
            if points.size:
                lo[axis], hi[axis] = min(lo[axis], int(points.min())), max(hi[axis], int(points.max()))
    if hi[0] < lo[0]:
        return {"minX": 0, "minY": 0, "maxX": 0, "maxY": 0}
    return {"minX": lo[0], "minY": lo[1], "maxX": hi[0], "maxY": hi[1]}


def _write_gene_major(grp, name: str, m: CellBinMatrix, values: np.ndarray, per_gene: np.ndarray, dtype):
    """geneExp (compound: cellID + count) or geneExpExon (uint16), a range of genes at a time."""
    ds = create(grp, name, m.gene.size, dtype)
    compound = dtype.names is not None
    for start, cells, values16 in gene_major(m.gene, m.indptr, values, per_gene, cells=compound):
        if compound:
            buf = np.zeros(values16.size, dtype)
            buf["cellID"], buf["count"] = cells, values16
            values16 = buf
        ds[start : start + values16.size] = values16
    return ds


def _exon(grp, m: CellBinMatrix, per_gene: np.ndarray) -> None:
    """cellExon / cellExpExon / geneExon / geneExpExon as gefpy writes them from exon counts."""
    cell_exon = np.minimum(row_sums(m.indptr, m.exon), U2).astype(np.uint16)
    ds = grp.create_dataset("cellExon", data=cell_exon)
    ds.attrs["maxExon"] = _one(cell_exon.max(initial=0), np.uint16)
    ds.attrs["minExon"] = _one(cell_exon.min() if cell_exon.size else 0, np.uint16)
    ds = create(grp, "cellExpExon", m.exon.size, np.uint16)
    write_cell_major(ds, {None: m.exon}, m.exon.size)
    ds.attrs["maxExon"] = _top16(m.exon)
    gene_exon = np.minimum(gene_sums(m, m.exon), U4).astype(np.uint32)
    ds = grp.create_dataset("geneExon", data=gene_exon)
    ds.attrs["maxExon"] = _one(gene_exon.max(initial=0), np.uint32)
    ds.attrs["minExon"] = _one(gene_exon.min() if gene_exon.size else 0, np.uint32)
    ds = _write_gene_major(grp, "geneExpExon", m, m.exon, per_gene, np.dtype(np.uint16))
    ds.attrs["maxExon"] = _top16(m.exon)


def write_cgef(m: CellBinMatrix, path: str | os.PathLike, force: bool = False, attrs: dict | None = None) -> Path:
    """`attrs`: extra root attributes (readers ignore unknown ones)."""
    import h5py

    from csrefiner import __version__

    if m.indptr[-1] > U4:
        raise CsrefinerError(f"{path}: {m.indptr[-1]:,} non-zero entries exceed what a cell-bin GEF indexes (uint32)")
    cell = _cells(m)
    genes = _genes(m)
    per_gene = genes["cellCount"].astype(np.int64)
    border_extent = _border_extent(m)

    def fill(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
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
            _summary_attrs(
                ds,
                {
                    k: cell[c].astype(np.int64)
                    for k, c in (
                        ("Area", "area"),
                        ("DnbCount", "dnbCount"),
                        ("ExpCount", "expCount"),
                        ("GeneCount", "geneCount"),
                    )
                },
            )
            for name, values in (("X", m.x), ("Y", m.y)):
                ds.attrs[f"min{name}"] = _one(values.min(), np.int32)
                ds.attrs[f"max{name}"] = _one(values.max(), np.int32)

            ds = create(grp, "cellExp", m.gene.size, CELL_EXP_DTYPE)
            write_cell_major(ds, {"geneID": m.gene, "count": m.count}, m.gene.size)
            ds.attrs["maxCount"] = _top16(m.count)

            ds = grp.create_dataset("gene", data=genes)
            for k, c in (("CellCount", "cellCount"), ("ExpCount", "expCount")):
                ds.attrs[f"min{k}"] = _one(genes[c].min() if genes.size else 0, np.uint32)
                ds.attrs[f"max{k}"] = _one(genes[c].max(initial=0), np.uint32)

            ds = _write_gene_major(grp, "geneExp", m, m.count, per_gene, GENE_EXP_DTYPE)
            ds.attrs["maxCount"] = _top16(m.count)

            ds = grp.create_dataset("cellBorder", data=m.border)
            for name, value in border_extent.items():
                ds.attrs[name] = _one(value, np.int32)

            bw, bh = m.block_size
            grp.create_dataset("blockSize", data=np.array([bw, bh, -(-m.width // bw), -(-m.height // bh)], np.uint32))
            grp.create_dataset("blockIndex", data=m.block_index.astype(np.uint32))
            grp.create_dataset("cellTypeList", data=np.array([b"default"], dtype="S32"))
            grp.create_dataset("label", data=m.label.astype(np.uint32))
            if m.exon is not None:
                _exon(grp, m, per_gene)
        if attrs:  # a second opening, as the layout has always been written (byte-identical outputs)
            with h5py.File(tmp, "r+") as f:
                for key, value in attrs.items():
                    f.attrs[key] = value

    with atomic_path(path, force=force) as tmp:
        write_in_child(lambda: fill(tmp), path)  # a disk filling up mid-write crashes HDF5
    return Path(path)
