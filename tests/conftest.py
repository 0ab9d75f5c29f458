"""Shared test helpers: run the real CLI in a subprocess, make generated data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Test tiers, assigned here in one place (docs/testing.md): `make test` runs what none of these claims.
# train: trains a model to a quality bar (minutes); demo: the demo end to end; clients: opens our outputs with the
# real clients in their own venvs (tests/venvs.py); docker (marked in its file): steps inside the images.
TIER_FILES = {
    "test_demo.py": "demo",
    "test_pipeline_flow.py": "demo",
    "test_interop.py": "clients",
    "test_cpsam_backend.py": "train",  # cellpose 4 venv; every test reads its trained model or venv
}
TIER_FIXTURES = {  # module fixtures that train: every test using one is training-heavy
    "scratch_model": "train",
    "trained": "train",
    "tiny_model": "train",
    "gefpy": "clients",
}
TIER_TESTS = {  # tests that train inside their own body
    "test_pseudo_labels_are_sampled_with_gamma_and_recorded": "train",
    "test_rounds_record_and_never_repeat": "train",
}


def pytest_collection_modifyitems(items):
    for item in items:
        tiers = {TIER_FILES.get(item.path.name), TIER_TESTS.get(item.originalname)}
        tiers |= {TIER_FIXTURES.get(name) for name in item.fixturenames}
        for tier in tiers - {None}:
            item.add_marker(tier)


os.environ.setdefault("CSREFINER_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m csrefiner ARGS` as a user would; returns the completed process (text output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "csrefiner", *map(str, args)], capture_output=True, text=True, env=env, cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"csrefiner {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_in_process(*args) -> None:
    """One csrefiner command from argv in this process: faster than run_cli for tests that chain many commands."""
    import typer.main

    from csrefiner.cli import app

    typer.main.get_command(app).main(args=[str(a) for a in args], standalone_mode=False)


def write_patches(folder: Path, style, n: int, seed: int, size: int = 128, name: str = "p") -> Path:
    """n generated annotated patches, CSRefiner-named (`<name>-x0_y.._w.._h..-img.tif` / `-mask.tif`)."""
    from csrefiner.io import patch_name, write_image, write_labels
    from csrefiner.synth import nuclei_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, lbl = nuclei_image((size, size), style, seed + i)
        key = patch_name(name, 0, i * size, size, size)
        write_image(folder / f"{key}-img.tif", img)
        write_labels(folder / f"{key}-mask.tif", lbl)
    return folder


def domain_patches(root: Path, size: int = 128) -> dict:
    """The backend tests' patch sets: easy (sparse, sharp) and hard (dense, blurred) train / val / test."""
    from csrefiner.synth import EASY, HARD

    sets = {
        "train": (EASY, 8, 1),
        "val": (EASY, 2, 50),
        "test": (EASY, 3, 80),
        "hard_train": (HARD, 8, 101),
        "hard_val": (HARD, 2, 150),
        "hard_test": (HARD, 3, 180),
    }
    folders = {
        key: write_patches(root / (key if key.startswith("hard") else f"easy_{key}"), style, n, seed, size)
        for key, (style, n, seed) in sets.items()
    }
    return {"root": root, **folders}


def pooled_f1(pred_dir: Path, gt_dir: Path) -> float:
    """F1 at IoU 0.5 pooled over every `-mask.tif` of gt_dir, paired by file name with pred_dir."""
    from csrefiner.io import read_labels
    from csrefiner.metrics.matching import match_counts
    from csrefiner.metrics.overlap import label_overlap

    total = None
    for gt in sorted(gt_dir.glob("*-mask.tif")):
        c = match_counts(label_overlap(read_labels(gt), read_labels(pred_dir / gt.name)), 0.5)
        total = c if total is None else total + c
    return total.scores()["f1"]


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def real_nuclei():
    """The real annotated fluorescence nuclei image that the stardist package ships (image, uint32 mask)."""
    data = pytest.importorskip("stardist.data")
    img, mask = data.test_image_nuclei_2d(return_mask=True)
    return img, mask.astype(np.uint32)
