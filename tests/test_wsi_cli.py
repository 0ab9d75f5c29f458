"""`csrefiner tile`, `crop` and `stitch` as a user runs them, and their refusals of bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
from test_tile_stitch import assert_same_objects

from csrefiner.io import read_image, read_labels, write_labels
from csrefiner.synth import HARD, nuclei_image
from csrefiner.wsi.crop import crop_slide
from csrefiner.wsi.tile import tile_slide


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A 1000 x 1300 slide as a tiled TIFF, its ground truth, and the truth cropped per tile ('predictions')."""
    root = tmp_path_factory.mktemp("wsi")
    image, truth = nuclei_image((1000, 1300), HARD, seed=11)
    tifffile.imwrite(root / "chipA.tif", image, tile=(128, 128), compression="zlib")
    tifffile.imwrite(root / "truth.tif", truth, tile=(128, 128), compression="zlib")
    manifest = tile_slide(root / "chipA.tif", root / "tiles", tile_size=384, overlap=48)
    for tile in manifest.tiles:
        write_labels(root / "masks" / f"{manifest.key(tile)}.tif", truth[tile.box])  # `<key>.tif` is found too
    return root, image, truth


def test_tile_then_stitch_end_to_end(cli, slide, tmp_path):
    root, image, truth = slide
    cli("tile", "--image", root / "chipA.tif", "--out", tmp_path / "tiles", "--tile-size", 384, "--overlap", 48)
    data = json.loads((tmp_path / "tiles" / "manifest.json").read_text())
    assert data["shape"] == [1000, 1300] and data["tile_size"] == 384 and data["overlap"] == 48
    assert len(data["tiles"]) == 3 * 4
    for t in data["tiles"]:
        tile = read_image(tmp_path / "tiles" / t["image"])
        assert np.array_equal(tile, image[t["y"] : t["y"] + t["h"], t["x"] : t["x"] + t["w"]])
    assert (tmp_path / "tiles" / "manifest.json").read_bytes() == (root / "tiles" / "manifest.json").read_bytes()

    proc = cli(
        "stitch",
        "--manifest",
        tmp_path / "tiles" / "manifest.json",
        "--tiles",
        root / "masks",
        "--out",
        tmp_path / "labels.ome.tif",
        "--preview",
        tmp_path / "labels.png",
        "--report",
        tmp_path / "stitch.json",
    )
    assert f"wrote {truth.max()} objects from 12 tiles" in proc.stdout
    counts = json.loads((tmp_path / "stitch.json").read_text())
    assert counts["tiles"] == 12 and counts["objects"] == truth.max() and counts["matched"] > 0
    assert_same_objects(truth, read_labels(tmp_path / "labels.ome.tif"))
    preview = read_image(tmp_path / "labels.png")
    assert preview.shape == (500, 650, 3)  # the pyramid's smallest level
    assert (preview[:, (384 - 24) // 2] == 128).all() and len(np.unique(preview.reshape(-1, 3), axis=0)) > 100


def test_crop_keeps_edge_remainders_and_never_reflects_masks(cli, slide, tmp_path):
    root, image, truth = slide
    cli(
        "crop",
        "--image",
        root / "chipA.tif",
        "--mask",
        root / "truth.tif",
        "--out",
        tmp_path / "patches",
        "--size",
        256,
    )
    info = json.loads((tmp_path / "patches" / "crops.json").read_text())
    crops = info["crops"]
    assert len(crops) == 4 * 6  # 1000 = 3 x 256 + 232, 1300 = 5 x 256 + 20: remainders kept
    covered = np.zeros(truth.shape, dtype=int)
    for c in crops:
        y, x, h, w = c["y"], c["x"], c["h"], c["w"]
        assert c["key"] == f"chipA-x{x}_y{y}_w{w}_h{h}"
        img, mask = read_image(tmp_path / "patches" / c["image"]), read_labels(tmp_path / "patches" / c["mask"])
        assert img.shape == mask.shape == (256, 256)
        valid = truth[y : y + h, x : x + w]
        assert np.array_equal(mask[:h, :w], valid)
        assert not mask[h:].any() and not mask[:, w:].any()  # padding is background, no mirrored nuclei
        assert np.array_equal(img, np.pad(image[y : y + h, x : x + w], ((0, 256 - h), (0, 256 - w)), mode="reflect"))
        covered[y : y + h, x : x + w] += 1
    assert (covered == 1).all()
    edge = next(c for c in crops if c["w"] == 20 and c["h"] == 232)
    assert (tmp_path / "patches" / f"{edge['key']}-img.tif").is_file()


def test_crop_constant_padding_and_stride(slide, tmp_path):
    root, image, _ = slide
    records = crop_slide(root / "chipA.tif", tmp_path / "p", size=300, stride=200, pad="constant")
    assert [r["x"] for r in records[:6]] == [0, 200, 400, 600, 800, 1000]  # 1000 + 300 >= 1300: last column
    last = records[-1]
    img = read_image(tmp_path / "p" / last["image"])
    assert (last["x"], last["y"], last["w"], last["h"]) == (1000, 800, 300, 200)
    assert np.array_equal(img[:200], image[800:, 1000:]) and not img[200:].any()


def _bad_stitch_inputs(root, tmp_path, case):
    """Copy the good tiles and masks, then break one thing."""
    tiles, masks = tmp_path / "tiles", tmp_path / "masks"
    shutil.copytree(root / "tiles", tiles)
    shutil.copytree(root / "masks", masks)
    victim = sorted(masks.iterdir())[4]
    if case == "missing tile":
        victim.unlink()
    elif case == "wrong tile size":
        write_labels(victim, read_labels(victim)[:-10], force=True)
    elif case == "float tile":
        tifffile.imwrite(victim, read_labels(victim).astype(np.float32))
    elif case == "rgb tile":
        tifffile.imwrite(victim, np.zeros(read_labels(victim).shape + (3,), np.uint8), photometric="rgb")
    elif case == "overlap >= tile size":
        data = json.loads((tiles / "manifest.json").read_text())
        data["overlap"] = data["tile_size"]
        (tiles / "manifest.json").write_text(json.dumps(data))
    return tiles / "manifest.json", masks


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing tile", "no mask for 1 of 12 tiles"),
        ("wrong tile size", "but its tile is"),
        ("float tile", "not an integer label image"),
        ("rgb tile", "must be 2D"),
        ("overlap >= tile size", "smaller than the tile size"),
    ],
)
def test_stitch_refuses_bad_input_and_writes_nothing(cli, slide, tmp_path, case, message):
    manifest, masks = _bad_stitch_inputs(slide[0], tmp_path, case)
    out = tmp_path / "out" / "labels.ome.tif"
    proc = cli("stitch", "--manifest", manifest, "--tiles", masks, "--out", out, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_tile_refuses_overlap_not_smaller_than_tile(cli, slide, tmp_path):
    proc = cli(
        "tile",
        "--image",
        slide[0] / "chipA.tif",
        "--out",
        tmp_path / "t",
        "--tile-size",
        256,
        "--overlap",
        256,
        check=False,
    )
    assert proc.returncode == 2 and "overlap 256" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "t").exists()


def test_stitch_and_crop_never_overwrite_without_force(cli, slide, tmp_path):
    root = slide[0]
    out = tmp_path / "labels.tif"
    out.write_bytes(b"precious")
    proc = cli(
        "stitch", "--manifest", root / "tiles" / "manifest.json", "--tiles", root / "masks", "--out", out, check=False
    )
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_bytes() == b"precious"
    truth_small = tmp_path / "small.tif"
    write_labels(truth_small, np.ones((10, 10), np.uint32))
    proc = cli("crop", "--image", root / "chipA.tif", "--mask", truth_small, "--out", tmp_path / "p", check=False)
    assert proc.returncode == 2 and "give the mask of this image" in proc.stderr and not (tmp_path / "p").exists()
