"""Segmentation model families behind one interface (`csrefiner.models.base.Backend`).

Adding a model family is adding one file in `backends/` and one entry in `registry.py` (then
`python -m csrefiner.models.registry --write` copies it into the pipeline). Backends are imported only when
used, so `csrefiner --help` and the steps that need no model never import torch or TensorFlow.
"""

from __future__ import annotations

import importlib

from csrefiner.errors import CsrefinerError


def backend_names() -> list[str]:
    from csrefiner.models.registry import BACKENDS  # here, so `python -m csrefiner.models.registry` runs it fresh

    return list(BACKENDS)


def get_backend(name: str):
    from csrefiner.models.registry import BACKENDS

    if name not in BACKENDS:
        raise CsrefinerError(f"unknown model backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"csrefiner.models.backends.{BACKENDS[name].module}").BACKEND
