"""Where log lines go: csrefiner's own loggers, and the frameworks' noise kept from the user.

Each library module logs to `logging.getLogger(__name__)`, a child of the `csrefiner` logger; a library user
configures logging as usual. The CLI calls `configure` once, before any command imports a framework: csrefiner's
messages of level WARNING and up go to stderr (DEBUG and up with `--verbose`), and unless verbose, TensorFlow's
C++ log lines (CPU features, oneDNN, CUDA probing), absl's warnings and TensorFlow's Python warnings (tf.function
retracing) are silenced; they describe the framework, not the run, and errors still arrive as exceptions.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

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
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if importlib.util.find_spec("absl") is not None:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
