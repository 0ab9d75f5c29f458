"""Sum streamed (gene, x, y, count) records per (cell, gene) through the compact-id mask, exactly (int64).

Records inside cells are buffered as (cell, gene, count) triplets and folded into a sparse cell x gene matrix
(scipy's COO -> CSR conversion: a linear bucket sort by cell, then small per-cell sorts) whenever the buffer
outgrows the matrix, so memory follows the number of distinct (cell, gene) pairs, not the number of records.
Records on background pixels are counted, not kept. Coordinates must fall inside the mask: the first record
outside is remembered and the stream is still read to the end so the error can state the matrix's extent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.stereo.source import RecordChunk

MERGE_AT = 1 << 21  # buffered triplets before a merge; also at least the merged size (amortised doubling)
GENE_COLUMNS = 2**31 - 1  # gene ids of a streamed GEM are unknown in advance; int32 column indices


def fold(cells: list[np.ndarray], genes: list[np.ndarray], counts: list[np.ndarray], rows: int):
    """Sum triplets into a CSR matrix with sorted, distinct column indices per row (exact int64 sums)."""
    from scipy import sparse

    matrix = sparse.coo_matrix(
        (np.concatenate(counts), (np.concatenate(cells), np.concatenate(genes))), shape=(rows, GENE_COLUMNS)
    ).tocsr()
    matrix.sum_duplicates()
    return matrix


@dataclass
class Extent:
    min_x: int = np.iinfo(np.int64).max
    min_y: int = np.iinfo(np.int64).max
    max_x: int = np.iinfo(np.int64).min
    max_y: int = np.iinfo(np.int64).min

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        if x.size:
            self.min_x, self.max_x = min(self.min_x, int(x.min())), max(self.max_x, int(x.max()))
            self.min_y, self.max_y = min(self.min_y, int(y.min())), max(self.max_y, int(y.max()))

    def text(self) -> str:
        return f"x {self.min_x}..{self.max_x}, y {self.min_y}..{self.max_y}" if self.max_x >= self.min_x else "empty"


@dataclass
class Aggregator:
    ids: np.ndarray  # compact cell ids, the relabelled mask
    offset_x: int
    offset_y: int
    source: str
    extent: Extent = field(default_factory=Extent)
    records: int = 0
    total_count: int = 0
    background_records: int = 0
    background_count: int = 0
    outside: str | None = None  # first record outside the mask

    def __post_init__(self):
        self.ids = np.ascontiguousarray(self.ids)  # add() indexes the flat view
        self.seen = np.zeros(self.ids.shape, bool)  # DNBs with any record, for dnbCount
        self.rows = int(self.ids.max()) + 1  # compact ids 1..N; row 0 (background) stays empty
        self._cells: list[np.ndarray] = []
        self._genes: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._buffered = 0  # triplets appended since the last merge
        self._merged = 0  # distinct (cell, gene) pairs after the last merge

    def add(self, chunk: RecordChunk) -> None:
        x, y = chunk.x, chunk.y
        if not x.size:
            return
        self.extent.update(x, y)
        self.records += x.size
        if min(self.extent.min_x, self.extent.min_y) < 0:  # the first negative raises, so it is in this chunk
            i = int(np.argmax((x < 0) | (y < 0)))
            raise CsrefinerError(
                f"{self.source}: negative coordinate x={x[i]}, y={y[i]} at {chunk.locate(i)}; Stereo-seq DNB "
                "coordinates are >= 0 (a damaged file, or not a GEM/GEF)"
            )
        px, py = x - self.offset_x, y - self.offset_y
        h, w = self.ids.shape
        out = (px.view(np.uint64) >= w) | (py.view(np.uint64) >= h)  # unsigned view: negatives are huge
        if self.outside is None and out.any():
            i = int(np.argmax(out))
            self.outside = f"{chunk.locate(i)} (x={x[i]}, y={y[i]})"
        if self.outside is not None:
            return  # only the extent matters now: the error is raised after the last chunk
        flat = py * w + px  # flat indexing is ~2x faster than 2D fancy indexing
        self.seen.ravel()[flat] = True
        cell = self.ids.ravel().take(flat)
        inside = np.flatnonzero(cell)
        count = chunk.count
        total, kept = int(count.sum()), count.take(inside)
        self.total_count += total
        self.background_records += x.size - inside.size
        self.background_count += total - int(kept.sum())
        self._cells.append(cell.take(inside))
        self._genes.append(chunk.gene.take(inside))
        self._counts.append(kept)
        self._buffered += inside.size
        if self._buffered > max(MERGE_AT, self._merged):
            self._merge()

    def _merge(self) -> None:
        matrix = fold(self._cells, self._genes, self._counts, self.rows)
        self._cells = [np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(matrix.indptr))]
        self._genes, self._counts = [matrix.indices], [matrix.data]
        self._buffered, self._merged = 0, matrix.nnz
        self._matrix = matrix

    def check_inside(self, mask_name: str) -> None:
        if self.outside is None:
            return
        h, w = self.ids.shape
        ox, oy = self.offset_x, self.offset_y
        raise CsrefinerError(
            f"{self.source}: matrix coordinates span {self.extent.text()} but the mask {mask_name} ({w} x {h} px, "
            f"offset {ox},{oy}) covers x {ox}..{ox + w - 1}, y {oy}..{oy + h - 1}; first record outside: "
            f"{self.outside}. The mask must be the segmentation of this chip's registered image at DNB resolution "
            "(one pixel per DNB, pixel 0,0 = #OffsetX,#OffsetY); nothing is padded or cropped silently"
        )

    def result(self):
        """CSR matrix, row i = compact cell i + 1, columns = gene ids (sorted within a row), int64 counts."""
        if self._buffered or not self._cells:
            self._cells.append(np.zeros(0, np.int64))
            self._genes.append(np.zeros(0, np.int64))
            self._counts.append(np.zeros(0, np.int64))
            self._merge()
        return self._matrix[1:]

    def dnb_counts(self, n: int) -> np.ndarray:
        """DNBs with at least one record, per cell id 1..n."""
        total = np.zeros(n + 1, np.int64)
        from csrefiner.stereo.geometry import strips

        for r0, r1 in strips(*self.ids.shape):
            total += np.bincount(self.ids[r0:r1][self.seen[r0:r1]], minlength=n + 1)
        return total[1:]
