"""CellBin backend (BCDU-Net): the official architecture and weight layout, instance output, training, slides.

Expected architecture figures come from STOmics' own model code (CSRefiner `models/models.py`, `BCDU_net_D3`,
the network its `v3_finetune.py` trains and whose weights are `cellseg_bcdu_*_tf.hdf5`), counted by hand below:
conv k x k: k*k*in*out + out; ConvLSTM2D: 9*in*4f + 9*f*4f + 4f; batch norm: 4 per channel (2 trainable).
Total for 256 x 256 x 1: 20,659,717 parameters (896 non-trainable), i.e. the 20.65 M of BCDU-Net d=3.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from csrefiner.errors import CsrefinerError

pytest.importorskip("tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

from csrefiner.io import read_labels, write_image  # noqa: E402
from csrefiner.metrics.matching import match_counts  # noqa: E402
from csrefiner.metrics.overlap import label_overlap  # noqa: E402
from csrefiner.models.backends import cellbin  # noqa: E402
from csrefiner.models.base import Pretrained, TrainParams  # noqa: E402
from csrefiner.models.cellbin.net import build_bcdu, load_weights, save_weights, weighted_layers  # noqa: E402
from csrefiner.synth import EASY, nuclei_image  # noqa: E402


def _conv(i, o, k=3):
    return [(k, k, i, o), (o,)]


def _lstm(i, f):
    return [(3, 3, i, 4 * f), (3, 3, f, 4 * f), (4 * f,)]


def _bn(c):
    return [(c,)] * 4


# (layer name, weight shapes) of the official network, in model order (input 256 x 256 x 1)
EXPECTED = (
    [
        ("conv2d", _conv(1, 64)),
        ("conv2d_1", _conv(64, 64)),
        ("conv2d_2", _conv(64, 128)),
        ("conv2d_3", _conv(128, 128)),
        ("conv2d_4", _conv(128, 256)),
        ("conv2d_5", _conv(256, 256)),
        ("conv2d_6", _conv(256, 512)),
    ]
    + [(f"conv2d_{i}", _conv(512, 512)) for i in (7, 8, 9)]
    + [
        ("conv2d_10", _conv(1024, 512)),
        ("conv2d_11", _conv(512, 512)),
        ("conv2d_transpose", [(2, 2, 256, 512), (256,)]),
        ("batch_normalization", _bn(256)),
        ("conv_lst_m2d", _lstm(256, 128)),
        ("conv2d_12", _conv(128, 256)),
        ("conv2d_13", _conv(256, 256)),
        ("conv2d_transpose_1", [(2, 2, 128, 256), (128,)]),
        ("batch_normalization_1", _bn(128)),
        ("conv_lst_m2d_1", _lstm(128, 64)),
        ("conv2d_14", _conv(64, 128)),
        ("conv2d_15", _conv(128, 128)),
        ("conv2d_transpose_2", [(2, 2, 64, 128), (64,)]),
        ("batch_normalization_2", _bn(64)),
        ("conv_lst_m2d_2", _lstm(64, 32)),
        ("conv2d_16", _conv(32, 64)),
        ("conv2d_17", _conv(64, 64)),
        ("conv2d_18", _conv(64, 2)),
        ("conv2d_19", _conv(2, 1, 1)),
    ]
)
TOTAL_PARAMS = 20_659_717


def test_architecture_matches_the_published_bcdu_net():
    model = build_bcdu(256, 1, 64)
    got = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in weighted_layers(model)]
    assert got == EXPECTED
    assert sum(int(np.prod(s)) for _, shapes in EXPECTED for s in shapes) == TOTAL_PARAMS
    assert model.count_params() == TOTAL_PARAMS
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 896  # batch-norm moving stats
    assert tuple(model.output.shape) == (None, 256, 256, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert build_bcdu(256, 3, 64).count_params() == TOTAL_PARAMS + 9 * 2 * 64  # H&E: RGB input


def _small(seed: int, **kw):
    import keras

    keras.utils.set_random_seed(seed)
    model = build_bcdu(kw.get("size", 32), kw.get("channels", 1), kw.get("base", 4))
    for var in model.non_trainable_weights:  # non-default batch-norm statistics, so they are checked too
        var.assign(np.random.default_rng(seed).uniform(0.5, 1.5, var.shape).astype(np.float32))
    return model


def _same_weights(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.weights, b.weights))


def test_legacy_hdf5_loads_by_name_both_ways(tmp_path):
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    src, x = _small(1), np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    with h5py.File(tmp_path / "keras.hdf5", "w") as f:  # Keras' own writer of the legacy by-name layout
        save_weights_to_hdf5_group(f, src)
    with h5py.File(tmp_path / "keras.hdf5", "r") as f, h5py.File(tmp_path / "full.hdf5", "w") as g:
        g.attrs["model_config"] = "{}"  # a full-model file (tf.keras model.save) keeps weights in model_weights
        f.copy(f["/"], g, "model_weights")
    for name in ("keras.hdf5", "full.hdf5"):
        dst = _small(2)
        assert not _same_weights(src, dst)
        assert load_weights(dst, tmp_path / name) == "by name"
        assert _same_weights(src, dst)
        assert np.array_equal(src(x, training=False), dst(x, training=False))

    save_weights(src, tmp_path / "ours.hdf5")  # ours -> Keras' by-name reader
    dst = _small(3)
    dst.load_weights(tmp_path / "ours.hdf5", by_name=True)
    assert _same_weights(src, dst)

    with h5py.File(tmp_path / "ours.hdf5", "a") as f:  # other auto names (a model built later in a session)
        names = [n.decode() for n in f.attrs["layer_names"]]
        for n in names:
            f.move(n, n + "_99")
        f.attrs["layer_names"] = np.array([(n + "_99").encode() for n in names])
    dst = _small(4)
    assert load_weights(dst, tmp_path / "ours.hdf5") == "by order" and _same_weights(src, dst)


def test_wrong_weight_files_are_refused_clearly(tmp_path):
    (tmp_path / "notes.hdf5").write_text("not weights")
    with pytest.raises(CsrefinerError, match="not an HDF5 file"):
        load_weights(_small(0), tmp_path / "notes.hdf5")
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CsrefinerError, match="without Keras layer weights"):
        load_weights(_small(0), tmp_path / "empty.hdf5")
    save_weights(_small(0, base=8), tmp_path / "wide.hdf5")
    with pytest.raises(CsrefinerError, match="another width or input-channel count"):
        load_weights(_small(0), tmp_path / "wide.hdf5")
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
        f.create_group("dense").attrs["weight_names"] = np.array([b"dense/kernel:0"])
        f["dense"].create_dataset("dense/kernel:0", data=np.zeros((3, 3)))
    with pytest.raises(CsrefinerError, match="not weights of this BCDU-Net"):
        load_weights(_small(0), tmp_path / "other.hdf5")


def test_pretrained_only_from_a_path_or_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CSREFINER_MODELS", str(tmp_path / "models"))
    backend = cellbin.BACKEND
    with pytest.raises(CsrefinerError) as err:
        backend.resolve("cellseg_bcdu_SHDI_221008_tf")
    msg = str(err.value)
    assert "'cellseg_bcdu_SHDI_221008_tf.hdf5'" in msg and str(tmp_path / "models" / "cellbin") in msg
    assert "nothing is downloaded" in msg
    (tmp_path / "models" / "cellbin").mkdir(parents=True)
    save_weights(_small(5, size=64, base=4), tmp_path / "models" / "cellbin" / backend.default_pretrained)
    found = backend.resolve(backend.default_pretrained)
    assert found.path == tmp_path / "models" / "cellbin" / backend.default_pretrained
    assert [m.name for m in backend.local_models()] == [backend.default_pretrained]
    seg = backend.load(found, TrainParams(device="cpu", options={"patch": "64"}))
    assert seg.config["base"] == 4 and seg.config["channels"] == 1 and seg.config["weights_matched"] == "by name"
    labels = seg.predict(nuclei_image((100, 150), EASY, 3)[0])
    assert labels.dtype == np.uint32 and labels.shape == (100, 150)
    with pytest.raises(CsrefinerError, match="no such CellBin weights file"):
        backend.resolve(str(tmp_path / "missing" / "w.hdf5"))


def test_patch_shapes_must_fit_three_poolings():
    assert cellbin.BACKEND.check_sample_shape((256, 256)) is None
    assert cellbin.BACKEND.check_sample_shape((128, 64)) is None
    assert "multiples of 8" in cellbin.BACKEND.check_sample_shape((100, 128))
    assert "at least 32" in cellbin.BACKEND.check_sample_shape((24, 24))


def test_touching_nuclei_become_separate_instances():
    yy, xx = np.mgrid[:64, :80]
    truth = np.zeros((64, 80), np.uint32)
    truth[(yy - 32) ** 2 + (xx - 28) ** 2 < 12**2] = 1
    truth[((yy - 32) ** 2 + (xx - 50) ** 2 < 12**2) & (truth == 0)] = 2  # overlapping discs: one blob
    prob = (truth > 0).astype(np.float32)
    from scipy import ndimage as ndi

    assert ndi.label(prob > 0.5)[1] == 1  # a binary mask (what CellBin outputs) counts one cell
    labels = cellbin.instances(prob, 0.5, 2.0, 16, rims=False)
    assert labels.dtype == np.uint32 and labels.max() == 2
    assert match_counts(label_overlap(truth, labels), 0.5).tp == 2
    # boundary-aware target: the shared rim is background in the target, weighted, and given back after
    target, weight = cellbin.targets(truth, "border", 5.0)
    rim = cellbin.touching_rims(truth)
    assert rim.any() and not target[rim].any() and (weight[rim] == 5).all() and ndi.label(target)[1] == 2
    restored = cellbin.fill_gaps(ndi.label(target)[0].astype(np.uint32))
    assert (
        match_counts(label_overlap(truth, restored), 0.9).tp == 2
        and (restored != truth).sum() < 0.03 * truth.astype(bool).sum()
    )


def test_tiled_prediction_covers_any_image_exactly():
    from scipy import ndimage as ndi

    def forward(xb):  # a 3 x 3 mean filter: a receptive field smaller than the window margin
        return ndi.uniform_filter(xb, size=(1, 3, 3, 1), mode="nearest")

    x = np.random.default_rng(0).random((150, 230, 1), dtype=np.float32)
    got = cellbin.tiled_probability(forward, x, 64)
    want = ndi.uniform_filter(x[..., 0], size=3, mode="mirror")  # np.pad 'reflect' = scipy 'mirror'
    assert got.shape == (150, 230) and np.allclose(got, want, atol=1e-6)
    small = x[:40, :50]
    assert np.allclose(
        cellbin.tiled_probability(forward, small, 64)[1:-1, 1:-1],
        ndi.uniform_filter(small[..., 0], size=3)[1:-1, 1:-1],
        atol=1e-6,
    )


def test_saved_model_predicts_like_the_trainer(tmp_path):
    from csrefiner.models.data import Sample

    train = [Sample(f"t{i}", *nuclei_image((64, 64), EASY, i)) for i in range(3)]
    params = TrainParams(epochs=1, batch_size=2, device="cpu", options={"base": "4", "dropout": "0"})
    trainer = cellbin.BACKEND.trainer(Pretrained("scratch"), params, train, train[:1])
    xs, ys, ws = trainer._batch(np.array([2]), np.random.default_rng(0))  # a ragged last batch holds 1 sample
    assert xs.shape == (1, 64, 64, 1) and ys.shape == ws.shape == (1, 64, 64) and xs.std() > 0  # no blank padding
    assert np.isfinite(trainer.train_epoch(np.array([0, 1]), 1e-3, 0))
    image = nuclei_image((96, 80), EASY, 9)[0]
    before = trainer.segmenter().probability(image)
    trainer.save(tmp_path)
    loaded = cellbin.BACKEND.load(Pretrained("m", tmp_path, folder=True), TrainParams(device="cpu"))
    assert np.array_equal(loaded.probability(image), before)
    assert np.array_equal(loaded.predict(image), trainer.segmenter().predict(image))


# ---- end to end through the CLI: train from scratch, segment held-out patches, then a whole slide ----------------

OPTIONS = ["base=8", "dropout=0", "patch=64"]  # a 1/8-width BCDU-Net (323 k parameters) on 64-pixel crops


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("cellbin")
    run_cli("synth", "--out", root / "train", "--n", 8, "--size", 128, "--seed", 1)
    run_cli("synth", "--out", root / "val", "--n", 3, "--size", 128, "--seed", 100)
    run_cli("synth", "--out", root / "test", "--n", 4, "--size", 128, "--seed", 200)
    args = [
        "finetune",
        "--model",
        "cellbin",
        "--train",
        root / "train",
        "--val",
        root / "val",
        "--pretrained",
        "scratch",
        "--out",
        root / "model",
        "--epochs",
        30,
        "--batch-size",
        2,
        "--lr",
        3e-3,
        "--eval-every",
        5,
        "--device",
        "cpu",
    ]
    for opt in OPTIONS:
        args += ["--option", opt]
    run_cli(*args)
    return root


def _f1(truth_dir, pred_dir) -> float:
    total = None
    for mask in sorted(truth_dir.glob("*-mask.tif")):
        counts = match_counts(label_overlap(read_labels(mask), read_labels(pred_dir / mask.name)), 0.5)
        total = counts if total is None else total + counts
    return total.scores()["f1"]


def test_trained_from_scratch_segments_held_out_patches(trained, cli):
    import json

    card = json.loads((trained / "model" / "model.json").read_text())
    assert card["backend"] == "cellbin" and card["validation"]["after"]["f1"] >= 0.8
    assert card["architecture"]["parameters"] < 400_000
    cli(
        "segment",
        "--model-dir",
        trained / "model",
        "--input",
        trained / "test",
        "--out",
        trained / "pred",
        "--device",
        "cpu",
    )
    assert _f1(trained / "test", trained / "pred") >= 0.8  # measured 0.97 here
    from csrefiner.io import read_image

    seg = cellbin.BACKEND.load(Pretrained("m", trained / "model", folder=True), TrainParams(device="cpu"))
    for mask in sorted((trained / "pred").glob("*-mask.tif")):  # save -> load (another process) -> same masks
        image = read_image(trained / "test" / mask.name.replace("-mask", "-img"))
        assert np.array_equal(seg.predict(image), read_labels(mask)) and read_labels(mask).dtype == np.uint32


def test_whole_slide_tile_segment_stitch(trained, cli, tmp_path):
    image, truth = nuclei_image((400, 520), EASY, 77)
    write_image(tmp_path / "slide.tif", image)
    cli("tile", "--image", tmp_path / "slide.tif", "--out", tmp_path / "tiles", "--tile-size", 256, "--overlap", 48)
    cli(
        "segment",
        "--model-dir",
        trained / "model",
        "--input",
        tmp_path / "tiles",
        "--out",
        tmp_path / "masks",
        "--tile-manifest",
        tmp_path / "tiles" / "manifest.json",
        "--device",
        "cpu",
    )
    cli(
        "stitch",
        "--manifest",
        tmp_path / "tiles" / "manifest.json",
        "--tiles",
        tmp_path / "masks",
        "--out",
        tmp_path / "labels.ome.tif",
    )
    labels = read_labels(tmp_path / "labels.ome.tif")
    assert labels.dtype == np.uint32 and labels.shape == truth.shape
    assert match_counts(label_overlap(truth, labels), 0.5).scores()["f1"] >= 0.8
