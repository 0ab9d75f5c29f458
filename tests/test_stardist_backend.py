"""StarDist backend: scratch training beats the untrained network, fine-tuning on a shifted domain helps,
save -> load is exact (also with stardist's own loader), bad input fails before any training.

Expectations are computed independently of the training code: held-out generated patches are segmented with
`csrefiner segment` and scored with `csrefiner.metrics` (the stardist-exact matching).
The network is the smallest that learns generated nuclei in about a hundred steps on 2 CPU cores
(16 rays, 16 base filters, 64 px crops of 96 px patches); the defaults (32 rays, 32 filters) are what `finetune` uses.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("stardist")

from conftest import domain_patches, pooled_f1

from csrefiner.errors import CsrefinerError
from csrefiner.io import read_labels
from csrefiner.metrics.matching import matching
from csrefiner.models import get_backend
from csrefiner.models.base import Pretrained, TrainParams
from csrefiner.models.data import read_folder

SIZE = 96
CROPS = ("--option", "patch_size=64", "--option", "repeats=8")  # 8 random 64 px crops per patch and epoch
SMALL = ("--option", "n_rays=16", "--option", "unet_n_filter_base=16", *CROPS)
SMALL_OPTIONS = {"n_rays": "16", "unet_n_filter_base": "16", "patch_size": "64", "repeats": "8"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stardist")
    return domain_patches(root, SIZE)


@pytest.fixture(scope="module")
def scratch_model(data):
    from conftest import run_cli

    out = data["root"] / "scratch"
    run_cli(
        "finetune",
        "--model",
        "stardist",
        "--train",
        data["train"],
        "--val",
        data["val"],
        "--pretrained",
        "scratch",
        "--out",
        out,
        "--epochs",
        10,
        "--batch-size",
        4,
        "--lr",
        3e-3,
        "--eval-every",
        5,
        "--device",
        "cpu",
        "--seed",
        0,
        *SMALL,
    )
    return out


def test_scratch_training_beats_the_untrained_network(data, scratch_model, cli):
    card = json.loads((scratch_model / "model.json").read_text())
    for name in (
        "model.json",
        "train_log.json",
        "loss_curve.png",
        "stardist/config.json",
        "stardist/weights_best.h5",
        "stardist/thresholds.json",
    ):
        assert (scratch_model / name).is_file(), name
    assert card["backend"] == "stardist" and card["device"] == "cpu"
    arch = card["architecture"]
    assert arch["n_rays"] == 16 and arch["unet_n_filter_base"] == 16 and arch["patch_size"] == 64
    assert arch["learning_rate"] == pytest.approx(3e-3) and arch["parameters"] > 100_000
    assert set(card["thresholds"]) >= {"prob_thresh", "nms_thresh"}
    config = json.loads((scratch_model / "stardist" / "config.json").read_text())
    assert config["train_learning_rate"] == pytest.approx(3e-3) and config["train_tensorboard"] is False
    log = json.loads((scratch_model / "train_log.json").read_text())["epochs"]
    assert all(r["val_loss"] is not None for r in log)
    assert log[-1]["lr"] < 0.05 * max(r["lr"] for r in log), "the learning rate must decay"

    # the untrained network (same architecture and seed) on the held-out patches
    backend = get_backend("stardist")
    params = TrainParams(device="cpu", batch_size=4, options=SMALL_OPTIONS)
    untrained = backend.trainer(Pretrained("scratch"), params, read_folder(data["train"]), read_folder(data["val"]))
    f1_untrained = np.mean(
        [matching(s.labels, untrained.segmenter().predict(s.image))["f1"] for s in read_folder(data["test"])]
    )
    cli("segment", "--model-dir", scratch_model, "--input", data["test"], "--out", data["root"] / "pred_test")
    assert read_labels(next((data["root"] / "pred_test").glob("*-mask.tif"))).dtype == np.uint32
    f1_trained = pooled_f1(data["root"] / "pred_test", data["test"])
    assert f1_trained >= 0.8, f1_trained
    assert f1_trained > f1_untrained + 0.5, (f1_untrained, f1_trained)
    assert card["validation"]["after"]["f1"] > card["validation"]["before"]["f1"] + 0.5


def test_finetune_on_shifted_domain_raises_f1(data, scratch_model, cli):
    """The seed's claim, measured: a model from sparse, sharp nuclei improves on dense, blurred ones."""
    before_dir, after_dir, tuned = (data["root"] / n for n in ("hard_before", "hard_after", "tuned"))
    cli("segment", "--model-dir", scratch_model, "--input", data["hard_test"], "--out", before_dir)
    cli(
        "finetune",
        "--model",
        "stardist",
        "--train",
        data["hard_train"],
        "--val",
        data["hard_val"],
        "--pretrained",
        scratch_model,
        "--out",
        tuned,
        "--epochs",
        5,
        "--batch-size",
        4,
        "--lr",
        1e-3,
        "--eval-every",
        5,
        "--device",
        "cpu",
        *CROPS,
    )
    cli("segment", "--model-dir", tuned, "--input", data["hard_test"], "--out", after_dir)
    f1_before, f1_after = pooled_f1(before_dir, data["hard_test"]), pooled_f1(after_dir, data["hard_test"])
    assert f1_after > f1_before + 0.05, (f1_before, f1_after)
    card = json.loads((tuned / "model.json").read_text())
    assert card["base_model"]["path"] == str(scratch_model)
    assert card["architecture"]["learning_rate"] == pytest.approx(1e-3)
    assert card["validation"]["after"]["f1"] >= card["validation"]["before"]["f1"]
    # the base model's folder is untouched (stardist writes nothing next to its weights)
    assert sorted(p.name for p in (scratch_model / "stardist").iterdir()) == [
        "config.json",
        "csrefiner.json",
        "thresholds.json",
        "weights_best.h5",
    ]


def test_thresholds_that_lose_objects_on_validation_are_not_kept(data, scratch_model, tmp_path, monkeypatch):
    """stardist's optimize_thresholds may pick, among thresholds that tie on a few validation objects, one that
    loses most objects elsewhere; csrefiner keeps the starting thresholds unless the optimized ones do better."""
    from conftest import run_in_process
    from stardist.models import StarDist2D

    def lossy(self, *args, **kwargs):  # what stardist returned on 1 validation patch of 5 nuclei, made extreme
        self.thresholds = {"prob": 0.999, "nms": 0.3}
        return {"prob": 0.999, "nms": 0.3}

    monkeypatch.setattr(StarDist2D, "optimize_thresholds", lossy)
    out = tmp_path / "ft"
    run_in_process("finetune", "--model", "stardist", "--train", data["train"], "--val", data["val"], "--pretrained",
                   scratch_model, "--out", out, "--epochs", 1, "--batch-size", 4, "--device", "cpu", "--seed", 0,
                   *CROPS)  # fmt: skip
    start = json.loads((scratch_model / "stardist" / "thresholds.json").read_text())
    card = json.loads((out / "model.json").read_text())["thresholds"]
    assert card["kept"] == "start" and card["optimized"] == {"prob": 0.999, "nms": 0.3}
    assert card["validation_f1"]["optimized"] < card["validation_f1"]["start"]
    assert json.loads((out / "stardist" / "thresholds.json").read_text()) == pytest.approx(start)
    assert (card["prob_thresh"], card["nms_thresh"]) == pytest.approx((start["prob"], start["nms"]))


def test_save_load_gives_identical_predictions(data, scratch_model, tmp_path, cli):
    from stardist.models import StarDist2D

    from csrefiner.models.backends.stardist import model_input

    backend = get_backend("stardist")
    params = TrainParams(device="cpu", batch_size=4)
    train, val = read_folder(data["train"])[:4], read_folder(data["val"])
    trainer = backend.trainer(backend.resolve(str(scratch_model)), params, train, val)
    trainer.train_epoch(np.arange(len(train)), 1e-4, 0)  # weights now differ from the base model's
    sample = read_folder(data["test"])[0]
    in_memory = trainer.segmenter().predict(sample.image)
    assert in_memory.dtype == np.uint32 and in_memory.max() >= 5
    trainer.save(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text(json.dumps({"backend": "stardist", "stain": "ss"}))
    cli("segment", "--model-dir", tmp_path / "m", "--input", data["test"], "--out", tmp_path / "pred")
    key = next(iter(sorted(data["test"].glob("*-img.tif")))).name[:-8]
    assert np.array_equal(read_labels(tmp_path / "pred" / f"{key}-mask.tif"), in_memory)

    # stardist's own loader reads the folder (config, weights, thresholds) and predicts the same
    native = StarDist2D(None, name="stardist", basedir=str(tmp_path / "m"))
    labels, _ = native.predict_instances(model_input(sample.image, "ss", 1), verbose=False)
    assert np.array_equal(labels.astype(np.uint32), in_memory)


def test_one_epoch_from_scratch_is_a_folder_stardist_reads(data, tmp_path, cli):
    """The quick tier's StarDist run: one epoch from scratch through the CLI, then `segment` and stardist's own
    loader give the same uint32 labels (the quality bars are the `train` tier's)."""
    from stardist.models import StarDist2D

    from csrefiner.models.backends.stardist import model_input

    out = tmp_path / "one"
    cli("finetune", "--model", "stardist", "--train", data["train"], "--val", data["val"], "--pretrained", "scratch",
        "--out", out, "--epochs", 1, "--batch-size", 4, "--device", "cpu", "--seed", 0, *SMALL)  # fmt: skip
    cli("segment", "--model-dir", out, "--input", data["test"], "--out", tmp_path / "pred")
    image = next(iter(sorted(data["test"].glob("*-img.tif"))))
    ours = read_labels(tmp_path / "pred" / f"{image.name[:-8]}-mask.tif")
    assert ours.dtype == np.uint32
    sample = next(s for s in read_folder(data["test"]) if s.key == image.name[:-8])
    stain = json.loads((out / "model.json").read_text())["stain"]
    native = StarDist2D(None, name="stardist", basedir=str(out))
    labels, _ = native.predict_instances(model_input(sample.image, stain, 1), verbose=False)
    assert np.array_equal(labels.astype(np.uint32), ours)


def test_bad_input_fails_before_training(data, tmp_path, cli, monkeypatch):
    def fails(*args, expect: str):
        proc = cli(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert expect in proc.stderr, proc.stderr
        return proc

    common = ("--model", "stardist", "--train", data["train"], "--device", "cpu", "--epochs", 1)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    proc = fails(
        "finetune",
        *common,
        "--pretrained",
        "2D_versatile_fluo",
        "--out",
        tmp_path / "o1",
        expect="is not on this machine",
    )
    assert str(tmp_path / "keras" / "models" / "StarDist2D" / "2D_versatile_fluo") in proc.stderr
    assert "python_2D_versatile_fluo.zip" in proc.stderr
    fails(
        "segment",
        "--model",
        "stardist:2D_versatile_he",
        "--input",
        data["test"],
        "--out",
        tmp_path / "o2",
        expect=str(tmp_path / "keras" / "models" / "StarDist2D" / "2D_versatile_he"),
    )
    fails("finetune", *common, "--pretrained", "2D_mystery", "--out", tmp_path / "o3", expect="unknown StarDist model")
    fails(
        "finetune",
        *common,
        "--pretrained",
        "scratch",
        "--out",
        tmp_path / "o4",
        "--option",
        "patch_size=128",
        expect="smaller than the StarDist training patch size 128",
    )
    fails(
        "finetune",
        *common,
        "--pretrained",
        "scratch",
        "--out",
        tmp_path / "o5",
        "--option",
        "patch_size=90",
        expect="must be a multiple of 16",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text(json.dumps({"backend": "cellpose"}))
    fails("finetune", *common, "--pretrained", other, "--out", tmp_path / "o6", expect="is a 'cellpose' model")
    fails("finetune", *common, "--pretrained", tmp_path, "--out", tmp_path / "o7", expect="no config.json")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8)), "a failed run left an output behind"

    # corrupt weights in a csrefiner StarDist folder and in a StarDist model folder: clear errors, no traceback
    backend = get_backend("stardist")
    broken = tmp_path / "broken"
    (broken / "stardist").mkdir(parents=True)
    (broken / "model.json").write_text(json.dumps({"backend": "stardist"}))
    (broken / "stardist" / "config.json").write_text(
        json.dumps({"n_dim": 2, "n_rays": 16, "grid": [2, 2], "unet_n_filter_base": 16, "axes": "YXC"})
    )
    (broken / "stardist" / "weights_best.h5").write_bytes(b"not hdf5")
    with pytest.raises(CsrefinerError, match="cannot load these StarDist weights"):
        backend.load(backend.resolve(str(broken)), TrainParams(device="cpu"))
    with pytest.raises(CsrefinerError, match="cannot load these StarDist weights"):
        backend.trainer(
            backend.resolve(str(broken / "stardist")),
            TrainParams(device="cpu"),
            read_folder(data["train"]),
            read_folder(data["val"]),
        )
    (broken / "stardist" / "config.json").write_text("{oops")
    with pytest.raises(CsrefinerError, match="unreadable"):
        backend.load(backend.resolve(str(broken)), TrainParams(device="cpu"))


def test_local_cache_is_found_and_listed(scratch_model, tmp_path, cli, monkeypatch):
    """A model unpacked the way keras >= 3.6 does (<key>/<key>_extracted/) resolves and shows in `models list`."""
    import shutil

    home = tmp_path / "keras"
    target = home / "models" / "StarDist2D" / "2D_demo" / "2D_demo_extracted"
    shutil.copytree(scratch_model / "stardist", target)
    monkeypatch.setenv("KERAS_HOME", str(home))
    backend = get_backend("stardist")
    assert backend.resolve("2D_demo").path == target
    assert f"stardist:2D_demo  {target}" in cli("models", "list").stdout


# TensorFlow's C++ lines (`I0000 00:00:...`, `E0000 ...`: CPU features, oneDNN, CUDA probing), absl's preamble and
# tf.function retracing warnings
TF_NOISE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:|oneDNN|retracing|absl::InitializeLog|WARNING:absl", re.M)


def test_tensorflow_logs_stay_quiet_unless_verbose(data, scratch_model, tmp_path, cli, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the CLI's own default is under test
    out = tmp_path / "one_epoch"
    args = ("--train", data["train"], "--val", data["val"], "--pretrained", "scratch", "--out", out)
    proc = cli("finetune", "--model", "stardist", *args, "--epochs", 1, "--batch-size", 4, "--device", "cpu", *SMALL)
    assert (out / "model.json").is_file()
    assert not TF_NOISE.findall(proc.stderr), proc.stderr

    proc = cli("--verbose", "segment", "--model-dir", scratch_model, "--input", data["val"], "--out", tmp_path / "s")
    assert "DEBUG csrefiner.models.segment:" in proc.stderr, proc.stderr
