"""Stream a GEM text matrix (gz or plain, tab or comma separated) by column NAME, in chunks.

Columns: geneID, optional geneName, x, y, MIDCount (or UMICount), optional ExonCount; `#Key=Value` header
lines before the column row (#FileFormat, #OffsetX, #OffsetY, #Stereo-seqChip ...). gefpy reads columns by
position and trusts #FileFormat; here a header that contradicts the columns, or rows that do not match the
column row, are errors.
"""

from __future__ import annotations

import gzip
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from csrefiner.errors import CsrefinerError
from csrefiner.stereo.source import CHUNK_ROWS, GeneTable, RecordChunk

GZIP_MAGIC = b"\x1f\x8b"
# canonical name -> accepted spellings (compared case-insensitively)
COLUMNS = {
    "geneID": ("geneid",),
    "geneName": ("genename",),
    "x": ("x",),
    "y": ("y",),
    "count": ("midcount", "midcounts", "umicount", "umicounts"),
    "exon": ("exoncount",),
}
REQUIRED = ("geneID", "x", "y", "count")
FORMATS = {"GEMv0.1": False, "GEMv0.2": True}  # format -> has a geneName column
MAX_HEADER_LINES = 1000


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(text stream, raw file): the raw file's position tells how much of the file has been read."""
    raw = open(path, "rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    raw.seek(0)
    return raw, raw


def _decode(line: bytes, path: Path, lineno: int) -> str:
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise CsrefinerError(f"{path}: line {lineno} is not text; give a GEM (.gem / .gem.gz) or a bin1 GEF") from None


def read_header(stream: IO[bytes], path: Path) -> tuple[dict[str, str], str, int]:
    """Consume the `#` lines and the column row: (#key -> value, column row, lines consumed)."""
    meta: dict[str, str] = {}
    for lineno in range(1, MAX_HEADER_LINES + 1):
        try:
            raw = stream.readline()
        except (OSError, EOFError) as exc:
            raise CsrefinerError(f"{path}: cannot be read ({exc}); is the .gz file complete?") from None
        if not raw:
            raise CsrefinerError(f"{path}: ends before the column row (geneID, x, y, MIDCount); is it a GEM?")
        line = _decode(raw, path, lineno)
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            meta[key.strip()] = value.strip()
        elif line.strip():
            return meta, line, lineno
    raise CsrefinerError(f"{path}: no column row in the first {MAX_HEADER_LINES} lines; is it a GEM?")


def parse_columns(row: str, path: Path) -> tuple[str, list[str], dict[str, str]]:
    """(separator, column names as written, canonical name -> written name)."""
    sep = "\t" if "\t" in row else "," if "," in row else None
    if sep is None:
        raise CsrefinerError(
            f"{path}: column row {row[:80]!r} is neither tab- nor comma-separated; expected geneID, x, y, MIDCount"
        )
    names = [c.strip() for c in row.split(sep)]
    if len(set(names)) < len(names):
        raise CsrefinerError(f"{path}: column row repeats a name: {names}")
    found: dict[str, str] = {}
    for name in names:
        for canon, spellings in COLUMNS.items():
            if name.lower() in spellings:
                if canon in found:
                    raise CsrefinerError(f"{path}: both {found[canon]!r} and {name!r} columns; keep one count column")
                found[canon] = name
    missing = [c if c != "count" else "MIDCount (or UMICount)" for c in REQUIRED if c not in found]
    if missing:
        raise CsrefinerError(
            f"{path}: missing column(s) {', '.join(missing)}; the column row is {names}. A GEM needs geneID, x, y "
            "and MIDCount (geneName, ExonCount optional) named in its first non-# line"
        )
    return sep, names, found


def check_declared_format(meta: dict[str, str], found: dict[str, str], path: Path) -> None:
    """#FileFormat must agree with the columns: GEMv0.2 has geneName, GEMv0.1 has not."""
    declared = meta.get("FileFormat")
    if declared is None:
        return
    version = re.match(r"(GEMv0\.[12])(?:\.\d+)*$", declared)
    if version is None:
        raise CsrefinerError(f"{path}: #FileFormat={declared} is not a GEM format csrefiner knows (GEMv0.1, GEMv0.2)")
    has_name = "geneName" in found
    if FORMATS[version.group(1)] != has_name:
        raise CsrefinerError(
            f"{path}: header says #FileFormat={declared} but the columns {'have' if has_name else 'lack'} geneName; "
            "the header lies about the format (GEMv0.1 = geneID x y MIDCount, GEMv0.2 adds geneName): fix the "
            "#FileFormat line or the columns"
        )


def _int_meta(meta: dict[str, str], key: str, path: Path) -> int:
    value = meta.get(key, "0") or "0"
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise CsrefinerError(f"{path}: #{key}={value} is not an integer")
    return int(number)


class _ByteProgress:
    """A progress bar over the bytes of the (compressed) file; silent when progress is disabled."""

    def __init__(self, raw: IO[bytes], total: int, description: str):
        from csrefiner.progress import enabled

        self.raw, self.bar = raw, None
        if enabled():
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(description), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True
            )
            self.task = self.bar.add_task(description, total=total)
            self.bar.start()

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.raw.tell())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class GemSource:
    kind = "GEM"

    def __init__(self, path: Path, chunk_rows: int = CHUNK_ROWS):
        self.path, self.chunk_rows = Path(path), int(chunk_rows)
        stream, raw = _open(self.path)
        try:
            self.meta, row, self.header_lines = read_header(stream, self.path)
        finally:
            stream.close(), raw.close()
        self.sep, self.names, self.found = parse_columns(row, self.path)
        check_declared_format(self.meta, self.found, self.path)
        self.offset_x = _int_meta(self.meta, "OffsetX", self.path)
        self.offset_y = _int_meta(self.meta, "OffsetY", self.path)
        self.resolution = 500
        self.sn = self.meta.get("Stereo-seqChip", self.meta.get("Stereo-seqChipID", ""))
        self.genes = GeneTable()
        self.has_exon = "exon" in self.found

    def declared_extent(self) -> None:
        return None

    def _dtypes(self) -> dict[str, str]:
        f = self.found
        dtypes = {f["geneID"]: "category", f["x"]: "int64", f["y"]: "int64", f["count"]: "int64"}
        if "geneName" in f:
            dtypes[f["geneName"]] = "category"
        if "exon" in f:
            dtypes[f["exon"]] = "int64"
        return dtypes

    def _reader(self, stream: IO[bytes]):
        return pd.read_csv(
            stream,
            sep=self.sep,
            header=None,
            names=self.names,
            index_col=False,
            dtype=self._dtypes(),
            chunksize=self.chunk_rows,
            engine="c",
            na_filter=False,  # empty fields fail the int parse instead
        )

    def _fail(self, exc: Exception, first_row: int) -> CsrefinerError:
        # pandas numbers lines from where it started reading: shift to file lines
        text = re.sub(r"line (\d+)", lambda m: f"line {int(m.group(1)) + self.header_lines}", str(exc)).strip()
        return CsrefinerError(
            f"{self.path}: rows do not match the column row {self.names} ({'tab' if self.sep == chr(9) else 'comma'}"
            f"-separated): a missing, extra or non-integer x / y / count field in the chunk starting at line "
            f"{first_row + 1 + self.header_lines:,} ({text})"
        )

    def _gene_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Map this chunk's gene categories to global gene ids (names from the first row of each gene)."""
        ids = frame[self.found["geneID"]]
        codes = ids.cat.codes.to_numpy()
        cats = ids.cat.categories
        if (codes.size and codes.min() < 0) or "" in cats:
            raise CsrefinerError(f"{self.path}: a row has an empty geneID")
        names = None
        if "geneName" in self.found:
            used, first = np.unique(codes, return_index=True)
            name_col = frame[self.found["geneName"]].to_numpy()
            names = dict(zip(used.tolist(), name_col[first].tolist()))
        lookup = np.array(
            [self.genes.add(str(c), None if names is None else names.get(i)) for i, c in enumerate(cats)], np.int64
        )
        return lookup[codes] if lookup.size else np.zeros(0, np.int64)

    def chunks(self) -> Iterator[RecordChunk]:
        stream, raw = _open(self.path)
        progress = _ByteProgress(raw, self.path.stat().st_size, f"reading {self.path.name}")
        rows = 0
        try:
            read_header(stream, self.path)
            with self._parsing(rows):  # pandas may parse the first rows already here
                reader = self._reader(stream)
            while True:
                frame = self._next(reader, rows)
                if frame is None:
                    break
                chunk = self._chunk(frame, rows)
                rows += len(frame)
                progress.update()
                yield chunk
        finally:
            progress.close()
            stream.close(), raw.close()

    def _next(self, reader, rows: int) -> pd.DataFrame | None:
        with self._parsing(rows):
            try:
                return next(reader)
            except StopIteration:
                return None

    @contextmanager
    def _parsing(self, rows: int):
        """pandas' parse errors as one line naming the file and where (rows: data rows read so far)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)  # extra fields would be dropped silently
                warnings.simplefilter("ignore", RuntimeWarning)  # float casts of bad counts; the error follows
                yield
        except UnicodeDecodeError as exc:
            raise CsrefinerError(
                f"{self.path}: not UTF-8 text after data row {rows:,} ({exc.reason} at byte {exc.start}: a gene id "
                "in another encoding?); re-save the GEM as UTF-8"
            ) from None
        except OverflowError:
            raise CsrefinerError(
                f"{self.path}: a number in the chunk starting at line {rows + 1 + self.header_lines:,} is too large "
                "for an integer x / y / count (beyond 2^63); the file is damaged: export the GEM again"
            ) from None
        except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning) as exc:
            raise self._fail(exc, rows) from None
        except (OSError, EOFError) as exc:
            raise CsrefinerError(
                f"{self.path}: cannot be read after data row {rows:,} ({exc}); is the .gz file complete?"
            ) from None

    def _chunk(self, frame: pd.DataFrame, first_row: int) -> RecordChunk:
        f = self.found
        return RecordChunk(
            gene=self._gene_ids(frame),
            x=frame[f["x"]].to_numpy(np.int64),
            y=frame[f["y"]].to_numpy(np.int64),
            count=frame[f["count"]].to_numpy(np.int64),
            first=first_row + 1 + self.header_lines,
            unit="line",
            exon=frame[f["exon"]].to_numpy(np.int64) if "exon" in f else None,
        ).checked(self.path, f["count"])
