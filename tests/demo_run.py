"""The demo tier's one end-to-end run: `csrefiner demo run --quick` through the real CLI, made once per pytest
session and shared by tests/test_demo.py (its assertions) and tests/test_pipeline_flow.py (each pipeline task
of -profile test, fed this run's files, must give this run's outputs).

Its options are -profile test's (conf/test.config: the quick preset, Cellpose trained from scratch, seed 0) plus
one backend that cannot run here, whose skip note the demo test checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

UNAVAILABLE = "no_such_backend"


@dataclass(frozen=True)
class DemoRun:
    out: Path  # the run folder (csrefiner/demo/layout.py)
    summary: dict  # its summary.json
    stdout: str


_RUNS: dict[str, DemoRun] = {}


def demo_run(tmp_path_factory) -> DemoRun:
    """The session's run (made on first use; a module fixture of each test file returns it)."""
    if "quick" not in _RUNS:
        from conftest import run_cli

        out = tmp_path_factory.mktemp("demo") / "run"
        args = ["--quick", "--seed", "0", "--models", f"cellpose,{UNAVAILABLE}", "--pretrained", "scratch"]
        proc = run_cli("demo", "run", "--out", out, *args)
        _RUNS["quick"] = DemoRun(out, json.loads((out / "summary.json").read_text()), proc.stdout)
    return _RUNS["quick"]
