"""Join an expression matrix with a uint32 instance mask into a cell x gene matrix: every mask label is a
cell (touching cells stay apart, cells without counts are kept), counts are exact.

Record (x, y) belongs to the cell `mask[y - offsetY, x - offsetX]`; offsets come from the matrix
(#OffsetX/#OffsetY, GEF minX/minY). Cells are ordered as the cell-bin GEF wants them: by block of
block_size pixels (row-major over the mask), inside a block by x then y, both descending.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io.atomic import scratch
from csrefiner.stereo.aggregate import Aggregator, Buckets, mask_frame
from csrefiner.stereo.geometry import (
    Geometry,
    LabelSet,
    Moments,
    StarBorder,
    band_boundary,
    check_label_image,
    count_blobs,
    with_neighbour_rows,
)
from csrefiner.stereo.maskbands import MaskBands
from csrefiner.stereo.matrix import open_matrix
from csrefiner.stereo.prefetch import Background
from csrefiner.stereo.source import CHUNK_ROWS, MatrixSource


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
    gene: np.ndarray  # (nnz,) uint32 gene index, ascending inside a cell
    count: np.ndarray  # (nnz,) exact summed counts (uint32, int64 if a sum exceeds it)
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
    exon: np.ndarray | None = None  # (nnz,) exon counts, parallel to count, when the input has them

    @property
    def n_cells(self) -> int:
        return int(self.label.size)

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    def csr(self, dtype=np.int64, values: np.ndarray | None = None):
        from scipy import sparse

        values = self.count if values is None else values
        return sparse.csr_matrix((values.astype(dtype), self.gene, self.indptr), shape=(self.n_cells, self.n_genes))


def block_order(geo: Geometry, labels: np.ndarray, shape: tuple[int, int], block: tuple[int, int]):
    """Permutation of compact cells into GEF order, and the cumulative start of every block."""
    bw, bh = block
    nbx, nby = -(-shape[1] // bw), -(-shape[0] // bh)
    blk = geo.cx // bw + (geo.cy // bh) * nbx
    order = np.lexsort((labels, -geo.cy, -geo.cx, blk))
    index = np.searchsorted(blk[order], np.arange(nbx * nby + 1), side="left").astype(np.int64)
    return order, index


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


def _labels(mask: MaskBands) -> LabelSet:
    """Pass 1: the label values; a mask without any is refused."""
    labels = LabelSet()
    for _, _, band in mask.bands("cgef: mask labels"):
        labels.add(band)
    if not labels.labels().size:
        raise CsrefinerError(f"{mask.name}: the mask has no cells (every pixel is 0); give the instance label mask")
    return labels


def _geometry(mask: MaskBands, labels: LabelSet) -> Geometry:
    """Pass 2: area, centre and bounding box per cell; masks that are not instance labels are refused."""
    n = labels.values.size
    moments = Moments(n)
    for r0, c, above, below in with_neighbour_rows(mask.bands("cgef: mask geometry"), labels.compact):
        moments.add(c, r0, above, below)
    geo = moments.geometry()
    check_label_image(geo, n, mask.name, blobs=lambda: count_blobs(mask.bands("cgef: mask objects")))
    return geo


def _no_cell_hit(src: MatrixSource, buckets: Buckets, mask: MaskBands) -> CsrefinerError:
    return CsrefinerError(
        f"{src.path}: none of its {buckets.records:,} records falls on a cell: "
        f"{mask_frame(mask.name, mask.shape, src.offset_x, src.offset_y)} and the records "
        f"span {buckets.extent.text()}. This is almost surely a frame mistake: give the mask segmented from this "
        "chip's registered image at one pixel per DNB, and check the matrix's #OffsetX/#OffsetY (GEF minX/minY)"
    )


def build_cellbin(
    matrix: str | os.PathLike | MatrixSource,
    mask: str | os.PathLike | np.ndarray,
    block_size: int | tuple[int, int] = 256,
    chunk_rows: int = CHUNK_ROWS,
    workdir: str | os.PathLike | None = None,
) -> CellBinMatrix:
    """Three streamed passes over the mask (labels; geometry; borders + counts) while the matrix is parsed and
    bucketed by mask band in a background thread; temporary files live in `workdir` (default: system temp)."""
    started = time.perf_counter()
    src = matrix if hasattr(matrix, "chunks") else open_matrix(Path(matrix), chunk_rows=chunk_rows)
    block = (block_size, block_size) if np.isscalar(block_size) else tuple(block_size)
    spill_near = Path(workdir or tempfile.gettempdir()) / "csrefiner-cgef"
    with MaskBands(mask) as bands, scratch(spill_near, folder=True) as spill:
        _check_declared(src, bands.shape, bands.name)
        buckets = Buckets(
            spill / "records",
            bands.shape,
            bands.rows,
            src.offset_x,
            src.offset_y,
            str(src.path),
            exon=getattr(src, "has_exon", False),
        )
        try:
            reader = Background(src.chunks(), buckets.add)  # the matrix is parsed while the mask is measured
            try:
                labels = _labels(bands)
                geo = _geometry(bands, labels)
            except BaseException:
                reader.stop()
                raise
            reader.join()
            buckets.check_inside(bands.name)
            m = _assemble(src, bands, labels, geo, buckets, block, spill)
            m.stats["seconds"] = time.perf_counter() - started
            return m
        finally:
            buckets.close()


def _assemble(src, bands: MaskBands, labels: LabelSet, geo: Geometry, buckets: Buckets, block, spill: Path):
    """Pass 3: borders, and the records of each band joined with that band of the mask."""
    n = labels.values.size
    order, block_index = block_order(geo, labels.values, bands.shape, block)
    gef_pos = np.empty(n, np.int32 if n < 2**31 else np.int64)  # per-cell state: the narrowest type that fits
    gef_pos[order] = np.arange(n)
    rank_gene, gene_ids, gene_names = _gene_order(src)
    close_band = bands.band_of(geo.bbox[:, 3])[order].astype(np.int32)
    geo.bbox = None  # done with: the close bands say when each cell's entries are final
    agg = Aggregator(spill / "entries", gef_pos, rank_gene, close_band, buckets.exon)
    star = StarBorder(geo.cx, geo.cy)
    try:
        for r0, c, above, below in with_neighbour_rows(bands.bands("cgef: borders and counts"), labels.compact):
            star.add(*band_boundary(c, r0, above, below))
            agg.add_band(r0 // bands.rows, c, buckets.read(r0 // bands.rows))
        border = star.result()[order]  # in GEF order before the entries are read in, so never both at once
        del star, gef_pos, close_band
        if buckets.records and not agg.in_cells:
            raise _no_cell_hit(src, buckets, bands)
        indptr, gene, count, exon = agg.result()
    finally:
        agg.close()
    dnb = agg.dnb[1:]
    stats = dict(
        records=buckets.records,
        total_count=buckets.total_count,
        cell_count=int(count.sum()),
        background_records=agg.background_records,
        background_count=agg.background_count,
        dnbs=agg.dnbs,
        dnbs_in_cells=int(dnb.sum()),
        matrix_extent=buckets.extent.text(),
        kind=src.kind,
        clipped_entries=int(np.count_nonzero(count > np.iinfo(np.uint16).max)),  # the GEF stores uint16 counts
    )
    h, w = bands.shape
    return CellBinMatrix(
        label=labels.values[order],
        x=geo.cx[order] + src.offset_x,
        y=geo.cy[order] + src.offset_y,
        area=geo.area[order],
        dnb_count=dnb[order].astype(np.int64),
        border=border,
        indptr=indptr,
        gene=gene,
        count=count,
        gene_ids=gene_ids,
        gene_names=gene_names,
        block_size=block,
        block_index=block_index,
        offset_x=src.offset_x,
        offset_y=src.offset_y,
        width=w,
        height=h,
        resolution=src.resolution,
        sn=src.sn,
        stats=stats,
        exon=exon,
    )
