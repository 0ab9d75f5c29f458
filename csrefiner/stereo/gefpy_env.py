"""Where the reference implementation, gefpy 1.3.3, lives: its own Python 3.10 virtual environment (its wheels
stop at 3.10), built by `make venv-gefpy`. Benchmarks run it in a subprocess to time it side by side."""

from __future__ import annotations

from pathlib import Path


def gefpy_python(venv: Path) -> tuple[str | None, str]:
    """(python of the gefpy venv, "") or (None, how to build it)."""
    venv = Path(venv)
    if not (venv / ".installed").exists():
        return None, f"{venv} has no gefpy 1.3.3: run `make venv-gefpy` (needs a Python 3.10, e.g. from pyenv)"
    return str(venv / "bin" / "python"), ""
