"""Progress bars for long loops (rich), quiet when output is not a terminal or CSREFINER_QUIET is set."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CSREFINER_QUIET")


def track(
    items: Sequence[T] | Iterable[T], description: str, total: int | None = None, unit: str = "items"
) -> Iterable[T]:
    """Iterate `items` with a bar showing done/total, the rate in `unit`/s, elapsed and remaining time."""
    if not enabled():
        return items
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):  # rich's own speed column is for bytes
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f} {unit}/s")

    progress = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )

    def run():
        with progress:
            yield from progress.track(items, total=total, description=description)

    return run()
