"""What every expression-matrix reader yields: chunks of (gene, x, y, count) records and a gene table.

Readers stream, so a multi-GB matrix is never held whole; genes get integer ids in order of first sight and
their names are known once the stream is exhausted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from csrefiner.errors import CsrefinerError

CHUNK_ROWS = 500_000  # records per chunk: ~50 MB while parsing, whatever the file size


@dataclass
class RecordChunk:
    """One slice of the matrix: parallel arrays, coordinates in the matrix's own (absolute) frame."""

    gene: np.ndarray  # int64 gene ids, indexes into GeneTable
    x: np.ndarray  # int64
    y: np.ndarray  # int64
    count: np.ndarray  # int64, >= 0
    exon: np.ndarray | None = None  # int64 exon counts when the matrix has them (GEM ExonCount, GEF exon)
    first: int = 0  # file line (GEM) or expression row (GEF) of record 0, for error messages
    unit: str = "line"

    def locate(self, i: int) -> str:
        return f"{self.unit} {self.first + int(i):,}"

    def checked(self, path: Path, column: str = "count") -> RecordChunk:
        """Negative counts would silently lower the cells' totals: refuse them (GEM and GEF alike)."""
        for name, values in ((column, self.count), ("exon count", self.exon)):
            if values is not None and values.size and values.min() < 0:
                bad = int(np.argmax(values < 0))
                raise CsrefinerError(
                    f"{path}: negative {name} ({values[bad]}) at {self.locate(bad)}; counts are >= 0, the matrix "
                    "is damaged or was edited: export it again"
                )
        return self


@dataclass
class GeneTable:
    """Gene ids assigned in order of first appearance; names default to the id (GEM v0.1, GEF v2)."""

    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, gene_id: str, name: str | None = None) -> int:
        gid = self.index.get(gene_id)
        if gid is None:
            gid = self.index[gene_id] = len(self.ids)
            self.ids.append(gene_id)
            self.names.append(str(name) if isinstance(name, str) and name else gene_id)
        return gid

    def __len__(self) -> int:
        return len(self.ids)


class MatrixSource(Protocol):
    path: Path
    kind: str  # "GEM" or "GEF"
    offset_x: int  # matrix coordinate of mask column 0
    offset_y: int
    resolution: int  # nm per DNB
    sn: str  # chip serial number if the file says it
    genes: GeneTable
    has_exon: bool  # chunks carry exon counts

    def chunks(self) -> Iterator[RecordChunk]: ...

    def declared_extent(self) -> tuple[int, int, int, int] | None:
        """(minX, minY, maxX, maxY) when the file states it up front (GEF), else None."""
