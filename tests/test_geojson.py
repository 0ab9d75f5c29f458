"""QuPath GeoJSON round trip: every object back with IoU >= 0.95 (holes, touching, diagonal pieces), QuPath keys,
and bad geometry named by feature."""

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk

from csrefiner.hitl.polygons import GeometryError, parse_geometry, rasterise
from csrefiner.hitl.tracing import signed_area
from csrefiner.io import read_labels, write_image, write_labels
from csrefiner.metrics.matching import matching
from csrefiner.metrics.overlap import sequential
from csrefiner.synth import HARD, nuclei_image

QUPATH = Path(__file__).parent / "data" / "qupath_export.geojson"  # keys and layout as QuPath 0.4+ writes them
KEY = "chipQ-x512_y256_w256_h256"


def tricky_mask():
    """Dense touching nuclei plus objects with holes, an island inside a hole, diagonal-only neighbours and a
    label made of two separate pieces; labels above uint16."""
    img, lab = nuclei_image((256, 256), HARD, seed=11)
    lab = np.where(lab > 0, lab + 70_000, 0).astype(np.uint32)
    lab[20:60, 180:240] = 0
    rr, cc = disk((40, 210), 17)
    lab[rr, cc] = 1
    rr, cc = disk((40, 210), 9)
    lab[rr, cc] = 0
    rr, cc = disk((40, 210), 4)
    lab[rr, cc] = 2  # island inside the hole of object 1
    lab[100:108, 100:108] = np.where(np.add.outer(range(8), range(8)) % 2, 3, 4)  # checkerboard: diagonal pieces
    lab[200:210, 10:20] = 5
    lab[200:210, 30:40] = 5  # one label, two pieces
    return img, lab


@pytest.fixture
def patch(tmp_path):
    img, lab = tricky_mask()
    write_image(tmp_path / f"{KEY}-img.tif", img)
    write_labels(tmp_path / f"{KEY}-mask.tif", lab)
    return tmp_path, lab


def test_round_trip_keeps_every_object(cli, patch):
    d, lab = patch
    cli("annotations", "to-geojson", "--mask", d / f"{KEY}-mask.tif", "--out", d / "objects.geojson")
    proc = cli(
        "annotations",
        "to-masks",
        "--geojson",
        d / "objects.geojson",
        "--image",
        d / f"{KEY}-img.tif",
        "--out",
        d / "back",
    )
    assert "warning" not in proc.stderr
    back = read_labels(d / "back" / f"{KEY}-mask.tif")
    m = matching(lab, back, thresh=0.95)
    assert m["tp"] == m["n_true"] == m["n_pred"] == len(np.unique(lab)) - 1
    # pixel-edge outlines give the pixels back exactly (labels renumbered in feature order)
    assert np.array_equal(sequential(lab)[0], sequential(back)[0])
    feats = json.loads((d / "objects.geojson").read_text())["features"]
    by_label = {f["properties"]["measurements"]["label"]: f["geometry"] for f in feats}
    assert by_label[1]["type"] == "Polygon" and len(by_label[1]["coordinates"]) == 2  # exterior + hole
    assert by_label[5]["type"] == "MultiPolygon" and len(by_label[5]["coordinates"]) == 2
    assert by_label[3]["type"] == "MultiPolygon" and len(by_label[3]["coordinates"]) == 32  # 32 lone squares


def test_export_keys_match_qupath(cli, patch):
    d, _ = patch
    cli(
        "annotations",
        "to-geojson",
        "--mask",
        d / f"{KEY}-mask.tif",
        "--out",
        d / "o.geojson",
        "--object-type",
        "detection",
        "--class",
        "Nucleus",
        "--color",
        "10,20,30",
    )
    ours = json.loads((d / "o.geojson").read_text())
    ref = json.loads(QUPATH.read_text())
    assert ours["type"] == ref["type"] == "FeatureCollection" and set(ours) == set(ref)
    ref_keys = set().union(*(f.keys() for f in ref["features"]))
    ref_classification = set(ref["features"][0]["properties"]["classification"])
    for f in ours["features"]:
        assert set(f) <= ref_keys and f["type"] == "Feature"
        uuid.UUID(f["id"])  # QuPath >= 0.4 ids are UUIDs
        props = f["properties"]
        assert props["objectType"] == "detection"
        assert set(props["classification"]) == ref_classification == {"name", "color"}
        assert props["classification"] == {"name": "Nucleus", "color": [10, 20, 30]}
        polys = [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"]
        for poly in polys:
            rings = [np.array(r, float) for r in poly]
            assert all(np.array_equal(r[0], r[-1]) for r in rings)
            assert signed_area(rings[0]) > 0 and all(signed_area(h) < 0 for h in rings[1:])  # RFC 7946 winding


def test_reads_a_qupath_export(cli, tmp_path):
    write_image(tmp_path / "roi-img.tif", np.zeros((64, 64), np.uint8))
    proc = cli("annotations", "to-masks", "--geojson", QUPATH, "--image", tmp_path / "roi-img.tif", "--out", tmp_path)
    assert "feature #3" in proc.stderr and "MultiPoint" in proc.stderr  # the point annotation is named, not dropped
    lab = read_labels(tmp_path / "roi-mask.tif")
    assert lab.max() == 4
    assert lab[14, 14] == 0 and lab[6, 6] == lab[22, 22] == 1  # the ring's hole stays empty
    assert (lab[44:54, 4:14] == 4).all() and (lab[44:50, 16:22] == 4).all()  # legacy MultiPolygon, one object
    assert (lab == 3).sum() == 18 * 18  # the cell's outline
    cli(
        "annotations",
        "to-masks",
        "--geojson",
        QUPATH,
        "--image",
        tmp_path / "roi-img.tif",
        "--out",
        tmp_path,
        "--nucleus",
        "--object-type",
        "cell",
        "--force",
    )
    assert (read_labels(tmp_path / "roi-mask.tif") == 1).sum() == 8 * 8  # only the cell, by its nucleus


def test_slide_origin(cli, patch):
    d, lab = patch
    cli("annotations", "to-geojson", "--mask", d / f"{KEY}-mask.tif", "--out", d / "s.geojson", "--origin", "slide")
    xy = np.concatenate(
        [
            np.array(r)
            for f in json.loads((d / "s.geojson").read_text())["features"]
            for poly in (
                [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"]
            )
            for r in poly
        ]
    )
    assert xy[:, 0].min() >= 512 and xy[:, 1].min() >= 256 and xy[:, 0].max() <= 512 + 256
    cli(
        "annotations",
        "to-masks",
        "--geojson",
        d / "s.geojson",
        "--image",
        d / f"{KEY}-img.tif",
        "--out",
        d / "b",
        "--origin",
        "slide",
    )
    assert np.array_equal(sequential(lab)[0], sequential(read_labels(d / "b" / f"{KEY}-mask.tif"))[0])
    proc = cli(
        "annotations",
        "to-masks",
        "--geojson",
        d / "s.geojson",
        "--image",
        d / f"{KEY}-img.tif",
        "--out",
        d / "c",
        check=False,
    )  # slide coordinates read as image coordinates: mostly outside
    assert proc.returncode == 2 and "outside the 256 x 256 image" in proc.stderr and not (d / "c").exists()


def _collection(*geometries):
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": f"obj-{i}", "geometry": g, "properties": {"objectType": "annotation"}}
            for i, g in enumerate(geometries)
        ],
    }


def test_invalid_and_outside_features_are_named(cli, tmp_path):
    write_image(tmp_path / "p-img.tif", np.zeros((40, 40), np.uint8))
    square = {"type": "Polygon", "coordinates": [[[2, 2], [10, 2], [10, 10], [2, 10], [2, 2]]]}
    bowtie = {"type": "Polygon", "coordinates": [[[20, 20], [30, 30], [30, 20], [20, 30], [20, 20]]]}
    partly_out = {"type": "Polygon", "coordinates": [[[35, 2], [45, 2], [45, 8], [35, 8], [35, 2]]]}
    (tmp_path / "bad.geojson").write_text(json.dumps(_collection(square, bowtie, partly_out)))
    args = (
        "annotations",
        "to-masks",
        "--geojson",
        tmp_path / "bad.geojson",
        "--image",
        tmp_path / "p-img.tif",
        "--out",
        tmp_path / "out",
    )
    proc = cli(*args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "feature #1, id obj-1: self-intersecting polygon" in proc.stderr and not (tmp_path / "out").exists()
    proc = cli(*args, "--lenient")
    assert "feature #1, id obj-1: self-intersecting polygon" in proc.stderr and "even-odd" in proc.stderr
    assert "feature #2, id obj-2: reaches outside the 40 x 40 image; clipped (about 30 pixel(s) cut off)" in proc.stderr
    lab = read_labels(tmp_path / "out" / "p-mask.tif")
    assert lab.max() == 3 and (lab == 3).sum() == 5 * 6 and (lab == 2).sum() > 0


def test_geometry_checks():
    with pytest.raises(GeometryError, match="not lists of"):
        parse_geometry({"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [3, 4]]]})
    with pytest.raises(GeometryError, match="fewer than 3"):
        parse_geometry({"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [0, 0]]]})
    outside_hole = parse_geometry(
        {
            "type": "Polygon",
            "coordinates": [
                [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
                [[12, 12], [14, 12], [14, 14], [12, 14], [12, 12]],
            ],
        }
    )
    with pytest.raises(GeometryError, match="outside its polygon"):
        rasterise(outside_hole)
    open_ring = parse_geometry({"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4]]]})
    assert open_ring.notes and rasterise(open_ring).sum() == 16
