"""Join an expression matrix with a uint32 instance mask into a cell x gene matrix: every mask label is a
cell (touching cells stay apart, cells without counts are kept), counts are exact.

Record (x, y) belongs to the cell `mask[y - offsetY, x - offsetX]`; offsets come from the matrix
(#OffsetX/#OffsetY, GEF minX/minY). Cells are ordered as the cell-bin GEF wants them: by block of
block_size pixels (row-major over the mask), inside a block by x then y, both descending.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.stereo.aggregate import Aggregator
from csrefiner.stereo.geometry import Geometry, mask_geometry, relabel_in_place
from csrefiner.stereo.prefetch import Prefetch
from csrefiner.stereo.source import CHUNK_ROWS, MatrixSource, open_matrix


@dataclass
class CellBinMatrix:
    """Cells in GEF order; CSR over cells with genes sorted by gene id; coordinates absolute (chip frame)."""

    label: np.ndarray  # uint32 original mask label per cell
    x: np.ndarray  # int64 cell centre, chip coordinates
    y: np.ndarray
    area: np.ndarray  # int64 mask pixels
    dnb_count: np.ndarray  # int64 DNBs with any record inside the cell
    border: np.ndarray  # (N, 32, 2) int16 offsets from (x, y)
    indptr: np.ndarray  # (N + 1,) int64
    gene: np.ndarray  # (nnz,) int64 gene index, ascending inside a cell
    count: np.ndarray  # (nnz,) int64 exact summed counts
    gene_ids: list[str]
    gene_names: list[str]
    block_size: tuple[int, int]
    block_index: np.ndarray  # (nblocks + 1,) start of each block in cell order
    offset_x: int
    offset_y: int
    width: int  # mask extent, pixels
    height: int
    resolution: int = 500
    sn: str = ""
    stats: dict = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return int(self.label.size)

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    def csr(self, dtype=np.int64):
        from scipy import sparse

        return sparse.csr_matrix(
            (self.count.astype(dtype), self.gene, self.indptr), shape=(self.n_cells, self.n_genes)
        )


def block_order(geo: Geometry, labels: np.ndarray, shape: tuple[int, int], block: tuple[int, int]):
    """Permutation of compact cells into GEF order, and the cumulative start of every block."""
    bw, bh = block
    nbx, nby = -(-shape[1] // bw), -(-shape[0] // bh)
    blk = geo.cx // bw + (geo.cy // bh) * nbx
    order = np.lexsort((labels, -geo.cy, -geo.cx, blk))
    index = np.searchsorted(blk[order], np.arange(nbx * nby + 1), side="left").astype(np.int64)
    return order, index


def _load_mask(mask: str | os.PathLike | np.ndarray) -> tuple[np.ndarray, str]:
    from csrefiner.io import as_labels, read_labels

    if isinstance(mask, np.ndarray):
        return as_labels(mask).copy(), "mask array"
    return np.ascontiguousarray(read_labels(mask)), str(mask)


def _check_declared(src: MatrixSource, shape: tuple[int, int], mask_name: str) -> None:
    """A GEF states its extent up front: compare before reading millions of records."""
    ext = src.declared_extent()
    if ext is None:
        return
    min_x, min_y, max_x, max_y = ext
    h, w = shape
    if max_x - src.offset_x >= w or max_y - src.offset_y >= h:
        raise CsrefinerError(
            f"{src.path}: matrix extent x {min_x}..{max_x}, y {min_y}..{max_y} does not fit the mask {mask_name} "
            f"({w} x {h} px), which covers x {src.offset_x}..{src.offset_x + w - 1}, y {src.offset_y}.."
            f"{src.offset_y + h - 1}; the mask must be this chip's segmentation at DNB resolution"
        )


def _gene_order(src: MatrixSource) -> tuple[np.ndarray, list[str], list[str]]:
    ids = src.genes.ids
    for name in ids:
        if len(name.encode("utf-8")) > 64:
            raise CsrefinerError(f"{src.path}: gene id {name[:80]!r} is longer than the 64 bytes a GEF can store")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids))
    names = [src.genes.names[i][:64] for i in order]
    return rank, [ids[i] for i in order], names


def build_cellbin(
    matrix: str | os.PathLike | MatrixSource,
    mask: str | os.PathLike | np.ndarray,
    block_size: int | tuple[int, int] = 256,
    chunk_rows: int = CHUNK_ROWS,
) -> CellBinMatrix:
    src = matrix if hasattr(matrix, "chunks") else open_matrix(Path(matrix), chunk_rows=chunk_rows)
    ids, mask_name = _load_mask(mask)
    _check_declared(src, ids.shape, mask_name)
    with Prefetch(src.chunks()) as chunks:  # the matrix is parsed while the mask is measured
        labels = relabel_in_place(ids, mask_name)
        n = labels.size
        geo = mask_geometry(ids, n, mask_name)
        agg = Aggregator(ids, src.offset_x, src.offset_y, str(src.path))
        for chunk in chunks:
            agg.add(chunk)
    agg.check_inside(mask_name)
    per_cell = agg.result()
    dnb = agg.dnb_counts(n)

    block = (block_size, block_size) if np.isscalar(block_size) else tuple(block_size)
    order, block_index = block_order(geo, labels, ids.shape, block)
    rank_gene, gene_ids, gene_names = _gene_order(src)
    per_cell = per_cell[order]  # rows into GEF order; columns into gene-id order, re-sorted within each row
    per_cell.indices = rank_gene[per_cell.indices].astype(per_cell.indices.dtype)
    per_cell.has_sorted_indices = False
    per_cell.sort_indices()
    indptr, gene, count = per_cell.indptr.astype(np.int64), per_cell.indices.astype(np.int64), per_cell.data

    stats = dict(
        records=agg.records, total_count=agg.total_count, cell_count=int(count.sum()),
        background_records=agg.background_records, background_count=agg.background_count,
        dnbs=int(agg.seen.sum()), dnbs_in_cells=int(dnb.sum()), matrix_extent=agg.extent.text(), kind=src.kind,
        clipped_entries=int(np.count_nonzero(count > np.iinfo(np.uint16).max)),  # the GEF stores uint16 counts
    )
    return CellBinMatrix(
        label=labels[order], x=geo.cx[order] + src.offset_x, y=geo.cy[order] + src.offset_y, area=geo.area[order],
        dnb_count=dnb[order], border=geo.border[order], indptr=indptr, gene=gene, count=count,
        gene_ids=gene_ids, gene_names=gene_names, block_size=block, block_index=block_index,
        offset_x=src.offset_x, offset_y=src.offset_y, width=ids.shape[1], height=ids.shape[0],
        resolution=src.resolution, sn=src.sn, stats=stats,
    )
