"""Whole-slide tiling and stitching: oracle exactness, agreement with whole-image segmentation, bounded memory.

Every test computes its expectation independently of the code under test: the ground truth the tiles were cut
from, or a segmentation of the whole image in one piece.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from skimage.draw import ellipse

from csrefiner.errors import CsrefinerError
from csrefiner.io import read_labels, write_labels
from csrefiner.metrics.matching import matching
from csrefiner.models.classical import watershed_nuclei
from csrefiner.synth import EASY, HARD, nuclei_image, nuclei_labels
from csrefiner.wsi.manifest import Manifest
from csrefiner.wsi.reader import open_slide
from csrefiner.wsi.stitch import stitch_tiles
from csrefiner.wsi.writer import write_pyramid

THRESHOLD = 60  # fixed foreground threshold: the watershed then does not depend on the crop


def assert_same_objects(truth: np.ndarray, result: np.ndarray) -> None:
    """Equal up to renumbering: a bijection between labels, background to background; result is 1..N."""
    base = int(result.max()) + 1
    pairs = np.unique(truth.ravel().astype(np.int64) * base + result.ravel())
    t, r = pairs // base, pairs % base
    assert len(np.unique(t)) == len(t), "a true object was split or shares pixels with the background"
    assert len(np.unique(r)) == len(r), "objects were merged or duplicated"
    assert ((t == 0) == (r == 0)).all()
    assert np.array_equal(np.unique(result), np.arange(result.max() + 1))
    assert matching(truth, result, 0.5)["f1"] == 1.0


def write_oracle_tiles(folder, truth, tile_size, overlap, suffix="-mask") -> Manifest:
    """Each tile's 'prediction' is the ground truth cropped to the tile."""
    manifest = Manifest("slide", "slide.tif", truth.shape, "uint8", 1, tile_size, overlap)
    for tile in manifest.tiles:
        write_labels(folder / f"{manifest.key(tile)}{suffix}.tif", truth[tile.box])
    manifest.save(folder / "manifest.json")
    return manifest


@pytest.fixture(scope="module")
def truth():
    """Dense touching nuclei (diameter ~10-18 px) plus cells far larger than any overlap below."""
    labels, _ = nuclei_labels((900, 1150), HARD, seed=7)
    for cy, cx, a, b in ((300, 450, 70, 130), (860, 1120, 60, 60), (120, 1000, 100, 25)):
        rr, cc = ellipse(cy, cx, a, b, shape=labels.shape)
        labels[rr, cc] = labels.max() + 1
    return labels


@pytest.mark.parametrize(
    "tile_size,overlap",
    [(256, 64), (300, 40), (128, 17), (400, 1), (2000, 64)],  # ragged edges everywhere; 2000: one tile
)
def test_oracle_stitch_equals_ground_truth(tmp_path, truth, tile_size, overlap):
    write_oracle_tiles(tmp_path, truth, tile_size, overlap)
    report = stitch_tiles(tmp_path / "manifest.json", tmp_path, tmp_path / "out.ome.tif")
    result = read_labels(tmp_path / "out.ome.tif")
    assert result.dtype == np.uint32 and result.shape == truth.shape
    assert_same_objects(truth, result)
    assert report.objects == len(np.unique(truth)) - 1 and report.dropped == 0
    if overlap < 70:  # the large cells do not fit in the overlap: they were assembled from core pieces
        assert report.assembled >= 1 or tile_size >= truth.shape[1]


def test_oracle_with_huge_sparse_label_values(tmp_path, truth):
    """Labels need not be 1..n in a tile: arbitrary uint32 ids (a segmenter's global offsets) work too."""
    ids = np.random.default_rng(0).choice(2**31, size=int(truth.max()) + 1, replace=False).astype(np.uint32) + 1
    ids[0] = 0
    sparse = ids[truth]
    write_oracle_tiles(tmp_path, sparse, 256, 48)
    stitch_tiles(tmp_path / "manifest.json", tmp_path, tmp_path / "out.tif")
    assert_same_objects(sparse, read_labels(tmp_path / "out.tif"))


def test_tiled_watershed_agrees_with_whole_image(tmp_path):
    image, _ = nuclei_image((768, 1024), EASY, seed=3)
    whole = watershed_nuclei(image, threshold=THRESHOLD)
    manifest = Manifest("slide", "slide.tif", image.shape, "uint8", 1, 256, 64)
    pasted = np.zeros(image.shape, dtype=np.uint32)
    for tile in manifest.tiles:
        labels = watershed_nuclei(image[tile.box], threshold=THRESHOLD)
        write_labels(tmp_path / f"{manifest.key(tile)}-mask.tif", labels)
        y0, y1, x0, x1 = tile.core  # naive pasting of each tile's core, as CSRefiner's Cellpose segmentor does
        core = labels[tile.local_core]
        pasted[y0:y1, x0:x1] = np.where(core > 0, core + tile.id * 100_000, 0)
    manifest.save(tmp_path / "manifest.json")
    stitch_tiles(tmp_path / "manifest.json", tmp_path, tmp_path / "out.tif")
    stitched = read_labels(tmp_path / "out.tif")
    assert matching(whole, stitched, 0.5)["f1"] >= 0.99
    assert matching(whole, pasted, 0.5)["f1"] < 0.95  # the seams matter: this test can fail


def _ramp(y0, y1, x0, x1):
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return ((yy * 31 + xx * 17) % 65521).astype(np.uint16)


def test_tiled_tiff_is_read_with_bounded_memory(tmp_path):
    h = w = 4096  # 32 MiB of uint16
    write_pyramid(
        tmp_path / "slide.tif",
        (h, w),
        np.uint16,
        lambda step: (_ramp(y, min(h, y + 256), 0, w) for y in range(0, h, 256)),
        steps=[1],
    )
    with open_slide(tmp_path / "slide.tif") as slide:
        assert slide.shape == (h, w) and slide.dtype == np.uint16
        slide.read(0, 0, 8, 8)  # first-read set-up outside the measurement
        tracemalloc.start()
        try:
            for y, x in [(0, 0), (1000, 3000), (3584, 3584), (2048, 17)]:
                assert np.array_equal(slide.read(y, x, 512, 512), _ramp(y, y + 512, x, x + 512))
                tracemalloc.reset_peak()
                slide.read(y, x, 512, 512)
                assert tracemalloc.get_traced_memory()[1] < 4 * 2**20  # a 0.5 MiB region, never the 32 MiB slide
        finally:
            tracemalloc.stop()


def test_uncompressed_tiff_is_mapped_per_read(tmp_path):
    tifffile.imwrite(tmp_path / "slide.tif", _ramp(0, 4096, 0, 4096))  # contiguous: read through a memmap
    with open_slide(tmp_path / "slide.tif") as slide:
        before = _rss_mib()
        for y in range(0, 4096, 512):
            for x in range(0, 4096, 512):
                region = slide.read(y, x, 512, 512)
        assert np.array_equal(region, _ramp(3584, 4096, 3584, 4096))
        assert _rss_mib() - before < 12  # pages are released after each read (the file is 32 MiB)


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    except OSError:
        pytest.skip("needs /proc")


def test_rgb_channel_first_slide_reads_channel_last(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (3, 300, 400), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "rgb.ome.tif", rgb[None], tile=(128, 128), compression="zlib", metadata={"axes": "ZCYX"}
    )
    with open_slide(tmp_path / "rgb.ome.tif") as slide:
        assert slide.channels == 3 and slide.shape == (300, 400)
        assert np.array_equal(slide.read(50, 60, 100, 200), np.moveaxis(rgb, 0, -1)[50:150, 60:260])


def test_output_is_tiled_pyramidal_ome_tiff_without_holding_the_slide(tmp_path):
    labels, _ = nuclei_labels((2600, 2300), EASY, seed=4)
    write_oracle_tiles(tmp_path, labels, 512, 64)
    tracemalloc.start()
    try:
        stitch_tiles(tmp_path / "manifest.json", tmp_path, tmp_path / "out.ome.tif")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < labels.nbytes  # 23 MiB of output; the canvas lives in a file mapped one band at a time
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome and tif.pages[0].is_tiled and tif.pages[0].dtype == np.uint32
        levels = tif.series[0].levels
        assert len(levels) >= 2
        full = levels[0].asarray()
        assert np.array_equal(levels[1].asarray(), full[::2, ::2])
    assert_same_objects(labels, full)
    assert not list(tmp_path.glob(".*"))  # no scratch or partial files left behind


def _sparse_truth(width: int) -> np.ndarray:
    """A 300 px high strip with a few large cells, some across seams: memory then reflects buffers, not objects."""
    truth = np.zeros((300, width), dtype=np.uint32)
    for i, x in enumerate(range(150, width - 150, 1400)):
        rr, cc = ellipse(150 + (i % 3 - 1) * 60, x, 40, 90, shape=truth.shape)
        truth[rr, cc] = i + 1
    return truth


def test_stitch_memory_does_not_grow_with_slide_width(tmp_path, monkeypatch):
    """Bands of the slide's width (the painted band, the pyramid's row bands) would grow 8x here; blocks don't."""
    import csrefiner.wsi.writer as writer

    monkeypatch.setattr(writer, "CHUNK", 1 << 18)  # canvas blocks of 1 MiB, small next to a 24000-px band
    peaks = {}
    for width in (3000, 24000):
        folder = tmp_path / str(width)
        folder.mkdir()
        truth = _sparse_truth(width)
        write_oracle_tiles(folder, truth, 256, 32)
        tracemalloc.start()
        try:
            stitch_tiles(folder / "manifest.json", folder, folder / "out.ome.tif")
            peaks[width] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert_same_objects(truth, read_labels(folder / "out.ome.tif"))
    assert peaks[24000] < peaks[3000] + 2 * 2**20, peaks  # one 512-row band of 24000 px alone is 47 MiB
    assert peaks[24000] < 12 * 2**20, peaks


def test_full_disk_is_refused_before_any_work(tmp_path, monkeypatch, truth):
    import csrefiner.wsi.stitch as stitch

    write_oracle_tiles(tmp_path, truth, 256, 64)
    real = stitch.shutil.disk_usage
    monkeypatch.setattr(stitch.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    monkeypatch.setattr(stitch, "analyse", lambda *a: pytest.fail("work started despite a full disk"))
    with pytest.raises(CsrefinerError, match=r"not enough free disk.*canvas.*0\.0 GiB is free") as err:
        stitch_tiles(tmp_path / "manifest.json", tmp_path, tmp_path / "out" / "out.ome.tif")
    assert str(tmp_path / "out") in str(err.value)
    assert stitch.disk_need(truth.shape) >= truth.size * 4  # the canvas at least


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("boom")])
def test_canvas_is_removed_on_every_failure(tmp_path, monkeypatch, truth, error):
    import csrefiner.wsi.stitch as stitch

    write_oracle_tiles(tmp_path, truth, 256, 64)
    seen = []

    def fail(canvas, n_labels):
        seen.append(canvas.path.exists())
        raise error

    monkeypatch.setattr(stitch, "_compaction", fail)
    expected = CsrefinerError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected, match="disk full" if expected is CsrefinerError else "boom"):
        stitch_tiles(tmp_path / "manifest.json", tmp_path, tmp_path / "out.ome.tif")
    assert seen == [True]  # the canvas existed while painting
    assert not list(tmp_path.glob(".*")) and not (tmp_path / "out.ome.tif").exists()
