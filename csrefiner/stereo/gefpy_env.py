"""The reference implementation, gefpy 1.3.3, in its own Python 3.10 virtual environment (its wheels stop at
3.10). Tests and the benchmark run it in a subprocess to check that gefpy reads our files and to time it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

GEFPY_SPEC = "gefpy==1.3.3.post1"  # PyPI carries 1.3.3 only as this .post1 build
STAMP = ".gefpy-1.3.3.ok"


def _is_310(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_python310() -> str | None:
    """$CSREFINER_PYTHON310, python3.10 on PATH (pyenv shims can refuse), pyenv installs, system paths."""
    candidates = [os.environ.get("CSREFINER_PYTHON310"), shutil.which("python3.10")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/3.10*/bin/python3.10"), reverse=True)
    candidates += ["/usr/bin/python3.10", "/usr/local/bin/python3.10"]
    for python in candidates:
        if python and os.path.exists(python) and _is_310(python):
            return python
    return None


def gefpy_python(venv: Path, timeout: int = 300) -> tuple[str | None, str]:
    """(python of a venv with gefpy 1.3.3, "") or (None, why not). Created once, then reused."""
    venv = Path(venv)
    python = venv / "bin" / "python"
    if (venv / STAMP).exists() and python.exists():
        return str(python), ""
    base = find_python310()
    if base is None:
        return (
            None,
            "no Python 3.10 interpreter found (gefpy 1.3.3 has wheels only up to 3.10); set CSREFINER_PYTHON310",
        )
    steps = [
        [base, "-m", "venv", "--clear", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "60",
            "--retries",
            "1",
            GEFPY_SPEC,
        ],
        [str(python), "-c", "import gefpy.cgef_reader_cy, gefpy.cgef_writer_cy, gefpy.bgef_writer_cy"],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(cmd[-2:])}` timed out after {timeout} s"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(cmd[1:4])} ...` failed: {' | '.join(tail)}"
    (venv / STAMP).write_text(GEFPY_SPEC + "\n")
    return str(python), ""
