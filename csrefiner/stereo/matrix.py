"""Open an expression matrix by its content, not its name: a GEM text file or a bin1 GEF/BGEF (HDF5). The readers
depend on the shared record types in `source`; only this module knows them all (no import cycle)."""

from __future__ import annotations

from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.stereo.source import CHUNK_ROWS, MatrixSource

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def open_matrix(path: str | Path, chunk_rows: int = CHUNK_ROWS) -> MatrixSource:
    """A GEM (.gem, .gem.gz, tab or comma separated) or a bin1 GEF/BGEF, told apart by content not by name."""
    path = Path(path)
    if not path.is_file():
        raise CsrefinerError(f"{path}: no such file; give a GEM (.gem/.gem.gz) or a bin1 GEF (.gef)")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == HDF5_MAGIC:
        from csrefiner.stereo.bgef import BgefSource

        return BgefSource(path, chunk_rows=chunk_rows)
    from csrefiner.stereo.gem import GemSource

    return GemSource(path, chunk_rows=chunk_rows)
