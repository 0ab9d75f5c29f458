"""Open csrefiner's outputs with the real scverse clients (run in .venv-clients by tests/test_interop.py).

`python check_clients.py WORKDIR` reads WORKDIR/case.json (paths written by the test), runs every check and
writes WORKDIR/results.json: {check: "ok" | "<exception>"}; one failing check never hides the others.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402


def _affine(element, system):
    from spatialdata.transformations import get_transformation

    return get_transformation(element, to_coordinate_system=system).to_affine_matrix(("x", "y"), ("x", "y"))


def check_zarr(case: dict, name: str) -> None:
    """Export, read back, and check that image, labels, shapes and table align in every coordinate system."""
    import spatialdata as sd

    from csrefiner.interop.spatialdata import export_spatialdata

    c = case[name]
    out = Path(c["zarr"])
    export_spatialdata(out, c["mask"], c["slide"], c["table"], force=True)
    s = sd.read_zarr(out)
    image, labels, shapes, table = s["slide"], s["cell_labels"], s["cell_boundaries"], s["table"]
    for system in ("global", "microns", "chip"):
        ref = _affine(labels, system)
        for element in (image, shapes):
            assert np.allclose(_affine(element, system), ref), f"{system}: transformations differ"
    um = c["pixel_size_um"]
    assert np.allclose(_affine(labels, "microns")[:2, :2], np.eye(2) * um)
    assert np.allclose(_affine(labels, "chip")[:2, 2], c["offset"])
    level0 = labels["scale0"]["image"] if hasattr(labels, "children") else labels
    mask = np.asarray(level0.data)
    centre = shapes.geometry.centroid
    hit = mask[np.round(centre.y).astype(int), np.round(centre.x).astype(int)]  # pixel-centre convention
    assert np.array_equal(hit, shapes.index.to_numpy()), "a shape's centroid lies outside its label"
    attrs = table.uns["spatialdata_attrs"]
    assert set(attrs["region"]) == {"cell_labels", "cell_boundaries"}
    ids = table.obs[attrs["instance_key"]].to_numpy()
    assert set(ids) == set(shapes.index) == set(np.unique(mask)) - {0}
    # the table's chip-frame centres land on the shapes once the shapes go through the 'chip' transform
    rows = table.obs[table.obs[attrs["region_key"]] == "cell_boundaries"]
    chip = _affine(shapes, "chip")
    xy = np.column_stack([centre.x, centre.y, np.ones(len(centre))]) @ chip.T
    by_id = dict(zip(shapes.index, xy[:, :2]))
    spatial = table[rows.index].obsm["spatial"]
    err = np.abs(np.array([by_id[i] for i in rows[attrs["instance_key"]]]) - spatial).max()
    assert err < 2.0, f"chip-frame centres off by {err} px"
    # spatialdata's own polygons of the labels coincide with our shapes (same pixel-centre convention)
    theirs = sd.to_polygons(labels)
    first = shapes.index[0]
    assert np.allclose(theirs.loc[first].geometry.bounds, shapes.loc[first].geometry.bounds)


def check_scanpy(case: dict) -> None:
    import anndata as ad
    import scanpy as sc

    for h5ad in (case["offset"]["table"], case["plain"]["table"]):
        sc.pl.spatial(ad.read_h5ad(h5ad), color="total_counts", show=False)


def check_squidpy(case: dict) -> None:
    import anndata as ad
    import squidpy as sq

    for h5ad in (case["offset"]["table"], case["plain"]["table"]):
        sq.pl.spatial_scatter(ad.read_h5ad(h5ad), color="total_counts")


def check_ome_types(case: dict) -> None:
    from ome_types import from_tiff

    slide = from_tiff(case["offset"]["slide"]).images[0].pixels
    mask = from_tiff(case["offset"]["mask"]).images[0].pixels
    for axis in "xy":
        assert (
            getattr(mask, f"physical_size_{axis}")
            == getattr(slide, f"physical_size_{axis}")
            == case["offset"]["pixel_size_um"]
        )
        assert getattr(mask, f"physical_size_{axis}_unit") == getattr(slide, f"physical_size_{axis}_unit")


def check_napari(case: dict) -> None:
    from napari_tiff import napari_get_reader

    scales = []
    for path in (case["offset"]["slide"], case["offset"]["mask"]):
        (data, kwargs, _), *_ = napari_get_reader(path)(path)
        scales.append(list(kwargs.get("scale", [1, 1]))[-2:])
    assert scales[0] == scales[1] == [case["offset"]["pixel_size_um"]] * 2, scales


def check_stereoseq(case: dict) -> None:
    """spatialdata-io's reader on our GEF and h5ad placed in a SAW output folder."""
    import h5py
    import spatialdata_io

    saw = Path(case["saw"]["dir"])
    sn = case["saw"]["sn"]
    shutil.rmtree(saw, ignore_errors=True)
    for sub in ("02.count", "03.register", "04.tissuecut", "041.cellcut", "051.cellcluster"):
        (saw / sub).mkdir(parents=True)
    shutil.copy(case["saw"]["bgef"], saw / "02.count" / f"{sn}.raw.gef")
    shutil.copy(case["saw"]["bgef"], saw / "04.tissuecut" / f"{sn}.tissuecut.gef")
    shutil.copy(case["saw"]["mask"], saw / "03.register" / f"{sn}_mask.tif")
    shutil.copy(case["saw"]["slide"], saw / "03.register" / f"{sn}_regist.tif")
    shutil.copy(case["saw"]["gef"], saw / "041.cellcut" / f"{sn}.cellbin.gef")
    shutil.copy(case["saw"]["h5ad"], saw / "051.cellcluster" / "cell.cluster.h5ad")
    s = spatialdata_io.stereoseq(saw)
    table = next(iter(s.tables.values()))
    with h5py.File(case["saw"]["gef"], "r") as f:
        labels = f["cellBin/label"][:]
    exon = dict(zip(*np.load(case["saw"]["exon"])))
    assert table.n_obs == len(labels)
    assert np.array_equal(table.obs["cellExon"].to_numpy(np.int64), [exon.get(int(v), 0) for v in labels])


CHECKS = {
    "zarr_offset": lambda c: check_zarr(c, "offset"),
    "zarr_plain": lambda c: check_zarr(c, "plain"),
    "scanpy": check_scanpy,
    "squidpy": check_squidpy,
    "ome_types": check_ome_types,
    "napari": check_napari,
    "stereoseq": check_stereoseq,
}


def main(workdir: str) -> None:
    work = Path(workdir)
    case = json.loads((work / "case.json").read_text())
    results = {}
    for name, check in CHECKS.items():
        try:
            check(case)
            results[name] = "ok"
        except Exception as exc:  # every check reports; the test names the failure
            results[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
