"""Segmentation model families behind one interface (`csrefiner.models.base.Backend`).

Adding a model family is adding one file in `backends/` and one line here. Backends are imported only when
used, so `csrefiner --help` and the steps that need no model never import torch or TensorFlow.
"""

from __future__ import annotations

import importlib

from csrefiner.errors import CsrefinerError

# name -> module in csrefiner.models.backends that defines `BACKEND`
BACKENDS = {
    "cellpose": "cellpose",  # Cellpose 3, CPnet (cyto3, nuclei, cyto2, ...)
    "cellvit": "cellvit",  # CellViT (ViT-256 / SAM encoders, HoVer-Net post-processing), plain torch
    "cpsam": "cpsam",  # Cellpose 4, Cellpose-SAM
    "stardist": "stardist",  # StarDist 2D (tensorflow)
    "cellbin": "cellbin",  # CellBin BCDU-Net (tensorflow), STOmics SAW
    "watershed": "watershed",  # classical, no weights: a reference / second opinion, not trainable
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str):
    if name not in BACKENDS:
        raise CsrefinerError(f"unknown model backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"csrefiner.models.backends.{BACKENDS[name]}").BACKEND
