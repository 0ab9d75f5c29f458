"""CellViT backend: published state dicts load, the recipe's frozen phase freezes, HoVer-Net post-processing,
a tiny CellViT trained from scratch through the CLI, and whole slides through tile / segment / stitch."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from csrefiner.errors import CsrefinerError  # noqa: E402
from csrefiner.io import read_labels  # noqa: E402
from csrefiner.metrics.matching import match_counts  # noqa: E402
from csrefiner.metrics.overlap import label_overlap  # noqa: E402
from csrefiner.models import get_backend  # noqa: E402
from csrefiner.models.base import Pretrained, TrainParams  # noqa: E402
from csrefiner.models.data import Sample  # noqa: E402
from csrefiner.synth import EASY, HARD, nuclei_image  # noqa: E402

BACKEND = get_backend("cellvit")
TINY = {"encoder": "vit256", "embed_dim": "96", "depth": "4", "decoder_div": "8"}


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(match_counts(label_overlap(truth, pred), 0.5).scores()["f1"])


# --- the published layout, written down from CellViT's code (models/segmentation/cell_segmentation/cellvit.py,
# utils.py, encoders/VIT/vits_histo.py, encoders/VIT/SAM/image_encoder.py) - not from this implementation --------


def _conv_block(p: str, cin: int, cout: int) -> dict:  # Conv2DBlock: conv 3x3 + BatchNorm
    return {
        f"{p}.block.0.weight": (cout, cin, 3, 3),
        f"{p}.block.0.bias": (cout,),
        f"{p}.block.1.weight": (cout,),
        f"{p}.block.1.bias": (cout,),
        f"{p}.block.1.running_mean": (cout,),
        f"{p}.block.1.running_var": (cout,),
        f"{p}.block.1.num_batches_tracked": (),
    }


def _deconv_block(p: str, cin: int, cout: int) -> dict:  # Deconv2DBlock: transposed conv 2x2, conv 3x3, BatchNorm
    d = {
        f"{p}.block.0.weight": (cin, cout, 2, 2),
        f"{p}.block.0.bias": (cout,),
        f"{p}.block.1.weight": (cout, cout, 3, 3),
        f"{p}.block.1.bias": (cout,),
    }
    d.update(
        {k.replace(".block.1.", ".block.2."): v for k, v in _conv_block(p, cout, cout).items() if ".block.1." in k}
    )
    return d


def _tconv(p: str, cin: int, cout: int) -> dict:
    return {f"{p}.weight": (cin, cout, 2, 2), f"{p}.bias": (cout,)}


def published_shapes(backbone: str, nuclei_classes: int = 6, tissue_classes: int = 19) -> dict:
    """key -> shape of a published CellViT checkpoint's model_state_dict ('vit256' or 'sam-b')."""
    sam = backbone == "sam-b"
    d_, depth, heads = (768, 12, 12) if sam else (384, 12, 6)
    s: dict = {"encoder.patch_embed.proj.weight": (d_, 3, 16, 16), "encoder.patch_embed.proj.bias": (d_,)}
    if sam:
        s["encoder.pos_embed"] = (1, 64, 64, d_)  # SAM: 1024 / 16 grid
    else:
        s["encoder.cls_token"] = (1, 1, d_)
        s["encoder.pos_embed"] = (1, 1 + 14 * 14, d_)  # HIPT ViT-256: 224 / 16 grid + class token
    for i in range(depth):
        b = f"encoder.blocks.{i}"
        for n in ("norm1", "norm2"):
            s[f"{b}.{n}.weight"] = s[f"{b}.{n}.bias"] = (d_,)
        s[f"{b}.attn.qkv.weight"], s[f"{b}.attn.qkv.bias"] = (3 * d_, d_), (3 * d_,)
        s[f"{b}.attn.proj.weight"], s[f"{b}.attn.proj.bias"] = (d_, d_), (d_,)
        fc1, fc2 = ("lin1", "lin2") if sam else ("fc1", "fc2")
        s[f"{b}.mlp.{fc1}.weight"], s[f"{b}.mlp.{fc1}.bias"] = (4 * d_, d_), (4 * d_,)
        s[f"{b}.mlp.{fc2}.weight"], s[f"{b}.mlp.{fc2}.bias"] = (d_, 4 * d_), (d_,)
        if sam:
            side = 64 if i in (2, 5, 8, 11) else 14  # global blocks span the grid, the others 14 x 14 windows
            s[f"{b}.attn.rel_pos_h"] = s[f"{b}.attn.rel_pos_w"] = (2 * side - 1, d_ // heads)
    if sam:
        s |= {
            "encoder.neck.0.weight": (256, d_, 1, 1),
            "encoder.neck.1.weight": (256,),
            "encoder.neck.1.bias": (256,),
            "encoder.neck.2.weight": (256, 256, 3, 3),
            "encoder.neck.3.weight": (256,),
            "encoder.neck.3.bias": (256,),
            "classifier_head.weight": (tissue_classes, 256),
            "classifier_head.bias": (tissue_classes,),
        }
    else:
        s |= {
            "encoder.norm.weight": (d_,),
            "encoder.norm.bias": (d_,),
            "encoder.head.weight": (tissue_classes, d_),
            "encoder.head.bias": (tissue_classes,),
        }
    s11, s12, bott = (512, 256, 512) if sam else (256, 128, 312)
    s |= _conv_block("decoder0.0", 3, 32) | _conv_block("decoder0.1", 32, 64)
    s |= (
        _deconv_block("decoder1.0", d_, s11)
        | _deconv_block("decoder1.1", s11, s12)
        | _deconv_block("decoder1.2", s12, 128)
    )
    s |= (
        _deconv_block("decoder2.0", d_, s11)
        | _deconv_block("decoder2.1", s11, 256)
        | _deconv_block("decoder3.0", d_, bott)
    )
    for name, n in (
        ("nuclei_binary_map_decoder", 2),
        ("hv_map_decoder", 2),
        ("nuclei_type_maps_decoder", nuclei_classes),
    ):
        s |= _tconv(f"{name}.bottleneck_upsampler", d_, bott)
        s |= _conv_block(f"{name}.decoder3_upsampler.0", 2 * bott, bott) | _conv_block(
            f"{name}.decoder3_upsampler.1", bott, bott
        )
        s |= _conv_block(f"{name}.decoder3_upsampler.2", bott, bott) | _tconv(f"{name}.decoder3_upsampler.3", bott, 256)
        s |= _conv_block(f"{name}.decoder2_upsampler.0", 512, 256) | _conv_block(
            f"{name}.decoder2_upsampler.1", 256, 256
        )
        s |= _tconv(f"{name}.decoder2_upsampler.2", 256, 128)
        s |= _conv_block(f"{name}.decoder1_upsampler.0", 256, 128) | _conv_block(
            f"{name}.decoder1_upsampler.1", 128, 128
        )
        s |= _tconv(f"{name}.decoder1_upsampler.2", 128, 64)
        s |= _conv_block(f"{name}.decoder0_header.0", 128, 64) | _conv_block(f"{name}.decoder0_header.1", 64, 64)
        s |= {f"{name}.decoder0_header.2.weight": (n, 64, 1, 1), f"{name}.decoder0_header.2.bias": (n,)}
    return s


def published_checkpoint(backbone: str, prefix: str = "") -> dict:
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in published_shapes(backbone).items():
        if key.endswith("num_batches_tracked"):
            state[prefix + key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[prefix + key] = torch.ones(shape)
        else:
            state[prefix + key] = torch.randn(shape, generator=g) * 0.02
    arch = "CellViTSAM" if backbone == "sam-b" else "CellViT256"
    config = {
        "model.backbone": "SAM-B" if backbone == "sam-b" else "ViT256",
        "data.num_nuclei_classes": 6,
        "data.num_tissue_classes": 19,
    }
    return {"arch": arch, "config": config, "model_state_dict": state, "epoch": 130}


@pytest.mark.parametrize("backbone,prefix", [("vit256", ""), ("sam-b", "module.")])
def test_published_state_dicts_load_strictly(backbone, prefix, tmp_path, monkeypatch):
    """A checkpoint shaped like the published one (from the written-down layout) loads with no missing or
    unexpected key, by name from $CSREFINER_MODELS/cellvit/, with weights_only; then it segments."""
    ck = published_checkpoint(backbone, prefix)
    monkeypatch.setenv("CSREFINER_MODELS", str(tmp_path / "models"))
    (tmp_path / "models" / "cellvit").mkdir(parents=True)
    torch.save(ck, tmp_path / "models" / "cellvit" / "CellViT-test.pth")
    assert [m.name for m in BACKEND.local_models()] == ["CellViT-test"]
    source = BACKEND.resolve("CellViT-test")
    seg = BACKEND.load(source, TrainParams(device="cpu", options={"window": "64", "overlap": "16"}))
    own = seg.net.state_dict()
    expected = {k[len(prefix) :]: v for k, v in ck["model_state_dict"].items()}
    assert set(own) == set(expected)  # no missing, no unexpected key
    for key in (
        "encoder.blocks.11.attn.qkv.weight",
        "nuclei_type_maps_decoder.decoder0_header.2.weight",
        "decoder1.2.block.2.running_mean",
    ):
        assert torch.equal(own[key], expected[key])
    assert seg.net.cfg["type_classes"] == 6 and seg.net.cfg["tissue_classes"] == 19
    if backbone == "sam-b":
        assert seg.net.cfg["global_attn"] == [2, 5, 8, 11] and seg.net.cfg["window_size"] == 14
        assert seg.net.cfg["heads"] == 12
    image, _ = nuclei_image((80, 72), EASY, seed=2)
    labels = seg.predict(image)
    assert labels.shape == (80, 72) and labels.dtype == np.uint32
    # a wrong shape is refused with the key named
    bad = dict(ck["model_state_dict"])
    bad[prefix + "hv_map_decoder.decoder0_header.2.weight"] = torch.zeros(3, 64, 1, 1)
    bad.pop(prefix + "decoder0.0.block.0.bias")
    torch.save({"model_state_dict": bad, "config": {}}, tmp_path / "bad.pth")
    with pytest.raises(CsrefinerError, match="missing 1.*decoder0.0.block.0.bias"):
        BACKEND.load(BACKEND.resolve(str(tmp_path / "bad.pth")), TrainParams(device="cpu"))


class NotAllowed:  # a Python object that torch.load(weights_only=True) must refuse
    pass


def test_pretrained_never_downloaded_and_unsafe_files_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CSREFINER_MODELS", str(tmp_path / "m"))
    with pytest.raises(CsrefinerError) as err:
        BACKEND.resolve("CellViT-256-x40")
    msg = str(err.value)
    assert "CellViT-256-x40.pth" in msg and str(tmp_path / "m" / "cellvit") in msg and "downloaded" in msg
    monkeypatch.delenv("CSREFINER_MODELS")
    with pytest.raises(CsrefinerError, match=r"\.csrefiner/models/cellvit"):
        BACKEND.resolve("CellViT-SAM-H-x40")
    torch.save({"model_state_dict": {}, "config": NotAllowed()}, tmp_path / "unsafe.pth")
    with pytest.raises(CsrefinerError, match="weights_only=True.*refused"):
        BACKEND.resolve(str(tmp_path / "unsafe.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CsrefinerError, match="junk.pth: not a readable torch checkpoint"):
        BACKEND.resolve(str(tmp_path / "junk.pth"))
    assert BACKEND.check_sample_shape((24, 256)) and BACKEND.check_sample_shape((32, 32)) is None


def test_hv_targets_and_postprocessing_recover_touching_nuclei():
    """Perfect maps -> HoVer-Net post-processing separates dense, touching nuclei (F1 at IoU 0.5 >= 0.98)."""
    from csrefiner.models.cellvit.postprocess import instances
    from csrefiner.models.cellvit.targets import hv_maps

    _, truth = nuclei_image((256, 256), HARD, seed=3)
    hv = hv_maps(truth)
    assert hv.min() == -1 and hv.max() == 1 and (hv[:, truth == 0] == 0).all()
    one = truth == truth[128, 128] if truth[128, 128] else truth == truth.max()
    ys, xs = np.nonzero(one)
    assert hv[0][one][xs < xs.mean() - 1].max() < 0 < hv[0][one][xs > xs.mean() + 1].min()  # left -, right +
    assert hv[1][one][ys < ys.mean() - 1].max() < 0 < hv[1][one][ys > ys.mean() + 1].min()  # top -, bottom +
    pred = instances((truth > 0).astype(np.float32), hv)
    assert pred.dtype == np.uint32 and f1(truth, pred) >= 0.98
    merged = instances((truth > 0).astype(np.float32), np.zeros_like(hv))  # without HV maps: touching ones merge
    assert merged.max() < 0.9 * truth.max()


def test_losses_reward_the_truth():
    from csrefiner.models.cellvit.losses import cellvit_loss
    from csrefiner.models.cellvit.targets import hv_maps

    _, truth = nuclei_image((64, 64), EASY, seed=5)
    fg = torch.from_numpy((truth > 0).astype(np.int64))[None]
    hv = torch.from_numpy(hv_maps(truth))[None]
    types = fg.clone()
    good = {
        "nuclei_binary_map": torch.stack([1 - fg, fg], 1).float() * 20 - 10,
        "hv_map": hv.clone(),
        "nuclei_type_map": torch.stack([1 - types, types, 0 * types], 1).float() * 20 - 10,
    }
    bad = {k: torch.zeros_like(v) for k, v in good.items()}
    loss_good, parts = cellvit_loss(good, fg, hv, types)
    loss_bad, _ = cellvit_loss(bad, fg, hv, types)
    assert set(parts) == {"focal_tversky", "dice", "mse", "msge", "type_ce", "type_dice"}
    assert float(loss_good) < 0.1 < 1.0 < float(loss_bad)


def _samples(n: int, seed: int, size: int = 64) -> list:
    out = []
    for i in range(n):
        image, labels = nuclei_image((size, size), EASY, seed=seed + i)
        out.append(Sample(f"s{i}", image, labels))
    return out


def test_frozen_phase_freezes_the_encoder_then_trains_it():
    params = TrainParams(epochs=3, batch_size=2, device="cpu", options=TINY | {"freeze_epochs": "2"})
    trainer = BACKEND.trainer(Pretrained("scratch"), params, _samples(2, 1), _samples(1, 9))
    net = trainer.net
    enc0 = [p.detach().clone() for p in net.encoder_parameters()]
    dec0 = net.hv_map_decoder.decoder0_header[2].weight.detach().clone()
    for epoch in range(2):
        trainer.train_epoch(np.array([0, 1]), 1e-3, epoch)
        assert all(torch.equal(a, b) for a, b in zip(enc0, net.encoder_parameters()))
    assert not torch.equal(dec0, net.hv_map_decoder.decoder0_header[2].weight)
    trainer.train_epoch(np.array([0, 1]), 1e-3, 2)
    names = [n for n, _ in net.encoder.named_parameters() if not n.startswith("head.")]
    same = {n for n, a, b in zip(names, enc0, net.encoder_parameters()) if torch.equal(a, b)}
    assert same == {"norm.weight", "norm.bias"}  # all but the final norm, which only feeds the tissue head
    assert all(p.requires_grad for p in net.parameters())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("cellvit")
    run_cli("synth", "--out", root / "train", "--n", "8", "--size", "128", "--style", "easy", "--seed", "1")
    run_cli("synth", "--out", root / "val", "--n", "3", "--size", "128", "--style", "easy", "--seed", "500")
    run_cli("synth", "--out", root / "test", "--n", "4", "--size", "128", "--style", "easy", "--seed", "900")
    options = [a for k, v in TINY.items() for a in ("--option", f"{k}={v}")]
    run_cli(
        "finetune",
        "--model",
        "cellvit",
        "--train",
        root / "train",
        "--val",
        root / "val",
        "--pretrained",
        "scratch",
        "--out",
        root / "model",
        "--epochs",
        "25",
        "--batch-size",
        "4",
        "--eval-every",
        "5",
        "--lr",
        "1e-3",
        "--device",
        "cpu",
        "--seed",
        "0",
        *options,
    )
    return root


def test_tiny_cellvit_trained_from_scratch_segments_held_out_images(tiny_model, cli):
    root = tiny_model
    card = json.loads((root / "model" / "model.json").read_text())
    assert card["backend"] == "cellvit" and card["architecture"]["embed_dim"] == 96
    v = card["validation"]
    assert v["before"]["f1"] < 0.3 and v["after"]["f1"] >= 0.8
    # the reloaded folder scores what the trainer measured when it chose the marker threshold on validation
    chosen = card["thresholds"]
    assert v["after"]["f1"] == chosen["validation_f1_by_marker_threshold"][str(chosen["marker_threshold"])]
    assert v["after"]["f1"] >= v["best_during_training"]["f1"]  # 0.4 (used during training) is one of the choices
    for run in ("pred1", "pred2"):
        cli("segment", "--model-dir", root / "model", "--input", root / "val", "--out", root / run, "--device", "cpu")
    keys = sorted(p.name for p in (root / "val").glob("*-mask.tif"))
    tp = fp = fn = 0
    for key in keys:
        a, b = read_labels(root / "pred1" / key), read_labels(root / "pred2" / key)
        assert a.dtype == np.uint32 and np.array_equal(a, b)
        c = match_counts(label_overlap(read_labels(root / "val" / key), a), 0.5)
        tp, fp, fn = tp + c.tp, fp + c.fp, fn + c.fn
    f1_cli = 2 * tp / (2 * tp + fp + fn)
    assert abs(f1_cli - v["after"]["f1"]) < 1e-9  # `segment --model-dir` = the model the card scored
    # honest bound: patches used neither for training nor for picking the checkpoint
    cli(
        "segment",
        "--model-dir",
        root / "model",
        "--input",
        root / "test",
        "--out",
        root / "pred_test",
        "--device",
        "cpu",
    )
    truth = [read_labels(p) for p in sorted((root / "test").glob("*-mask.tif"))]
    preds = [read_labels(root / "pred_test" / p.name) for p in sorted((root / "test").glob("*-mask.tif"))]
    counts = [match_counts(label_overlap(t, p), 0.5) for t, p in zip(truth, preds)]
    tp, fp, fn = (sum(getattr(c, k) for c in counts) for k in ("tp", "fp", "fn"))
    assert len(truth) == 4 and 2 * tp / (2 * tp + fp + fn) >= 0.85  # measured here: 1.000 (82 nuclei)


def test_whole_slide_through_tile_segment_stitch(tiny_model, cli, tmp_path):
    import tifffile

    image, truth = nuclei_image((300, 420), EASY, seed=77)
    tifffile.imwrite(tmp_path / "slide.tif", image)
    cli("tile", "--image", tmp_path / "slide.tif", "--out", tmp_path / "tiles", "--tile-size", "160", "--overlap", "48")
    cli(
        "segment",
        "--model-dir",
        tiny_model / "model",
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
    stitched = read_labels(tmp_path / "labels.ome.tif")
    assert stitched.shape == truth.shape and stitched.dtype == np.uint32
    assert f1(truth, stitched) >= 0.85  # measured here: 0.953 (150 nuclei, 12 tiles)
    assert os.path.getsize(tmp_path / "labels.ome.tif") > 0
