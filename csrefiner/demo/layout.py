"""Where each artefact of a demo run lives, relative to the run folder.

`csrefiner demo run` writes this layout; the pipeline's DEMO_REPORT stages its tasks' outputs into it; so
`csrefiner demo report` reads either the same way.
"""

from __future__ import annotations

from pathlib import Path

SLIDE = "demo"  # slide name in every patch / tile key
BASELINE, FINETUNED = "baseline", "finetuned"
WATERSHED = "watershed"  # the classical second opinion (csrefiner's `watershed` backend)
IOU = 0.5

DATA = "data"
DEMO_JSON = f"{DATA}/demo.json"  # config, data description and the csrefiner options of every step
SLIDE_IMAGE = f"{DATA}/slide.tif"
SLIDE_GT = f"{DATA}/slide-gt-mask.tif"
POOL = f"{DATA}/pool.tif"  # the rows of the slide where `suggest` may look
EASY_TRAIN, EASY_VAL = f"{DATA}/easy_train", f"{DATA}/easy_val"
GEM = f"{DATA}/slide.gem.gz"
EVAL_SETS = {"heldout_hard": f"{DATA}/heldout_hard", "real": f"{DATA}/real"}  # tag -> ground-truth patches

POOL_TILES, SLIDE_TILES = "tiles/pool", "tiles/slide"
SUGGEST = "suggest"
ANNOTATED = "annotated"
SLIDE_MASK = "wsi/slide-mask.tif"
STITCH_REPORT = "wsi/slide-stitch.json"
PREVIEW = "wsi/slide-preview.png"
GEF, H5AD = "stereo/slide.cellbin.gef", "stereo/slide.h5ad"
RUN_JSON = "run.json"  # what only `demo run` knows: step times, skipped models, the machine (not the pipeline)
SUMMARY, REPORT, FIGURES = "summary.json", "report.html", "figures"
CURVE_CSV = "curve/curve.csv"  # `demo run --budget-sweep` only
CURVE_PNG = f"{FIGURES}/learning_curve.png"  # drawn by the report (figures/ is rebuilt there)


def method(model: str, stage: str) -> str:
    """Name of a model at a stage: its model folder, prediction folder and evaluation method."""
    return f"{model}-{stage}"


def model_dir(model: str, stage: str) -> str:
    return f"models/{method(model, stage)}"


def predictions(tag: str, name: str) -> str:
    return f"predictions/{tag}/{name}"


def evaluation(tag: str) -> str:
    return f"evaluation/{tag}"


def eval_sets(run: Path) -> dict[str, Path]:
    """The patch sets of this run that exist (real nuclei only in the full preset)."""
    return {tag: run / rel for tag, rel in EVAL_SETS.items() if (run / rel).is_dir()}
