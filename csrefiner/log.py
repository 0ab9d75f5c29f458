"""Where log lines go: csrefiner's own loggers, and the frameworks' noise kept from the user.

Each library module logs to `logging.getLogger(__name__)`, a child of the `csrefiner` logger; a library user
configures logging as usual. The CLI calls `configure` once, before any command imports a framework: csrefiner's
messages of level WARNING and up go to stderr (DEBUG and up with `--verbose`), and unless verbose, TensorFlow's
C++ log lines (CPU features, oneDNN, CUDA probing), absl's warnings and TensorFlow's Python warnings (tf.function
retracing) are silenced; they describe the framework, not the run, and errors still arrive as exceptions.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

FORMAT = "%(levelname)s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (a test runner may swap it between CLI calls)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(verbose: bool = False) -> None:
    """csrefiner's stderr handler (added once) at WARNING, or DEBUG when `verbose`; frameworks quiet unless verbose."""
    logger = logging.getLogger("csrefiner")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        quiet_tensorflow()


def quiet_tensorflow() -> None:
    """Before TensorFlow is imported: its C++ logging off (a level the user set wins), its Python logger and
    absl's at ERROR. absl's own module is small and sets its logger up itself, so it is asked, not bypassed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # 3: not even E-lines (CUDA factories on a CPU build)
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("", "0") and "tensorflow" not in sys.modules:
        if not any(isinstance(f, _QuietTensorflowImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _QuietTensorflowImport())
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if importlib.util.find_spec("absl") is not None:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)


# TensorFlow 2.21 logs these two from C++ while it is imported, before absl reads TF_CPP_MIN_LOG_LEVEL (seen on an
# AVX-512 CPU, where oneDNN's custom operations are on by default).
_IMPORT_NOISE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on"
)


class _QuietTensorflowImport(importlib.abc.MetaPathFinder):
    """Runs the first `import tensorflow`, whoever asks for it, with stderr (fd 2) captured, then writes back every
    captured line but those two: errors and warnings of the import still reach the user. A bare find_spec (an
    "is it installed?" check) gets a wrapped spec too and leaves the finder in place for the real import."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = next(
            (s for f in sys.meta_path if f is not self and (s := _spec(f, name, path, target)) is not None), None
        )
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                if self in sys.meta_path:
                    sys.meta_path.remove(self)  # imported once: nothing left to quiet
                with _without_import_noise():
                    run(module)

            spec.loader.exec_module = exec_module
        return spec


def _spec(finder, name, path, target):
    find = getattr(finder, "find_spec", None)
    return find(name, path, target) if find else None


@contextlib.contextmanager
def _without_import_noise():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _IMPORT_NOISE.match(line.rstrip("\n")))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
