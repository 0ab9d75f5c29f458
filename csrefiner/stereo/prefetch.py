"""Read the matrix in a background thread while the caller works on the mask: pandas' tokenizer, zlib and most
numpy work release the GIL, so parsing (and bucketing) the records overlaps with the mask passes on a second
core."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class Background:
    """Run `feed(item)` for every item of an iterable in a thread; `join()` waits and re-raises its error,
    `stop()` makes it give up at the next item (the caller failed first)."""

    def __init__(self, items: Iterable[T], feed):
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(items, feed), daemon=True)
        self._thread.start()

    def _run(self, items, feed) -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if self._stop.is_set():
                    return
                feed(item)
        except BaseException as exc:  # handed to the caller by join()
            self._error = exc
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
