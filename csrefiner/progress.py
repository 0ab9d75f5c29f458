"""Progress bars for long loops (rich), quiet when output is not a terminal or CSREFINER_QUIET is set."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Sequence, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CSREFINER_QUIET")


def track(items: Sequence[T] | Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    if not enabled():
        return items
    from rich.progress import track as rich_track

    return rich_track(items, description=description, total=total, transient=True, console=None)
