"""The side environments some tests run in (gefpy, cellpose 4, the scverse clients, stereopy), each built by its
Makefile target; `make test-all` builds them all first, a test that finds one missing builds it the same way."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def side_venv(name: str, target: str) -> Path:
    """The venv folder, built with `make TARGET` when its `.installed` marker is missing."""
    venv = REPO / name
    if not (venv / ".installed").exists() and os.environ.get("CSREFINER_BUILD_VENVS", "1") == "1":
        proc = subprocess.run(["make", "-C", str(REPO), target], capture_output=True, text=True)
        if proc.returncode:
            print(f"\n!!! make {target} failed:\n{proc.stderr[-2000:]}")
    if not (venv / ".installed").exists():
        why = f"{name} missing and `make {target}` did not build it (no package registry?); run `make {target}`"
        if os.environ.get("CI"):  # CI builds every venv first: a missing one is a broken set-up, never a skip
            pytest.fail(why)
        pytest.skip(f"!!! NOT RUN: {why}")
    return venv
