"""csrefiner.log: TensorFlow's import-time C++ lines (absl's preamble, the oneDNN notice printed on AVX-512 CPUs
whatever TF_CPP_MIN_LOG_LEVEL says) are dropped from stderr; every other line of the import still reaches it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796404811.563658    6452 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors.\n"
)
REAL = "E0000 00:00:1.0 1 cuda_dnn.cc:1] a real failure the user must see\n"

PROGRAM = """
import importlib.util, os, sys
from csrefiner.log import configure
configure({verbose})
assert importlib.util.find_spec("tensorflow") is not None  # an "is it installed?" check must not use up the filter
import tensorflow
os.write(2, b"after\\n")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflow_import_noise_is_dropped_and_the_rest_kept(tmp_path, verbose):
    fake = tmp_path / "tensorflow"
    fake.mkdir()  # writes to fd 2 from "C++" (os.write), as TensorFlow's shared libraries do
    (fake / "__init__.py").write_text(f"import os\nos.write(2, {(NOISE + REAL + NOISE).encode()!r})\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM.format(verbose=verbose))],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    expected = NOISE + REAL + NOISE + "after\n" if verbose else REAL + "after\n"
    assert proc.stderr == expected
