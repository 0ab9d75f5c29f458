import numpy as np
import pytest
import tifffile

from csrefiner.errors import CsrefinerError
from csrefiner.io import (
    image_mask_pairs,
    pair_folders,
    parse_coords,
    patch_name,
    read_image,
    read_labels,
    sample_key,
    write_image,
    write_labels,
)


def test_labels_stay_uint32_above_65535(tmp_path):
    labels = np.zeros((64, 64), np.uint32)
    labels[:10, :10] = 70_000
    labels[20:30, 20:30] = 4_000_000_000
    path = write_labels(tmp_path / "m.tif", labels)
    back = read_labels(path)
    assert back.dtype == np.uint32 and np.array_equal(back, labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression.name in ("ADOBE_DEFLATE", "DEFLATE")


def test_int64_labels_fit_or_fail(tmp_path):
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0, 5]], np.int64))
    assert read_labels(tmp_path / "ok.tif").dtype == np.uint32
    tifffile.imwrite(tmp_path / "big.tif", np.array([[0, 2**33]], np.int64))
    with pytest.raises(CsrefinerError, match="exceeds uint32"):
        read_labels(tmp_path / "big.tif")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((8, 8), np.float32), "not an integer label image"),
        (np.array([[0, -1]], np.int32), "negative"),
        (np.zeros((8, 8, 3), np.uint8), "must be 2D"),
    ],
)
def test_bad_label_images_name_the_file(tmp_path, array, message):
    path = tmp_path / "bad-mask.tif"
    tifffile.imwrite(path, array)
    with pytest.raises(CsrefinerError, match=message) as err:
        read_labels(path)
    assert "bad-mask.tif" in str(err.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"not a tiff")
    with pytest.raises(CsrefinerError, match="broken.tif: cannot be read"):
        read_image(path)
    with pytest.raises(CsrefinerError, match="no such file"):
        read_image(tmp_path / "missing.tif")


def test_images_grey_rgb_channel_first_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cf.ome.tif", rgb)
    assert read_image(tmp_path / "cf.ome.tif").shape == (20, 30, 3)
    write_image(tmp_path / "g.png", rgb[0])
    assert np.array_equal(read_image(tmp_path / "g.png"), rgb[0])
    write_image(tmp_path / "f.tif", rgb[0].astype(np.float32) / 255)
    assert read_image(tmp_path / "f.tif").dtype == np.float32


def test_no_overwrite_without_force_and_no_partial_file(tmp_path):
    path = write_labels(tmp_path / "m.tif", np.ones((4, 4), np.uint32))
    with pytest.raises(CsrefinerError, match="--force"):
        write_labels(path, np.zeros((4, 4), np.uint32))
    write_labels(path, np.full((4, 4), 2, np.uint32), force=True)
    assert read_labels(path).max() == 2
    with pytest.raises(CsrefinerError):
        write_labels(tmp_path / "n.tif", np.zeros((4, 4), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]


def test_names_and_coordinates():
    name = patch_name("chipA", 512, 768, 256, 256)
    assert name == "chipA-x512_y768_w256_h256"
    c = parse_coords(f"{name}-img.tif")
    assert (c.slide, c.x, c.y, c.w, c.h) == ("chipA", 512, 768, 256, 256)
    assert sample_key("a/chipA-x0_y0_w256_h256-mask.ome.tif") == "chipA-x0_y0_w256_h256"
    assert parse_coords("plain.tif") is None


def _pair_folder(folder, keys, with_masks=True):
    folder.mkdir()
    for k in keys:
        write_image(folder / f"{k}-img.tif", np.zeros((8, 8), np.uint8))
        if with_masks:
            write_labels(folder / f"{k}-mask.tif", np.zeros((8, 8), np.uint32))


def test_pairing_csrefiner_convention(tmp_path):
    _pair_folder(tmp_path / "train", ["a", "b"])
    assert [k for k, *_ in image_mask_pairs(tmp_path / "train")] == ["a", "b"]
    (tmp_path / "train" / "b-mask.tif").unlink()
    with pytest.raises(CsrefinerError, match="b-img.tif"):
        image_mask_pairs(tmp_path / "train")


def test_pairing_gt_and_predictions(tmp_path):
    _pair_folder(tmp_path / "gt", ["a", "b"])
    (tmp_path / "pred").mkdir()
    for k in ["a", "b"]:
        write_labels(tmp_path / "pred" / f"{k}.tif", np.zeros((8, 8), np.uint32))
    assert [(k, g.name, p.name) for k, g, p in pair_folders(tmp_path / "gt", tmp_path / "pred")] == [
        ("a", "a-mask.tif", "a.tif"),
        ("b", "b-mask.tif", "b.tif"),
    ]
    write_labels(tmp_path / "pred" / "c.tif", np.zeros((8, 8), np.uint32))
    with pytest.raises(CsrefinerError, match="without ground truth.*c.tif"):
        pair_folders(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CsrefinerError, match="empty: no images"):
        pair_folders(tmp_path / "gt", tmp_path / "empty")
