"""Shared test helpers: run the real CLI in a subprocess, make generated data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("CSREFINER_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m csrefiner ARGS` as a user would; returns the completed process (text output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "csrefiner", *map(str, args)], capture_output=True, text=True, env=env, cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"csrefiner {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def real_nuclei():
    """The real annotated fluorescence nuclei image that the stardist package ships (image, uint32 mask)."""
    data = pytest.importorskip("stardist.data")
    img, mask = data.test_image_nuclei_2d(return_mask=True)
    return img, mask.astype(np.uint32)
