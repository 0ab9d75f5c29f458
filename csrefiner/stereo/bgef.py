"""Stream a bin1 GEF / BGEF (HDF5): /geneExp/bin1/gene (v4: geneID + geneName, v2: gene) indexes row ranges of
/geneExp/bin1/expression {x, y, count}; minX/minY attributes are the #OffsetX/#OffsetY of the source GEM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.stereo.source import CHUNK_ROWS, GeneTable, RecordChunk

GENE = "geneExp/bin1/gene"
EXPRESSION = "geneExp/bin1/expression"
EXON = "geneExp/bin1/exon"  # exon counts parallel to the expression rows, when the GEM had ExonCount


def _text(value) -> str:
    value = np.asarray(value).ravel()[0] if np.ndim(value) else value
    return value.decode("utf-8", "replace").rstrip("\x00") if isinstance(value, bytes) else str(value)


def _attr_int(attrs, key: str, default: int | None = None) -> int | None:
    if key not in attrs:
        return default
    return int(np.asarray(attrs[key]).ravel()[0])


class BgefSource:
    kind = "GEF"

    def __init__(self, path: Path, chunk_rows: int = CHUNK_ROWS):
        import h5py

        self.path, self.chunk_rows = Path(path), int(chunk_rows)
        try:
            with h5py.File(self.path, "r") as f:
                self._read_layout(f)
        except CsrefinerError:
            raise
        except Exception as exc:  # h5py raises OSError/KeyError/TypeError variously for foreign files
            raise CsrefinerError(f"{self.path}: cannot be read as a bin1 GEF ({type(exc).__name__}: {exc})") from None

    def _read_layout(self, f) -> None:
        if "cellBin" in f:
            raise CsrefinerError(f"{self.path}: is a cell-bin GEF already; give the bin1 GEF (BGEF) or the GEM")
        if GENE not in f or EXPRESSION not in f:
            raise CsrefinerError(
                f"{self.path}: HDF5 file without /{GENE} and /{EXPRESSION}; give a bin1 GEF (BGEF) or a GEM"
            )
        genes, expr = f[GENE][()], f[EXPRESSION]
        fields = genes.dtype.names or ()
        id_field = "geneID" if "geneID" in fields else "gene" if "gene" in fields else None
        if id_field is None or "offset" not in fields or "count" not in fields:
            raise CsrefinerError(f"{self.path}: /{GENE} has fields {fields}; expected geneID/gene, offset, count")
        missing = {"x", "y", "count"} - set(expr.dtype.names or ())
        if missing:
            raise CsrefinerError(f"{self.path}: /{EXPRESSION} lacks field(s) {sorted(missing)}")
        self.n_records = int(expr.shape[0])
        self.has_exon = EXON in f
        if self.has_exon and f[EXON].shape[:1] != expr.shape[:1]:
            raise CsrefinerError(
                f"{self.path}: /{EXON} has {f[EXON].shape[0]:,} rows for {self.n_records:,} "
                "expression rows; the file is damaged"
            )
        self._gene_ranges(genes, id_field)
        attrs = expr.attrs
        self.offset_x, self.offset_y = _attr_int(attrs, "minX", 0), _attr_int(attrs, "minY", 0)
        self._max = (_attr_int(attrs, "maxX"), _attr_int(attrs, "maxY"))
        self.resolution = _attr_int(attrs, "resolution", 500)
        self.sn = _text(f.attrs["sn"]) if "sn" in f.attrs else ""

    def _gene_ranges(self, genes: np.ndarray, id_field: str) -> None:
        """Genes in offset order must tile the expression rows exactly; remember where each range ends."""
        order = np.argsort(genes["offset"], kind="stable")
        offsets = genes["offset"][order].astype(np.int64)
        counts = genes["count"][order].astype(np.int64)
        ends = np.cumsum(counts)
        if counts.size and (offsets[0] != 0 or np.any(offsets[1:] != ends[:-1]) or ends[-1] != self.n_records):
            raise CsrefinerError(
                f"{self.path}: gene offset/count ranges do not tile the {self.n_records:,} expression rows; the "
                "file is damaged or not a bin1 GEF"
            )
        if not counts.size and self.n_records:
            raise CsrefinerError(f"{self.path}: {self.n_records:,} expression rows but no genes")
        self.genes = GeneTable()
        has_name = "geneName" in (genes.dtype.names or ())
        gids = [self.genes.add(_text(g[id_field]), _text(g["geneName"]) if has_name else None) for g in genes[order]]
        self._range_gene = np.asarray(gids, np.int64)
        self._range_end = ends

    def declared_extent(self) -> tuple[int, int, int, int] | None:
        if None in self._max:
            return None
        return self.offset_x, self.offset_y, self._max[0], self._max[1]

    def chunks(self) -> Iterator[RecordChunk]:
        import h5py

        from csrefiner.progress import track

        with h5py.File(self.path, "r") as f:
            expr = f[EXPRESSION]
            exon = f[EXON] if self.has_exon else None
            starts = range(0, self.n_records, self.chunk_rows)
            for start in track(starts, f"reading {self.path.name}", total=len(starts)):
                stop = min(start + self.chunk_rows, self.n_records)
                try:
                    block = expr[start:stop]
                except OSError as exc:  # a damaged HDF5 chunk (bad compressed data, truncated copy)
                    raise CsrefinerError(
                        f"{self.path}: expression rows {start:,}..{stop:,} cannot be read ({exc}); the "
                        "file is damaged or incomplete: copy or export it again"
                    ) from None
                rows = np.arange(start, stop)
                gene = self._range_gene[np.searchsorted(self._range_end, rows, side="right")]
                yield RecordChunk(
                    gene=gene,
                    x=block["x"].astype(np.int64),
                    y=block["y"].astype(np.int64),
                    count=block["count"].astype(np.int64),
                    first=start,
                    unit="expression row",
                    exon=exon[start:stop].astype(np.int64) if exon is not None else None,
                ).checked(self.path)
