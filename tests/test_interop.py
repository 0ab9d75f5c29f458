"""Every output in the right frame and scale, opened by the real clients.

Core checks run here: pixel size from slide to tiles, manifest and every level of the stitched mask; the
whole-slide GeoJSON traced band by band gives back the mask; the .h5ad carries scanpy's and stereopy's keys.
Client checks run in their own venvs (`make venv-clients`, `make venv-stereopy`, built by `make test-all`):
spatialdata (our zarr: image, labels, shapes, table aligned in every coordinate system, with and without a chip
offset), spatialdata-io's stereoseq reader on a SAW folder, scanpy, squidpy, ome-types, napari-tiff, stereopy.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.draw import disk
from venvs import side_venv

from csrefiner.io import write_labels
from csrefiner.io.frames import read_pixel_size
from csrefiner.stereo.run import cgef
from csrefiner.wsi.manifest import Manifest
from csrefiner.wsi.preview import write_preview
from csrefiner.wsi.stitch import stitch_tiles
from csrefiner.wsi.tile import tile_slide

REPO = Path(__file__).resolve().parents[1]
UM = 0.5
H, W = 600, 800
OFFSET = (5000, 7000)
SN = "SS200000001TL"


def _slide(path: Path) -> np.ndarray:
    img = (np.random.default_rng(0).random((H, W)) * 255).astype(np.uint8)
    tifffile.imwrite(
        path,
        img,
        tile=(256, 256),
        compression="zlib",
        metadata={
            "axes": "YX",
            "PhysicalSizeX": UM,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": UM,
            "PhysicalSizeYUnit": "µm",
        },
    )
    return img


def _cells() -> np.ndarray:
    """Disks of varied size on a grid, a few touching, one tall cell spanning several GeoJSON bands."""
    gt = np.zeros((H, W), np.uint32)
    rng = np.random.default_rng(1)
    k = 0
    for y in range(20, H - 10, 36):
        for x in range(20, W - 10, 36):
            k += 1
            rr, cc = disk((y + rng.integers(-3, 4), x + rng.integers(-3, 4)), rng.integers(8, 19), shape=gt.shape)
            gt[rr, cc] = k
    gt[100:400, 780:790] = k + 1
    return gt


def _gem(path: Path, mask: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Random records with ExonCount; returns [labels, exon totals] of the cells (the oracle)."""
    rng = np.random.default_rng(2)
    n = 30_000
    x, y = rng.integers(0, W, n), rng.integers(0, H, n)
    g = rng.integers(0, 40, n)
    rec = pd.DataFrame(
        {
            "geneID": [f"G{v:03d}" for v in g],
            "geneName": [f"Gene{v}" for v in g],
            "x": x + offset[0],
            "y": y + offset[1],
            "MIDCount": rng.integers(1, 6, n),
        }
    )
    rec = rec.groupby(["geneID", "geneName", "x", "y"], as_index=False)["MIDCount"].sum()
    rec["ExonCount"] = rng.integers(0, rec.MIDCount + 1)
    head = "#FileFormat=GEMv0.2\n" + (f"#OffsetX={offset[0]}\n#OffsetY={offset[1]}\n" if any(offset) else "")
    with gzip.open(path, "wt") as fh:
        fh.write(head + f"#Stereo-seqChip={SN}\n")
        rec.to_csv(fh, sep="\t", index=False)
    label = mask[rec.y - offset[1], rec.x - offset[0]]
    exon = rec.ExonCount[label > 0].groupby(label[label > 0]).sum()
    return np.array([exon.index.to_numpy(np.int64), exon.to_numpy(np.int64)]), rec


def _bgef(path: Path, rec: pd.DataFrame) -> None:
    """A minimal bin1 GEF (v2 gene table) of the records, for the SAW folder's count/tissuecut slots."""
    rec = rec.sort_values(["geneID", "x", "y"])
    genes = rec.groupby("geneID", sort=True).size()
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.array([2], np.uint32)
        b = f.create_group("geneExp/bin1")
        exp = np.zeros(len(rec), [("x", "<i4"), ("y", "<i4"), ("count", "<u4")])
        exp["x"], exp["y"], exp["count"] = rec.x, rec.y, rec.MIDCount
        ds = b.create_dataset("expression", data=exp)
        for k, v in (("minX", rec.x.min()), ("minY", rec.y.min()), ("maxX", rec.x.max()), ("maxY", rec.y.max())):
            ds.attrs[k] = np.array([v], np.int32)
        ds.attrs["resolution"] = np.array([500], np.uint32)
        gene = np.zeros(len(genes), [("gene", "S64"), ("offset", "<u4"), ("count", "<u4")])
        gene["gene"] = [s.encode() for s in genes.index]
        gene["offset"] = np.r_[0, np.cumsum(genes.to_numpy())[:-1]]
        gene["count"] = genes.to_numpy()
        b.create_dataset("gene", data=gene)
        b.create_dataset("exon", data=rec.ExonCount.to_numpy(np.uint32))


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    """slide -> tile -> (perfect segmenter) -> stitch -> cgef, with and without a chip offset."""
    d = tmp_path_factory.mktemp("interop")
    _slide(d / "slide.ome.tif")
    gt = _cells()
    manifest = tile_slide(d / "slide.ome.tif", d / "tiles", tile_size=256, overlap=64)
    for t in manifest.tiles:
        write_labels(
            d / "tiles" / f"{manifest.key(t)}-mask.tif",
            gt[t.y : t.y + t.h, t.x : t.x + t.w],
            pixel_size_um=read_pixel_size(d / "tiles" / manifest.image_name(t)),
        )
    stitch_tiles(d / "tiles" / "manifest.json", d / "tiles", d / "mask.ome.tif")
    write_preview(d / "mask.ome.tif", manifest, d / "preview.png")
    mask = tifffile.imread(d / "mask.ome.tif")
    case = {}
    for name, offset in (("offset", OFFSET), ("plain", (0, 0))):
        exon, rec = _gem(d / f"{name}.gem.gz", mask, offset)
        cgef(
            d / f"{name}.gem.gz",
            d / "mask.ome.tif",
            d / f"{name}.cellbin.gef",
            h5ad=d / f"{name}.h5ad",
            lowres_image=d / "preview.png" if name == "offset" else None,
        )
        np.save(d / f"{name}.exon.npy", exon)
        case[name] = {
            "slide": str(d / "slide.ome.tif"),
            "mask": str(d / "mask.ome.tif"),
            "table": str(d / f"{name}.h5ad"),
            "gef": str(d / f"{name}.cellbin.gef"),
            "zarr": str(d / f"{name}.zarr"),
            "offset": list(offset),
            "pixel_size_um": UM,
        }
        if name == "offset":
            _bgef(d / "offset.bgef", rec)
    case["saw"] = {
        "dir": str(d / "saw"),
        "sn": SN,
        "bgef": str(d / "offset.bgef"),
        "mask": str(d / "mask.ome.tif"),
        "slide": str(d / "slide.ome.tif"),
        "gef": case["offset"]["gef"],
        "h5ad": case["offset"]["table"],
        "exon": str(d / "offset.exon.npy"),
    }
    (d / "case.json").write_text(json.dumps(case))
    return {"dir": d, "gt": gt, "mask": mask, "manifest": manifest, "case": case}


# ------------------------------------------------------------------------------------------- core env


def test_pixel_size_flows_from_slide_to_every_level(chip):
    d = chip["dir"]
    assert Manifest.load(d / "tiles" / "manifest.json").pixel_size_um == UM
    assert {read_pixel_size(p) for p in (d / "tiles").glob("*-img.tif")} == {UM}
    assert read_pixel_size(d / "mask.ome.tif") == UM
    with tifffile.TiffFile(d / "mask.ome.tif") as tif:
        levels = tif.series[0].levels
        assert len(levels) >= 1
        for level in levels:
            num, den = level.keyframe.tags["XResolution"].value
            assert level.keyframe.tags["ResolutionUnit"].value == 3  # centimetre
            assert np.isclose(1e4 / (num / den), UM * H / level.shape[0], rtol=0.01)
    with h5py.File(d / "offset.cellbin.gef", "r") as f:
        assert f.attrs["csrefiner_pixel_size_um"][0] == UM


def test_pixel_size_from_tiff_tags_and_override(tmp_path):
    img = np.zeros((256, 256), np.uint8)
    tifffile.imwrite(tmp_path / "inch.tif", img, resolution=(25400 / 0.25, 25400 / 0.25), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "none.tif", img)
    assert np.isclose(read_pixel_size(tmp_path / "inch.tif"), 0.25)
    assert read_pixel_size(tmp_path / "none.tif") is None
    manifest = tile_slide(tmp_path / "none.tif", tmp_path / "t", tile_size=128, overlap=16, pixel_size_um=0.7)
    assert manifest.pixel_size_um == 0.7
    assert read_pixel_size(next((tmp_path / "t").glob("*-img.tif"))) == pytest.approx(0.7)


def test_slide_geojson_traces_every_cell_once(chip, tmp_path):
    from csrefiner.hitl.geojson import features_to_labels, read_features
    from csrefiner.wsi.outlines import write_slide_geojson

    mask = chip["mask"]
    n = write_slide_geojson(chip["dir"] / "mask.ome.tif", tmp_path / "cells.geojson", origin=(100, 50), rows=64)
    feats = read_features(tmp_path / "cells.geojson")
    labels = [f.properties["measurements"]["label"] for f in feats]
    assert n == len(labels) == len(set(labels)) == len(np.unique(mask)) - 1
    back, notes = features_to_labels(feats, mask.shape, offset=(100, 50))
    assert not notes
    pairs = pd.crosstab(back.ravel(), mask.ravel())
    assert np.array_equal(back > 0, mask > 0) and (pairs.to_numpy() > 0).sum(axis=1).max() == 1


def test_h5ad_carries_scanpy_and_stereopy_keys(chip):
    import anndata as ad

    a = ad.read_h5ad(chip["case"]["offset"]["table"])
    lib = a.uns["spatial"][SN]
    scale = lib["scalefactors"]["tissue_lowres_scalef"]
    image = lib["images"]["lowres"]
    assert image.shape[0] == pytest.approx((OFFSET[1] + H) * scale, abs=1)
    # the low-res image sits where the mask lies in the chip frame: a cell's centre falls on its colour
    x, y = (a.obsm["spatial"] * scale).astype(int).T
    assert (image[y, x].max(axis=-1) > 0).mean() > 0.9
    assert image[: int(OFFSET[1] * scale) - 1].max() == 0
    assert a.uns["bin_type"] == "cell_bins" and a.uns["resolution"] == 500 and a.uns["sn"]["sn"][0] == SN
    assert a.obsm["cell_border"].shape == (a.n_obs, 32, 2)
    assert a.uns["cellbin"]["offset_x"] == OFFSET[0] and a.uns["cellbin"]["pixel_size_um"] == UM


# ------------------------------------------------------------------------------------------- clients


@pytest.fixture(scope="module")
def client_results(chip):
    py = side_venv(".venv-clients", "venv-clients") / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [str(py), str(REPO / "tests" / "clients" / "check_clients.py"), str(chip["dir"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((chip["dir"] / "results.json").read_text())


@pytest.mark.parametrize(
    "check", ["zarr_offset", "zarr_plain", "scanpy", "squidpy", "ome_types", "napari", "stereoseq"]
)
def test_client(client_results, check):
    assert client_results[check] == "ok", client_results[check]


STEREOPY = """
import sys, numpy as np, anndata, stereo as st
d = st.io.read_h5ad(sys.argv[1], flavor="scanpy")
a = anndata.read_h5ad(sys.argv[1])
assert d.bin_type == "cell_bins", d.bin_type
assert d.attr["resolution"] == 500 and d.sn == sys.argv[2], (d.attr, d.sn)
assert d.cells.cell_border.shape == (d.n_cells, 32, 2)
assert np.array_equal(d.position, a.obsm["spatial"])
print("ok")
"""


def test_stereopy_opens_h5ad_as_cell_bins(chip):
    py = side_venv(".venv-stereopy", "venv-stereopy") / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-c", STEREOPY, chip["case"]["offset"]["table"], SN], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
