"""Outputs never overlap inputs: `--force` replaces a previous output, never the data a command reads.

Every writing command calls `check_outputs(inputs, outputs)` first, before any work: an output may not be an
input, contain one (a folder output holding an input file) or lie inside an input folder. Symlinks are
resolved, so a link to the input is the input. Inputs that do not exist are left to the command to report.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from csrefiner.errors import CsrefinerError

PathLike = str | os.PathLike


def _overlap(out: Path, inp: Path) -> str | None:
    """How `out` overlaps `inp` (both resolved), or None."""
    if out == inp:
        return "is the input"
    if out in inp.parents:
        return "contains the input"
    if inp in out.parents and inp.is_dir():
        return "lies inside the input folder"
    return None


def check_outputs(inputs: Iterable[PathLike | None], outputs: Iterable[PathLike | None]) -> None:
    """Refuse (one line naming both) when an output equals, contains or lies inside an input."""
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    for out in (Path(p) for p in outputs if p is not None and str(p) != ""):
        resolved = out.resolve()
        for inp in (i for i in ins if i.exists()):  # a missing input is reported by the command itself
            how = _overlap(resolved, inp.resolve())
            if how:
                raise CsrefinerError(
                    f"{out}: this output {how} {inp}; choose an output outside the inputs "
                    "(--force replaces a previous output, never an input)"
                )
