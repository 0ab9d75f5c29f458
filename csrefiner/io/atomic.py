"""Outputs appear whole or not at all, and a user's file is never overwritten without --force.

Every temporary output (the hidden `.NAME.*.partial*` siblings of `atomic_path` / `atomic_dir`, or any other
scratch file a writer makes) is listed in one registry while it exists, so that the CLI's error boundary and
its SIGINT/SIGTERM/SIGHUP handler can remove whatever is left when a command stops half-way:

    register_temp(path, target=None)   # a temp now exists (target: the output it will become, for messages)
    unregister_temp(path)              # it was renamed into place or removed by its owner
    remove_temps()                     # remove every registered temp (the boundary calls this)
    with scratch(near) as tmp: ...     # a registered scratch file beside `near`, removed when the block ends

Temps are created with the modes the umask gives (0644 / 0755 under umask 022), not mkstemp's 0600/0700, so
the published output is readable by whoever the umask allows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from csrefiner.errors import CsrefinerError

_TEMPS: dict[Path, Path | None] = {}  # temp -> the output it becomes (insertion order = creation order)


def register_temp(path: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """Remember a temporary file or folder so an interrupted or failed command removes it."""
    path = Path(path)
    _TEMPS[path] = Path(target) if target is not None else None
    return path


def unregister_temp(path: str | os.PathLike) -> None:
    _TEMPS.pop(Path(path), None)


def remove_temps() -> None:
    """Remove every registered temp (newest first); never raises."""
    for path in reversed(list(_TEMPS)):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
        _TEMPS.pop(path, None)


def current_target() -> Path | None:
    """The output being written most recently (names the file when an OS error carries no file name)."""
    for path in reversed(list(_TEMPS)):
        return _TEMPS[path] or path
    return None


def _name_output(exc: BaseException, tmp: Path, path: Path) -> None:
    """Make an OS error raised while writing name the output the user asked for, not our hidden temp."""
    if not isinstance(exc, OSError):
        return
    name = str(exc.filename) if exc.filename is not None else ""
    if not name:
        exc.filename = str(path)  # a failed write() carries no file name
    elif name.startswith(str(tmp)):
        exc.filename = str(path) + name[len(str(tmp)) :]


def umask() -> int:
    """The process umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: the set-and-restore idiom
    os.umask(mask)
    return mask


def _as_created(path: Path, folder: bool) -> None:
    """Give a mkstemp/mkdtemp temp the mode a plain open()/mkdir() would have given it."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse to replace an existing output unless the user said --force."""
    path = Path(path)
    if path.exists() and not force:
        raise CsrefinerError(f"{path}: output exists; pass --force to overwrite it or choose another path")
    return path


def _missing_parents(path: Path) -> list[Path]:
    """The folders above `path` that do not exist yet, innermost first (a failed write removes them again)."""
    missing = []
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            break
        missing.append(parent)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM/SIGHUP for a few statements, so a temp never exists unregistered."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} if hasattr(signal, "pthread_sigmask") else set()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held) if held else None
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _make_temp(path: Path, folder: bool) -> tuple[Path, list[Path]]:
    """The hidden sibling temp of `path` (registered) and the folders made for it; an OS error names `path`."""
    created = _missing_parents(path)
    with _signals_held():
        return _create_registered(path, folder, created), created


def _create_registered(path: Path, folder: bool, created: list[Path]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        else:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.stem}.", suffix=f".partial{''.join(path.suffixes)}", dir=path.parent
            )
            os.close(fd)
    except OSError as exc:
        _remove_empty(created)
        if exc.filename is None or ".partial" in str(exc.filename):
            exc.filename = str(path)
        raise
    return register_temp(tmp, path)


@contextlib.contextmanager
def _published(path: Path, folder: bool) -> Iterator[Path]:
    """The temp of `path`; the caller's block fills it and renames it. On any failure (signals too) the temp and
    the folders made for it are removed, and an OS error names the output rather than the temp."""
    tmp, created = _make_temp(path, folder)
    done = False
    try:
        _as_created(tmp, folder)
        yield tmp
        done = True
    except BaseException as exc:
        _name_output(exc, tmp, path)
        raise
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        unregister_temp(tmp)
        if not done:
            _remove_empty(created)


@contextlib.contextmanager
def scratch(near: str | os.PathLike, folder: bool = False) -> Iterator[Path]:
    """A registered scratch file (or folder) beside `near`, removed when the block ends, however it ends."""
    with _published(Path(near), folder) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix so writers that dispatch on extension still work.
    """
    path = check_writable(path, force)
    with _published(path, folder=False) as tmp:
        yield tmp
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces `path` only when the block succeeds."""
    path = check_writable(path, force)
    with _published(path, folder=True) as tmp:
        yield tmp
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)


def _stamp(path: Path) -> tuple | None:
    with contextlib.suppress(OSError):
        st = path.stat()
        return st.st_ino, st.st_mtime_ns, st.st_size
    return None


@contextlib.contextmanager
def outputs_together(*paths: str | os.PathLike | None) -> Iterator[None]:
    """A command with several outputs: if the block fails (or is interrupted), remove those it already wrote,
    so a non-zero exit never leaves some outputs behind."""
    paths = [Path(p) for p in paths if p is not None]
    before = {p: _stamp(p) for p in paths}
    try:
        yield
    except BaseException:
        for p in paths:
            if _stamp(p) != before[p] and p.exists():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str, force: bool = True) -> Path:
    """Write a small text file atomically (reports inside an output folder are ours to replace)."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text)
    return Path(path)
