"""The per-entry parts of the cell-bin GEF computed and written in bounded chunks: at chip scale (~50M non-zero
(cell, gene) entries) whole compound buffers, uint16 copies and a gene-major copy of the entries would each cost
as much as the entries themselves. Only the cell-major gene ids and counts are held; everything else is built
a chunk at a time and written into its slice of a dataset created at full size (same bytes as one write)."""

from __future__ import annotations

import numpy as np

U2 = np.iinfo(np.uint16).max
ENTRY_CHUNK = 1 << 22  # entries per step: bounds every temporary to a few tens of MB


def spans(n: int, size: int):
    for s0 in range(0, n, size):
        yield s0, min(s0 + size, n)


def clip16(values: np.ndarray) -> np.ndarray:
    """The GEF stores uint16 counts; larger sums are clipped."""
    return np.minimum(values, U2).astype(np.uint16)


def row_sums(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact int64 sum of each CSR row; rows without entries sum to 0. Rows are taken a chunk of entries at a
    time so no int64 copy of all values is made."""
    n = indptr.size - 1
    sums = np.zeros(n, np.int64)
    r0 = 0
    while r0 < n:
        r1 = max(r0 + 1, int(np.searchsorted(indptr, indptr[r0] + ENTRY_CHUNK, side="right")) - 1)
        r1 = min(r1, n)
        rows = indptr[r0 : r1 + 1]
        full = np.flatnonzero(np.diff(rows) > 0)
        if full.size:
            part = values[rows[0] : rows[-1]].astype(np.int64)
            sums[r0 + full] = np.add.reduceat(part, rows[full] - rows[0])
        r0 = r1
    return sums


def gene_max(gene: np.ndarray, values: np.ndarray, n_genes: int) -> np.ndarray:
    """Largest value per gene (0 for genes without entries), int64."""
    top = np.zeros(n_genes, np.int64)
    for e0, e1 in spans(gene.size, ENTRY_CHUNK):
        np.maximum.at(top, gene[e0:e1], values[e0:e1].astype(np.int64))
    return top


def create(grp, name: str, n: int, dtype):
    """A dataset of n entries, to be filled by slices (contiguous, like one written from a whole array)."""
    return grp.create_dataset(name, shape=(n,), dtype=dtype)


def write_cell_major(ds, columns: dict, n: int) -> None:
    """`columns`: field name (None for a plain dataset) -> entry array, clipped to uint16 when the field is."""
    for e0, e1 in spans(n, ENTRY_CHUNK):
        buf = np.zeros(e1 - e0, ds.dtype)
        for name, values in columns.items():
            part = values[e0:e1]
            target_dtype = buf.dtype if name is None else buf.dtype[name]
            part = clip16(part) if target_dtype == np.uint16 else part
            if name is None:
                buf[...] = part
            else:
                buf[name] = part
        ds[e0:e1] = buf


def gene_ranges(per_gene: np.ndarray, budget: int):
    """Consecutive gene ranges [g0, g1) with their entry span [start, stop): <= budget entries each, or a single
    gene holding more."""
    cum = np.cumsum(per_gene, dtype=np.int64)
    g0, start = 0, 0
    while g0 < per_gene.size:
        g1 = max(g0 + 1, int(np.searchsorted(cum, start + budget, side="right")))
        stop = int(cum[g1 - 1])
        if stop > start:
            yield g0, g1, start, stop
        g0, start = g1, stop


def gene_major(gene, indptr, values, per_gene, cells: bool):
    """Entries in gene order (cells ascending inside a gene), one gene range at a time: yields (start, cell ids
    or None, uint16 values). Each range is gathered by a scan of the cell-major entries (a counting sort); the
    ranges are few because each holds up to ENTRY_CHUNK entries."""
    for g0, g1, start, stop in gene_ranges(per_gene, ENTRY_CHUNK):
        cursor = np.cumsum(np.r_[0, per_gene[g0 : g1 - 1]]).astype(np.int64)
        out_cells = np.empty(stop - start, np.uint32) if cells else None
        out_values = np.empty(stop - start, np.uint16)
        for e0, e1 in spans(gene.size, ENTRY_CHUNK):
            g = gene[e0:e1]
            sel = np.flatnonzero((g >= g0) & (g < g1))
            if not sel.size:
                continue
            local = g[sel].astype(np.int64) - g0
            order = np.argsort(local, kind="stable")
            local, sel = local[order], sel[order]
            dest = cursor[local] + (np.arange(local.size) - np.searchsorted(local, local, side="left"))
            if cells:
                out_cells[dest] = np.searchsorted(indptr, sel + e0, side="right") - 1
            out_values[dest] = clip16(values[e0:e1][sel])
            cursor += np.bincount(local, minlength=cursor.size)
        yield start, out_cells, out_values
