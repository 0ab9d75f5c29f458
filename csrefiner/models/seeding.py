"""Fixed random draws that leave the global random states as they were."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np


def _torch_fork(torch):
    """torch's own save/restore of its CPU generator and of the CUDA ones already in use (none initialised here)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    return torch.random.fork_rng(devices=devices)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside, Python's `random`, NumPy's global generator and torch (when already imported) draw from `seed`;
    on exit, also by an exception, their previous states come back. A fixed draw (validation crops) then does
    not shift the seeded training draws that follow it."""
    torch = sys.modules.get("torch")  # only a backend that uses torch has imported it
    with ExitStack() as stack:
        if torch is not None:
            stack.enter_context(_torch_fork(torch))
            torch.manual_seed(seed)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            random.seed(seed)
            np.random.seed(seed)
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
