"""The `watershed` backend: classical nuclei with no weights, usable wherever a model is (segment, suggest),
refused by finetune with a clear message."""

from __future__ import annotations

import numpy as np

from csrefiner.io import read_labels
from csrefiner.metrics.evaluate import evaluate_arrays
from csrefiner.synth import EASY, nuclei_image


def test_segment_with_watershed_finds_the_nuclei(cli, tmp_path):
    from conftest import write_patches

    patches = write_patches(tmp_path / "patches", EASY, 3, seed=4)
    cli("segment", "--model", "watershed", "--input", patches, "--out", tmp_path / "pred")
    for mask in sorted(patches.glob("*-mask.tif")):
        pred = read_labels(tmp_path / "pred" / mask.name)
        assert pred.dtype == np.uint32
        f1 = evaluate_arrays(read_labels(mask), pred, [0.5]).counts[0.5].scores()["f1"]
        assert f1 > 0.8, (mask.name, f1)  # sparse, sharp nuclei: the classical method's home ground


def test_watershed_is_listed_but_cannot_be_fine_tuned(cli, tmp_path):
    from conftest import run_cli, write_patches

    assert "watershed" in cli("models", "list").stdout
    patches = write_patches(tmp_path / "patches", EASY, 6, seed=5)
    proc = run_cli(
        "finetune",
        "--model",
        "watershed",
        "--train",
        patches,
        "--pretrained",
        "scratch",
        "--out",
        tmp_path / "model",
        "--epochs",
        "1",
        check=False,
    )
    assert proc.returncode == 2 and "nothing to train" in proc.stderr
    assert not (tmp_path / "model").exists()


def test_watershed_agrees_with_the_library_function():
    from csrefiner.models import get_backend
    from csrefiner.models.base import TrainParams
    from csrefiner.models.classical import watershed_nuclei

    image, _ = nuclei_image((160, 160), EASY, seed=2)
    backend = get_backend("watershed")
    seg = backend.load(backend.resolve("default"), TrainParams())
    assert np.array_equal(seg.predict(image), watershed_nuclei(image.astype(np.float32)))
