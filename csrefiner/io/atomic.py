"""Outputs appear whole or not at all, and a user's file is never overwritten without --force."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from csrefiner.errors import CsrefinerError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse to replace an existing output unless the user said --force."""
    path = Path(path)
    if path.exists() and not force:
        raise CsrefinerError(f"{path}: output exists; pass --force to overwrite it or choose another path")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix so writers that dispatch on extension still work.
    """
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{''.join(path.suffixes)}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces `path` only when the block succeeds."""
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str, force: bool = True) -> Path:
    """Write a small text file atomically (reports inside an output folder are ours to replace)."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text)
    return Path(path)
