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
ENTRY_CHUNK = 1 << 22  # entries per step when reordering by gene: bounds the temporaries


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


def row_sums(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact int64 sum of each CSR row; rows without entries sum to 0."""
    sums = np.zeros(indptr.size - 1, np.int64)
    full = np.flatnonzero(np.diff(indptr) > 0)
    if full.size:
        sums[full] = np.add.reduceat(values, indptr[full], dtype=np.int64)
    return sums


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
    per_gene = np.bincount(m.gene, minlength=g)
    genes["offset"] = np.r_[0, np.cumsum(per_gene)[:-1]]
    genes["cellCount"] = per_gene
    genes["expCount"] = np.minimum(gene_sums(m, m.count), U4)
    top = np.zeros(g, np.int64)
    np.maximum.at(top, m.gene, m.count)
    genes["maxMIDcount"] = np.minimum(top, U2)
    return genes


def gene_sums(m: CellBinMatrix, values: np.ndarray) -> np.ndarray:
    """Sum of `values` per gene as float64 (exact for integer sums below 2^53), in bounded chunks."""
    total = np.zeros(m.n_genes, np.float64)
    for e0 in range(0, values.size, ENTRY_CHUNK):
        total += np.bincount(m.gene[e0 : e0 + ENTRY_CHUNK], weights=values[e0 : e0 + ENTRY_CHUNK], minlength=m.n_genes)
    return total


def gene_major(m: CellBinMatrix, columns: list[np.ndarray], per_gene: np.ndarray) -> list[np.ndarray]:
    """The entries reordered by gene (cells ascending inside a gene): [cell ids] + the given columns, each
    placed by a counting sort over bounded chunks instead of an argsort of all entries."""
    cursor = np.r_[0, np.cumsum(per_gene)[:-1]].astype(np.int64)
    out = [np.empty(m.gene.size, np.uint32)] + [np.empty(m.gene.size, c.dtype) for c in columns]
    for e0 in range(0, m.gene.size, ENTRY_CHUNK):
        e1 = min(e0 + ENTRY_CHUNK, m.gene.size)
        g = m.gene[e0:e1]
        order = np.argsort(g, kind="stable")
        gs = g[order]
        dest = cursor[gs] + (np.arange(gs.size) - np.searchsorted(gs, gs, side="left"))
        cells = np.searchsorted(m.indptr, np.arange(e0, e1), side="right") - 1
        for target, source in zip(out, [cells] + [c[e0:e1] for c in columns]):
            target[dest] = source[order]
        cursor += np.bincount(g, minlength=cursor.size)
    return out


def _exon(grp, m: CellBinMatrix, exon16: np.ndarray, gene_exon16: np.ndarray) -> None:
    """cellExon / cellExpExon / geneExon / geneExpExon as gefpy writes them from exon counts."""
    cell_exon = np.minimum(row_sums(m.indptr, m.exon), U2).astype(np.uint16)
    ds = grp.create_dataset("cellExon", data=cell_exon)
    ds.attrs["maxExon"] = _one(cell_exon.max(initial=0), np.uint16)
    ds.attrs["minExon"] = _one(cell_exon.min() if cell_exon.size else 0, np.uint16)
    grp.create_dataset("cellExpExon", data=exon16).attrs["maxExon"] = _one(exon16.max(initial=0), np.uint16)
    gene_exon = np.minimum(gene_sums(m, m.exon), U4).astype(np.uint32)
    ds = grp.create_dataset("geneExon", data=gene_exon)
    ds.attrs["maxExon"] = _one(gene_exon.max(initial=0), np.uint32)
    ds.attrs["minExon"] = _one(gene_exon.min() if gene_exon.size else 0, np.uint32)
    grp.create_dataset("geneExpExon", data=gene_exon16).attrs["maxExon"] = _one(gene_exon16.max(initial=0), np.uint16)


def write_cgef(m: CellBinMatrix, path: str | os.PathLike, force: bool = False, attrs: dict | None = None) -> Path:
    """`attrs`: extra root attributes (readers ignore unknown ones)."""
    import h5py

    from csrefiner import __version__

    if m.indptr[-1] > U4:
        raise CsrefinerError(f"{path}: {m.indptr[-1]:,} non-zero entries exceed what a cell-bin GEF indexes (uint32)")
    count16 = np.minimum(m.count, U2).astype(np.uint16)  # the format stores uint16; larger sums are clipped
    cell = _cells(m)
    genes = _genes(m)
    exon16 = None if m.exon is None else np.minimum(m.exon, U2).astype(np.uint16)
    by_gene = gene_major(m, [count16] + ([exon16] if exon16 is not None else []), genes["cellCount"])
    valid = m.border[..., 0] != BORDER_PAD
    bx = (m.border[..., 0].astype(np.int64) + m.x[:, None])[valid]
    by = (m.border[..., 1].astype(np.int64) + m.y[:, None])[valid]

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

            cell_exp = np.zeros(m.gene.size, CELL_EXP_DTYPE)
            cell_exp["geneID"], cell_exp["count"] = m.gene, count16
            grp.create_dataset("cellExp", data=cell_exp).attrs["maxCount"] = _one(count16.max(initial=0), np.uint16)
            del cell_exp

            ds = grp.create_dataset("gene", data=genes)
            for k, c in (("CellCount", "cellCount"), ("ExpCount", "expCount")):
                ds.attrs[f"min{k}"] = _one(genes[c].min() if genes.size else 0, np.uint32)
                ds.attrs[f"max{k}"] = _one(genes[c].max(initial=0), np.uint32)

            gene_exp = np.zeros(m.gene.size, GENE_EXP_DTYPE)
            gene_exp["cellID"], gene_exp["count"] = by_gene[0], by_gene[1]
            by_gene[:2] = [None, None]
            grp.create_dataset("geneExp", data=gene_exp).attrs["maxCount"] = _one(count16.max(initial=0), np.uint16)
            del gene_exp

            ds = grp.create_dataset("cellBorder", data=m.border)
            for name, values, reduce in (
                ("minX", bx, np.min),
                ("minY", by, np.min),
                ("maxX", bx, np.max),
                ("maxY", by, np.max),
            ):
                ds.attrs[name] = _one(reduce(values) if values.size else 0, np.int32)

            bw, bh = m.block_size
            grp.create_dataset("blockSize", data=np.array([bw, bh, -(-m.width // bw), -(-m.height // bh)], np.uint32))
            grp.create_dataset("blockIndex", data=m.block_index.astype(np.uint32))
            grp.create_dataset("cellTypeList", data=np.array([b"default"], dtype="S32"))
            grp.create_dataset("label", data=m.label.astype(np.uint32))
            if exon16 is not None:
                _exon(grp, m, exon16, by_gene[2])
        if attrs:  # a second opening, as the layout has always been written (byte-identical outputs)
            with h5py.File(tmp, "r+") as f:
                for key, value in attrs.items():
                    f.attrs[key] = value

    with atomic_path(path, force=force) as tmp:
        write_in_child(lambda: fill(tmp), path)  # a disk filling up mid-write crashes HDF5
    return Path(path)
