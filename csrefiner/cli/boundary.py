"""The CLI's error boundary: whatever stops a command becomes one line on stderr, a known exit code, and no
temporary output left behind.

- CsrefinerError (bad input the library recognised) and usage errors (bad option values): exit 2.
- OSError (permissions, full or read-only disk, a file where a folder is wanted, ...): exit 2, with the path
  and a fix.
- Damaged files that a reader library (tifffile, imagecodecs, h5py, gzip, zlib, PIL) fails on: exit 2.
- SIGINT, SIGTERM, SIGHUP: temps removed, exit 128 + signal number, quietly (what schedulers expect).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import zlib

from csrefiner.io.atomic import current_target, remove_temps

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

# errno -> what the user can do about it
OS_FIXES = {
    errno.EACCES: "permission denied; choose a location you can write to or fix its permissions",
    errno.EPERM: "operation not permitted; choose a location you can write to or fix its permissions",
    errno.ENOSPC: "no space left on the device; free some space or write to another disk",
    errno.EDQUOT: "disk quota exceeded; free some space or write to another disk",
    errno.EROFS: "read-only file system; write to a writable location",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EEXIST: "a file is in the way where a folder is needed; move it or choose another path",
    errno.EISDIR: "is a folder where a file is needed; choose a file path",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or run on fewer files",
    errno.EIO: "input/output error; check the disk or the network share",
}
READER_MODULES = (
    "tifffile",
    "imagecodecs",
    "h5py",
    "gzip",
    "zlib",
    "PIL",
    "zipfile",
    "lzma",
    "bz2",
    "mmap",
    "numpy._core.memmap",
    "numpy.core.memmap",
)  # memmap: a file shorter than its header says
READER_ERRORS = (OSError, ValueError, EOFError, RuntimeError, KeyError, IndexError, zlib.error)


class Interrupted(BaseException):
    """A signal asked the command to stop (BaseException: no `except Exception` in the library swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame) -> None:
    for sig in SIGNALS:  # once is enough: a second signal must not interrupt the clean-up
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup'ed runs keep ignoring SIGHUP
            signal.signal(sig, _on_signal)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def os_error_line(exc: OSError) -> str:
    """`<path>: <cause>; <fix>` for an OS error; the path is the file it names, else the output being written."""
    path = exc.filename or current_target() or _path_in_traceback(exc)
    cause = OS_FIXES.get(exc.errno)
    if cause is None:
        cause = f"{one_line(exc.strerror or exc)}; check the path and the disk"
    if "No space left" in str(exc) and exc.errno != errno.ENOSPC:  # h5py and friends wrap the errno in text
        cause = OS_FIXES[errno.ENOSPC]
    return f"{path or 'output'}: {cause}"


def _reader_frames(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if any(module == m or module.startswith(m + ".") for m in READER_MODULES):
            return True
        tb = tb.tb_next
    return False


def is_damaged_file(exc: BaseException) -> bool:
    """An error a reader library raised on bytes it could not decode (not a bug of ours)."""
    root = type(exc).__module__.split(".")[0]
    return (
        root in READER_MODULES
        or isinstance(exc, (EOFError, zlib.error))
        or (isinstance(exc, READER_ERRORS) and _reader_frames(exc))
    )


def _path_in_traceback(exc: BaseException) -> str | None:
    """The innermost existing file a csrefiner frame was handling when `exc` was raised (for the message)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        if not frame.f_globals.get("__name__", "").startswith("csrefiner"):
            continue
        for value in frame.f_locals.values():
            if isinstance(value, (str, os.PathLike)) and len(str(value)) < 4096:
                try:
                    if os.path.isfile(value):
                        return str(value)
                except (OSError, ValueError):
                    continue
    return None


def damaged_line(exc: BaseException) -> str:
    path = _path_in_traceback(exc) or "input"
    return (
        f"{path}: cannot be read ({type(exc).__name__}: {one_line(exc)[:200]}); the file looks damaged or "
        "truncated: copy or export it again"
    )


def usage_line(exc) -> str:
    """A click usage error (bad option value, missing option) as one line with where to get help."""
    msg = one_line(exc.format_message()).rstrip(".")
    where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "csrefiner"
    return f"{msg}; see '{where} --help'"


def exit_now(code: int) -> None:
    """Exit after atexit handlers but without tearing down the interpreter's objects: a library object left
    broken by a failed write (h5py on a full disk) can crash in its destructor and turn exit 2 into SIGSEGV."""
    import atexit

    remove_temps()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def fail(line: str, code: int = 2) -> None:
    import typer

    remove_temps()
    typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
    exit_now(code)


def stop(signum: int) -> None:
    exit_now(128 + signum)
