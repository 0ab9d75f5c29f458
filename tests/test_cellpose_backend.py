"""Cellpose 3 backend: scratch training beats the untrained network, fine-tuning on a shifted domain helps,
save -> load is exact, `segment` output feeds `evaluate` and `stitch`, bad input fails before training.

Every expectation is computed independently of the training code: held-out generated patches scored with
`csrefiner.metrics` (the stardist-exact matching), or a whole-image segmentation compared with the tiled one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("cellpose")

from conftest import domain_patches, pooled_f1

from csrefiner.io import read_labels, write_image, write_labels
from csrefiner.metrics.matching import matching
from csrefiner.models import get_backend
from csrefiner.models.base import Pretrained, TrainParams
from csrefiner.models.data import read_folder
from csrefiner.synth import EASY, nuclei_image

SMALL_NET = "nbase=2,16,32,64,256"  # 1.2M parameters: trains on 2 CPU cores in about a minute


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cellpose")
    return domain_patches(root)


@pytest.fixture(scope="module")
def scratch_model(data):
    from conftest import run_cli

    out = data["root"] / "scratch"
    run_cli(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["train"],
        "--val",
        data["val"],
        "--pretrained",
        "scratch",
        "--out",
        out,
        "--epochs",
        30,
        "--batch-size",
        4,
        "--eval-every",
        10,
        "--device",
        "cpu",
        "--option",
        SMALL_NET,
        "--seed",
        0,
    )
    return out


def test_scratch_training_beats_the_untrained_network(data, scratch_model, cli):
    card = json.loads((scratch_model / "model.json").read_text())
    for name in ("model.json", "train_log.json", "loss_curve.png", "cellpose/weights.pt", "cellpose/config.json"):
        assert (scratch_model / name).is_file(), name
    assert card["backend"] == "cellpose" and card["device"] == "cpu"
    assert card["hyperparameters"]["lr_schedule"]["kind"].startswith("warm-up")
    log = json.loads((scratch_model / "train_log.json").read_text())["epochs"]
    lrs = [r["lr"] for r in log]
    assert lrs[-1] < 0.05 * max(lrs), "the learning rate must decay"
    assert {d["key"] for d in card["data"]["val"]} == {p.name[:-8] for p in data["val"].glob("*-img.tif")}

    # untrained network, same architecture and seed, on the held-out patches
    backend = get_backend("cellpose")
    params = TrainParams(device="cpu", options={"nbase": SMALL_NET.split("=")[1]})
    torch.manual_seed(0)
    untrained = backend.trainer(Pretrained("scratch"), params, read_folder(data["train"]), read_folder(data["val"]))
    f1_untrained = np.mean(
        [matching(s.labels, untrained.segmenter().predict(s.image))["f1"] for s in read_folder(data["test"])]
    )
    cli("segment", "--model-dir", scratch_model, "--input", data["test"], "--out", data["root"] / "pred_test")
    f1_trained = pooled_f1(data["root"] / "pred_test", data["test"])
    assert f1_trained >= 0.8, f1_trained
    assert f1_trained > f1_untrained + 0.5, (f1_untrained, f1_trained)
    assert card["validation"]["after"]["f1"] > card["validation"]["before"]["f1"] + 0.5


def test_finetune_on_shifted_domain_raises_f1(data, scratch_model, cli):
    """The seed's claim, measured: a model from the sparse domain improves on dense, blurred nuclei."""
    before_dir, after_dir, tuned = (data["root"] / n for n in ("hard_before", "hard_after", "tuned"))
    cli("segment", "--model-dir", scratch_model, "--input", data["hard_test"], "--out", before_dir)
    cli(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["hard_train"],
        "--val",
        data["hard_val"],
        "--pretrained",
        scratch_model,
        "--out",
        tuned,
        "--epochs",
        20,
        "--batch-size",
        4,
        "--lr",
        2e-3,
        "--eval-every",
        5,
        "--device",
        "cpu",
    )
    cli("segment", "--model-dir", tuned, "--input", data["hard_test"], "--out", after_dir)
    f1_before, f1_after = pooled_f1(before_dir, data["hard_test"]), pooled_f1(after_dir, data["hard_test"])
    assert f1_after > f1_before + 0.1, (f1_before, f1_after)
    card = json.loads((tuned / "model.json").read_text())
    assert card["base_model"]["path"] == str(scratch_model)
    assert (scratch_model / "model.json").is_file() and not (scratch_model / "tuned").exists()

    # evaluate pairs the segment output with the ground truth unchanged, and agrees with the direct scores
    cli("evaluate", "--gt", data["hard_test"], "--pred", before_dir, "--pred", after_dir, "--out", data["root"] / "ev")
    summary = json.loads((data["root"] / "ev" / "summary.json").read_text())
    assert summary["methods"]["hard_after"]["micro"]["f1"] == pytest.approx(f1_after, abs=1e-9)
    assert (data["root"] / "ev" / "paired_tests.csv").is_file()


def test_save_load_gives_identical_predictions(data, tmp_path):
    backend = get_backend("cellpose")
    params = TrainParams(epochs=1, device="cpu", options={"nbase": SMALL_NET.split("=")[1]})
    train, val = read_folder(data["train"])[:4], read_folder(data["val"])
    trainer = backend.trainer(Pretrained("scratch"), params, train, val)
    trainer.train_epoch(np.arange(len(train)), 1e-3, 0)
    image = read_folder(data["test"])[0].image
    in_memory = trainer.segmenter().predict(image)
    trainer.save(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"backend": "cellpose"}))
    reloaded = backend.load(Pretrained("saved", tmp_path, folder=True), TrainParams(device="cpu")).predict(image)
    assert reloaded.dtype == np.uint32
    assert np.array_equal(in_memory, reloaded)


def test_tiled_segmentation_stitches_like_the_whole_image(data, scratch_model, cli, tmp_path):
    image, _ = nuclei_image((384, 384), EASY, seed=7)
    write_image(tmp_path / "slideA.tif", image)
    cli("segment", "--model-dir", scratch_model, "--input", tmp_path / "slideA.tif", "--out", tmp_path / "whole")
    cli("tile", "--image", tmp_path / "slideA.tif", "--out", tmp_path / "tiles", "--tile-size", 192, "--overlap", 64)
    cli(
        "segment",
        "--model-dir",
        scratch_model,
        "--input",
        tmp_path / "tiles",
        "--out",
        tmp_path / "tile_masks",
        "--tile-manifest",
        tmp_path / "tiles" / "manifest.json",
    )
    cli(
        "stitch",
        "--manifest",
        tmp_path / "tiles" / "manifest.json",
        "--tiles",
        tmp_path / "tile_masks",
        "--out",
        tmp_path / "stitched.ome.tif",
    )
    whole, stitched = read_labels(tmp_path / "whole" / "slideA-mask.tif"), read_labels(tmp_path / "stitched.ome.tif")
    assert stitched.dtype == np.uint32 and stitched.shape == whole.shape
    assert whole.max() > 50
    assert matching(whole, stitched, 0.5)["f1"] >= 0.97
    # `segment` on an image larger than --tile-size does the same tile -> segment -> stitch by itself
    cli(
        "segment",
        "--model-dir",
        scratch_model,
        "--input",
        tmp_path / "slideA.tif",
        "--out",
        tmp_path / "inline",
        "--tile-size",
        192,
        "--overlap",
        64,
    )
    assert np.array_equal(read_labels(tmp_path / "inline" / "slideA-mask.tif"), stitched)


def test_bad_input_fails_before_training(data, tmp_path, cli, monkeypatch):
    def fails(*args, expect: str):
        proc = cli(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert expect in proc.stderr, proc.stderr
        return proc

    common = ("--model", "cellpose", "--pretrained", "scratch", "--epochs", 1, "--device", "cpu")
    binary = tmp_path / "binary"
    img, lbl = nuclei_image((128, 128), EASY, 3)
    binary.mkdir()
    write_image(binary / "a-img.tif", img)
    write_labels(binary / "a-mask.tif", (lbl > 0).astype(np.uint32))
    write_image(binary / "b-img.tif", img)
    write_labels(binary / "b-mask.tif", lbl)
    fails("finetune", "--train", binary, "--out", tmp_path / "o1", *common, expect="binary/semantic mask")

    few = tmp_path / "few"
    few.mkdir()
    for k in "ab":
        one = np.zeros((64, 64), np.uint32)
        one[10:20, 10:20] = 1
        write_image(few / f"{k}-img.tif", np.zeros((64, 64), np.uint8))
        write_labels(few / f"{k}-mask.tif", one)
    fails("finetune", "--train", few, "--out", tmp_path / "o2", *common, expect="annotate at least")

    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    write_image(mismatch / "a-img.tif", img)
    write_labels(mismatch / "a-mask.tif", lbl[:100])
    fails("finetune", "--train", mismatch, "--out", tmp_path / "o3", *common, expect="same height and width")

    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cp_models"))
    proc = fails(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["train"],
        "--pretrained",
        "cyto3",
        "--out",
        tmp_path / "o4",
        expect="is not on this machine",
    )
    assert str(tmp_path / "cp_models") in proc.stderr and "www.cellpose.org/models/cyto3" in proc.stderr
    fails(
        "segment",
        "--model",
        "cellpose:nuclei",
        "--input",
        data["test"],
        "--out",
        tmp_path / "o5",
        expect="nucleitorch_0",
    )
    fails("segment", "--model", "mystery", "--input", data["test"], "--out", tmp_path / "o6", expect="BACKEND:NAME")

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.json").write_text("{not json")
    fails(
        "segment",
        "--model-dir",
        damaged,
        "--input",
        data["test"],
        "--out",
        tmp_path / "o7",
        expect="unreadable model card",
    )
    fails(
        "segment",
        "--model-dir",
        tmp_path / "binary",
        "--input",
        data["test"],
        "--out",
        tmp_path / "o8",
        expect="not a csrefiner model folder",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text(json.dumps({"backend": "stardist"}))
    fails(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["train"],
        "--pretrained",
        other,
        "--out",
        tmp_path / "o9",
        expect="is a 'stardist' model",
    )
    cp4 = tmp_path / "cpsam_weights.pt"
    torch.save({"W2": torch.zeros(1)}, cp4)
    fails(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["train"],
        "--pretrained",
        cp4,
        "--out",
        tmp_path / "o10",
        expect="use --model cpsam",
    )
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    fails(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["train"],
        "--pretrained",
        junk,
        "--out",
        tmp_path / "o11",
        expect="not a readable cellpose model file",
    )
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 12)), "a failed run left an output behind"


def test_models_list_shows_local_weights(tmp_path, cli, monkeypatch):
    folder = tmp_path / "cp_models"
    folder.mkdir()
    (folder / "cyto3").write_bytes(b"x")
    (folder / "nucleitorch_0").write_bytes(b"x")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(folder))
    out = cli("models", "list").stdout
    assert f"cellpose:cyto3  {folder / 'cyto3'}" in out
    assert f"cellpose:nuclei  {folder / 'nucleitorch_0'}" in out


def test_pseudo_labels_are_sampled_with_gamma_and_recorded(data, cli, tmp_path):
    out = tmp_path / "mixed"
    cli(
        "finetune",
        "--model",
        "cellpose",
        "--train",
        data["hard_train"],
        "--pseudo",
        data["train"],
        "--val",
        data["hard_val"],
        "--pretrained",
        "scratch",
        "--out",
        out,
        "--epochs",
        1,
        "--gamma",
        0.85,
        "--device",
        "cpu",
        "--option",
        SMALL_NET,
    )
    card = json.loads((out / "model.json").read_text())
    assert card["sampling"]["gamma"] == 0.85
    assert card["sampling"]["counts"] == {"easy": 8, "hard": 8}
    assert {d["group"] for d in card["data"]["train"]} == {"easy", "hard"}
