"""HDF5 files written in a forked child process.

When the disk fills half-way through an HDF5 write, h5py raises, then HDF5 fails again while h5py's destructors
close the file, and the process dies with SIGSEGV (h5py 3, HDF5 1.14). A child turns that crash into an exit
status: the parent reports the disk error as one line, like any other OSError, and removes the temp it created.
The child only writes into a temp the parent made and registered, so nothing it leaves escapes the clean-up.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

LOW_DISK = 16 << 20  # bytes free below which a crashed writer is taken to have filled the disk


def write_in_child(write: Callable[[], None], target: str | os.PathLike) -> None:
    """Run `write()` in a forked child; its exception (or crash) is raised here, naming `target`."""
    if not hasattr(os, "fork"):
        write()
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with tempfile.TemporaryFile() as err:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(write, write_end, err)
        os.close(write_end)
        try:
            with os.fdopen(read_end, "rb") as pipe:
                raised = pipe.read()
            _, status = os.waitpid(pid, 0)
        except BaseException:  # a signal stopped this command: the child must not write on
            _kill(pid)
            raise
        if status == 0:
            _replay(err)  # progress or warnings the child printed
            return
        if raised:
            raise _as_os_error(_unpickled(raised), Path(target))
        raise _crash_error(status, Path(target))


def _child(write: Callable[[], None], pipe: int, err) -> None:
    """In the child: stderr goes to a file (HDF5's destructor tracebacks must not reach the user), then exit
    without running interpreter clean-up, which is where HDF5 crashes after a failed write."""
    os.dup2(err.fileno(), 2)
    code = 0
    try:
        write()
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        code = 1
        os.write(pipe, _pickled(exc))
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _pickled(exc: BaseException) -> bytes:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - an exception that does not round-trip becomes its text
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _unpickled(data: bytes) -> BaseException:
    try:
        return pickle.loads(data)
    except Exception:  # noqa: BLE001
        return RuntimeError("the HDF5 writer failed (its error could not be read back)")


def _as_os_error(exc: BaseException, target: Path) -> BaseException:
    """HDF5 reports a failed write() as a RuntimeError whose text carries "errno = N": make it that OSError."""
    if isinstance(exc, OSError) and exc.errno:
        return exc
    found = re.search(r"errno = (\d+)", str(exc))
    if not found:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(target))


def _crash_error(status: int, target: Path) -> OSError:
    """The child died without reporting: a full disk when the target's file system has (almost) no room left."""
    folder = target.parent if target.parent.exists() else Path(".")
    if shutil.disk_usage(folder).free < LOW_DISK:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    how = f"was killed by {signal.Signals(sig).name}" if sig else f"exited with status {os.WEXITSTATUS(status)}"
    return OSError(errno.EIO, f"the HDF5 writer {how}", str(target))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _replay(err) -> None:
    err.seek(0)
    text = err.read().decode(errors="replace")
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()
