"""The model backends: ONE table, read by the Python code and copied into the pipeline's files.

A row says what a backend is outside its own code: its `--model` name, the module in `csrefiner/models/backends/`
that defines `BACKEND`, the container image family that runs it (a folder under `containers/`), its default
pretrained model, the pip extra that installs it, whether it can use a GPU and whether it can be fine-tuned.
How it trains and predicts, and its `--option`s, stay in its module.

The pipeline (Groovy, JSON) cannot import this table, so its copies are generated from it:

    python -m csrefiner.models.registry --check   # every place that disagrees with the table, one line each
    python -m csrefiner.models.registry --write   # rewrite those places from the table

(`csrefiner/models/registry_files.py`; tests/test_registry.py runs the check). Standard library only and no
import of the backends, so reading the table stays cheap (`csrefiner --help` never imports a framework).
"""

from __future__ import annotations

from dataclasses import dataclass

BASE = "base"  # the base image / install: what needs no extra


@dataclass(frozen=True)
class Entry:
    name: str  # the `--model` value
    module: str  # csrefiner.models.backends.<module> defines BACKEND
    image: str  # container family (containers/<image>/Dockerfile) that runs it in the pipeline
    default_pretrained: str
    extra: str  # pip extra that installs what it needs (BASE: nothing beyond the base install)
    gpu: bool  # can run on --device cuda
    trainable: bool  # `finetune` works (and the pipeline's --models lists it)
    family: str  # what it is, in a few words


ENTRIES = (
    Entry(
        "cellpose", "cellpose", "cellpose", "cyto3", "cellpose", gpu=True, trainable=True, family="Cellpose 3 (CPnet)"
    ),
    Entry(
        "cellvit",
        "cellvit",
        "cellvit",
        "CellViT-256-x40",
        "cellvit",
        gpu=True,
        trainable=True,
        family="CellViT (ViT-256 / SAM encoder, HoVer-Net post-processing), plain torch",
    ),
    Entry(
        "cpsam",
        "cpsam",
        "cpsam",
        "cpsam_v2",
        "cpsam",
        gpu=True,
        trainable=True,
        family="Cellpose-SAM (cellpose 4), its own environment",
    ),
    Entry(
        "stardist",
        "stardist",
        "stardist",
        "2D_versatile_fluo",
        "stardist",
        gpu=True,
        trainable=True,
        family="StarDist 2D (tensorflow)",
    ),
    Entry(
        "cellbin",
        "cellbin",
        "stardist",
        "cellseg_bcdu_SHDI_221008_tf.hdf5",
        "stardist",
        gpu=True,
        trainable=True,
        family="CellBin BCDU-Net (tensorflow), STOmics SAW",
    ),
    Entry(
        "watershed",
        "watershed",
        BASE,
        "default",
        BASE,
        gpu=False,
        trainable=False,
        family="classical, no weights: a reference / second opinion",
    ),
)
BACKENDS: dict[str, Entry] = {e.name: e for e in ENTRIES}


def trainable() -> list[Entry]:
    return [e for e in ENTRIES if e.trainable]


if __name__ == "__main__":
    from csrefiner.models.registry_files import main

    raise SystemExit(main())
