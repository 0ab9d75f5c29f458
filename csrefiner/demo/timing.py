"""Per-step wall-clock and CPU time: on a shared machine the CPU time tells what an idle one would take."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator


class StepTimes:
    def __init__(self, say: Callable[[str], None] = lambda msg: None):
        self.steps: list[dict] = []
        self.say = say
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"[demo] {name} ...")
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        row = {
            "step": name,
            "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
        }
        self.steps.append(row)
        self.say(f"[demo] {name}: {row['wall_s']} s (CPU {row['cpu_s']} s)")

    def total(self) -> dict:
        return {
            "wall_s": round(time.perf_counter() - self._start, 1),
            "cpu_s": round(time.process_time() - self._cpu, 1),
        }


def machine() -> str:
    """Where the times were measured."""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores visible, {platform.system()} {platform.release()}"
