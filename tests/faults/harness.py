"""The fault catalogue's harness: run a csrefiner command as a hostile user would, then check that it failed
cleanly: the expected exit code, one `error:` line naming what it must name, no traceback, every input
byte-identical and no new or leftover file anywhere under the working folder (hidden partials included).

A case is a function that lays out its inputs under `root` and returns the command's arguments, written
relative to `root` (the command runs there), so expected messages can name them verbatim.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fault:
    """One row of the catalogue: `build(root) -> argv`; the failure must name every string of `names`."""

    id: str
    build: Callable[[Path], list[str]]
    names: tuple[str, ...] = ()
    code: int = 2
    env: dict = field(default_factory=dict)

    def __str__(self) -> str:  # pytest ids
        return self.id


def cli_env(**extra: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "CSREFINER_QUIET": "1",
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env.update(extra)
    return env


def command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "csrefiner", *map(str, argv)]


def run(argv: list[str], root: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `csrefiner ARGV` with `root` as the working folder."""
    return subprocess.run(command(argv), capture_output=True, text=True, cwd=root, env=cli_env(**env), timeout=timeout)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root (hidden ones too): relative path -> sha256, 'dir' or 'link'."""
    seen = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            seen[rel] = "link"
        elif path.is_dir():
            seen[rel] = "dir"
        else:
            seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What changed under root, as readable lines (empty when nothing did)."""
    lines = [f"left behind: {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"removed: {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"changed: {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    return lines


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failing command may print on stderr; fails the test on anything else."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{proc.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def assert_clean_failure(
    proc: subprocess.CompletedProcess, before: dict[str, str], root: Path, names: tuple[str, ...] = (), code: int = 2
) -> str:
    """Exit code, one error line naming `names`, and nothing under root created, removed or changed."""
    assert proc.returncode == code, (
        f"exit {proc.returncode} (want {code})\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    line = error_line(proc)
    for name in names:
        assert name in line, f"{name!r} not named in: {line}"
    changes = diff(before, snapshot(root))
    assert not changes, "\n".join(changes)
    return line


def check(fault: Fault, root: Path) -> str:
    """Build the case under root, run it, and assert that it failed cleanly; returns the error line."""
    argv = fault.build(root)
    before = snapshot(root)
    proc = run(argv, root, **fault.env)
    return assert_clean_failure(proc, before, root, fault.names, fault.code)


def _default_signals() -> None:
    """The child starts as from a terminal: a suite run in the background (`cmd &` ignores SIGINT) or under
    nohup (SIGHUP) would hand those ignored dispositions down, and csrefiner rightly keeps ignoring them."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def signal_mid_run(
    argv: list[str], root: Path, sig: int, started: Callable[[Path], bool], timeout: float = 120
) -> subprocess.Popen:
    """Start `csrefiner ARGV`, wait until `started(root)` says it is writing, send `sig`, wait for the exit."""
    proc = subprocess.Popen(
        command(argv),
        cwd=root,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    deadline = time.monotonic() + timeout
    while not started(root):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"command ended or stalled before it started writing: {proc.communicate()}")
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=timeout)
    return proc


def partials(root: Path) -> list[Path]:
    """Hidden temporary outputs (`.NAME.*.partial*`, stitch canvases) anywhere under root."""
    return [p for p in Path(root).rglob(".*") if ".partial" in p.name or p.name.endswith(".canvas")]


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
