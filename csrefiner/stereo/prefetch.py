"""Read the next chunks in a background thread while the caller works: pandas' tokenizer and zlib release the
GIL, so parsing the matrix overlaps with the mask geometry and the per-chunk aggregation on a second core.
At most `depth` chunks wait in the queue, so memory stays bounded."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetch(Iterator[T]):
    def __init__(self, items: Iterable[T], depth: int = 1):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterable[T]) -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not self._put((item, None)):
                    return
            self._put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_DONE, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __next__(self) -> T:
        item, exc = self._queue.get()
        if exc is not None:
            self.close()
            raise exc
        if item is _DONE:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the reader (also when the consumer gives up early) and wait for it."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
