"""Sum streamed (gene, x, y, count[, exon]) records per (cell, gene) through the mask, exactly, without the mask
in memory.

GEM records come in any order, so they are first bucketed by mask band: each chunk is sorted by band and
appended to a spill file next to the output (12 B per record, 16 with exon counts), with an index of where each
band's records sit. Then, band by band, the band's records look up their cell in that band of the mask, DNBs
are counted per cell (distinct positions in the band), and (cell, gene) sums are folded. A cell's entries are
final once the band holding its last row is done; entries of cells that continue below are carried to the next
band (bounded by the cells crossing one band edge). Final entries are spilled too and placed into the GEF's
cell order at the end, so the entries are held once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.stereo.source import RecordChunk

U4 = np.iinfo(np.uint32).max


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


def record_dtype(exon: bool) -> np.dtype:
    fields = [("pix", "<u4"), ("gene", "<u4"), ("count", "<u4")]
    return np.dtype(fields + [("exon", "<u4")] if exon else fields)


def mask_frame(name: str, shape: tuple[int, int], ox: int, oy: int) -> str:
    """Where a mask lies in the chip frame, for messages about records that miss it."""
    h, w = shape
    return f"the mask {name} ({w} x {h} px, offset {ox},{oy}) covers x {ox}..{ox + w - 1}, y {oy}..{oy + h - 1}"


@dataclass
class Buckets:
    """Records spilled by mask band: `add` chunks in any order, then `read(band)` (pixel index within the band)."""

    path: Path
    shape: tuple[int, int]  # mask (H, W)
    rows: int  # rows per band
    offset_x: int
    offset_y: int
    source: str
    exon: bool = False
    extent: Extent = field(default_factory=Extent)
    records: int = 0
    total_count: int = 0
    outside: str | None = None  # first record outside the mask

    def __post_init__(self):
        self.n_bands = -(-self.shape[0] // self.rows)
        self.dtype = record_dtype(self.exon)
        self._file = open(self.path, "wb+")
        self._segments: list[tuple[int, np.ndarray]] = []  # (file offset, cumulative records per band)

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
        self.total_count += int(chunk.count.sum())
        px, py = x - self.offset_x, y - self.offset_y
        h, w = self.shape
        out = (px.view(np.uint64) >= w) | (py.view(np.uint64) >= h)  # unsigned view: negatives are huge
        if self.outside is None and out.any():
            i = int(np.argmax(out))
            self.outside = f"{chunk.locate(i)} (x={x[i]}, y={y[i]})"
        if self.outside is not None:
            return  # only the extent matters now: the error is raised after the last chunk
        self._check_u4(chunk)
        band = py // self.rows
        order = np.argsort(band, kind="stable")
        rec = np.empty(x.size, self.dtype)
        rec["pix"] = ((py - band * self.rows) * w + px)[order]
        rec["gene"] = chunk.gene[order]
        rec["count"] = chunk.count[order]
        if self.exon:
            rec["exon"] = chunk.exon[order]
        cum = np.r_[0, np.cumsum(np.bincount(band, minlength=self.n_bands))]
        self._segments.append((self._file.tell(), cum))
        self._file.write(rec.tobytes())

    def _check_u4(self, chunk: RecordChunk) -> None:
        columns = [("count", chunk.count)] + ([("exon count", chunk.exon)] if self.exon else [])
        for name, values in columns:
            if values.size and values.max() > U4:
                i = int(np.argmax(values > U4))
                raise CsrefinerError(
                    f"{self.source}: {name} {values[i]} at {chunk.locate(i)} exceeds 4,294,967,295; "
                    "no DNB holds that many reads (a damaged file)"
                )

    def check_inside(self, mask_name: str) -> None:
        if self.outside is None:
            return
        raise CsrefinerError(
            f"{self.source}: matrix coordinates span {self.extent.text()} but "
            f"{mask_frame(mask_name, self.shape, self.offset_x, self.offset_y)}; first record outside: "
            f"{self.outside}. The mask must be the segmentation of this chip's registered image at DNB resolution "
            "(one pixel per DNB, pixel 0,0 = #OffsetX,#OffsetY); nothing is padded or cropped silently"
        )

    def read(self, band: int) -> np.ndarray:
        self._file.flush()
        parts = []
        for offset, cum in self._segments:
            n = int(cum[band + 1] - cum[band])
            if n:
                size = self.dtype.itemsize
                data = os.pread(self._file.fileno(), n * size, offset + int(cum[band]) * size)
                parts.append(np.frombuffer(data, self.dtype))
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)

    def close(self) -> None:
        self._file.close()


def fold(keys: np.ndarray, values: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct sorted keys and the exact int64 sum of each value column per key."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, np.int64)
    sums = [np.add.reduceat(v[order].astype(np.int64), starts) if keys.size else np.zeros(0, np.int64) for v in values]
    return keys[starts], sums


class Aggregator:
    """Per band: cell lookup, DNB counts, (cell, gene) folding; cells and genes already in GEF order.

    Entries are keyed cell position (GEF order) * genes + gene rank (geneID order); `close_band[pos]` is the
    band of the cell's last row, after which its entries are final."""

    def __init__(self, path: Path, gef_pos: np.ndarray, gene_rank: np.ndarray, close_band: np.ndarray, exon: bool):
        self.gef_pos = gef_pos  # compact id - 1 -> position in GEF order
        self.gene_rank = gene_rank
        self.genes = max(int(gene_rank.size), 1)
        self.close_band = close_band  # by GEF position
        self.exon = exon
        n = gef_pos.size
        self.genes_per_cell = np.zeros(n, np.int32)  # <= genes per cell
        self.dnb = np.zeros(n + 1, np.int32)  # by compact id; <= the cell's area
        self.dnbs = 0
        self.background_records = 0
        self.background_count = 0
        self.in_cells = 0
        self._carry_keys = np.zeros(0, np.int64)
        self._carry = [np.zeros(0, np.int64)] * (2 if exon else 1)
        self._file = open(path, "wb+")
        self._runs: list[tuple[int, int]] = []  # (file offset, entries) of each band's final entries
        self._entry = np.dtype([("key", "<i8"), ("count", "<i8")] + ([("exon", "<i8")] if exon else []))

    def add_band(self, band: int, c: np.ndarray, rec: np.ndarray) -> None:
        pix = rec["pix"]
        cell = c.reshape(-1).take(pix)
        seen = np.zeros(c.size, bool)  # DNBs with a record, in this band only
        seen[pix] = True
        dnb_pix = np.flatnonzero(seen)
        self.dnbs += dnb_pix.size
        self.dnb += np.bincount(c.reshape(-1).take(dnb_pix), minlength=self.dnb.size)
        del seen, dnb_pix
        inside = np.flatnonzero(cell)
        count = rec["count"]
        kept = count.take(inside)
        self.in_cells += inside.size
        self.background_records += pix.size - inside.size
        self.background_count += int(count.sum(dtype=np.int64)) - int(kept.sum(dtype=np.int64))
        pos = self.gef_pos[cell.take(inside).astype(np.int64) - 1].astype(np.int64)
        keys = pos * self.genes + self.gene_rank[rec["gene"].take(inside)]
        values = [kept] + ([rec["exon"].take(inside)] if self.exon else [])
        keys, sums = fold(
            np.concatenate([self._carry_keys, keys]),
            [np.concatenate([a, b.astype(np.int64)]) for a, b in zip(self._carry, values)],
        )
        final = self.close_band[keys // self.genes] <= band
        self._carry_keys, self._carry = keys[~final], [s[~final] for s in sums]
        self._write(keys[final], [s[final] for s in sums])

    def _write(self, keys: np.ndarray, sums: list[np.ndarray]) -> None:
        if not keys.size:
            return
        run = np.empty(keys.size, self._entry)
        run["key"] = keys
        for name, s in zip(self._entry.names[1:], sums):
            run[name] = s
        self.genes_per_cell += np.bincount(keys // self.genes, minlength=self.genes_per_cell.size)
        self._runs.append((self._file.tell(), keys.size))
        self._file.write(run.tobytes())

    def result(self):
        """indptr (N + 1), gene rank (nnz, uint32), count and exon (nnz; uint32 unless a sum needs int64; exon
        None without exon input), in GEF order."""
        assert not self._carry_keys.size, "every cell closes in some band"
        self._file.flush()
        indptr = np.r_[0, np.cumsum(self.genes_per_cell)].astype(np.int64)
        nnz = int(indptr[-1])
        gene = np.empty(nnz, np.uint32)
        columns = [np.empty(nnz, np.uint32) for _ in self._entry.names[1:]]
        for offset, n in self._runs:
            run = np.frombuffer(os.pread(self._file.fileno(), n * self._entry.itemsize, offset), self._entry)
            pos = run["key"] // self.genes
            dest = indptr[pos] + (np.arange(n) - np.searchsorted(pos, pos, side="left"))
            gene[dest] = run["key"] % self.genes
            for i, name in enumerate(self._entry.names[1:]):
                if columns[i].dtype != np.int64 and run[name].max(initial=0) > U4:
                    columns[i] = columns[i].astype(np.int64)  # exact sums beyond uint32: rare, widen once
                columns[i][dest] = run[name]
        return indptr, gene, columns[0], columns[1] if self.exon else None

    def close(self) -> None:
        self._file.close()
