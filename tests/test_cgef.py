"""`csrefiner cgef`: exact cell-bin matrices from a uint32 instance mask, in gefpy's cell-bin GEF layout.

The oracle is numpy on the raw records: cell of a record = mask[y - offsetY, x - offsetX]. gefpy itself (the
reference, Python 3.10 venv) must read our files and return the same matrix.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile

from csrefiner.errors import CsrefinerError
from csrefiner.io import write_labels
from csrefiner.stereo.cellbin import build_cellbin
from csrefiner.stereo.geometry import BORDER_PAD, relabel_in_place
from csrefiner.stereo.run import cgef

REPO = Path(__file__).resolve().parents[1]
OX, OY = 1000, 2000  # GEM #OffsetX / #OffsetY: mask pixel (0, 0) is DNB (1000, 2000)
H, W = 300, 400
BIG_LABEL = 4_000_000_000


# ---------------------------------------------------------------- generated chip: mask + records


def touching_pairs(mask: np.ndarray) -> int:
    a, b = mask[:, :-1], mask[:, 1:]
    touch = (a != b) & (a > 0) & (b > 0)
    return int(np.count_nonzero(touch))


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    """Dense touching nuclei with labels above 65535 (one at 4e9), a cell without records, random records."""
    from csrefiner.synth import HARD, nuclei_labels

    mask, _ = nuclei_labels((H, W), HARD, seed=3, first_label=70_000)
    mask[mask == mask.max()] = BIG_LABEL
    mask[5:9, 5:9] = 123  # a small cell that gets no records
    rng = np.random.default_rng(7)
    n = 60_000
    x = rng.integers(0, W, n) + OX
    y = rng.integers(0, H, n) + OY
    gene = rng.integers(0, 120, n)
    count = rng.integers(1, 6, n)
    keep = ~((x - OX >= 5) & (x - OX < 9) & (y - OY >= 5) & (y - OY < 9))
    rec = pd.DataFrame(
        {
            "geneID": [f"ENSG{g:05d}" for g in gene[keep]],
            "geneName": [f"Gene{g}" for g in gene[keep]],
            "x": x[keep],
            "y": y[keep],
            "MIDCount": count[keep],
        }
    )
    rec = rec.groupby(["geneID", "geneName", "x", "y"], as_index=False)["MIDCount"].sum()
    rec = rec.sample(frac=1.0, random_state=1).reset_index(drop=True)  # GEMs are not sorted by position
    folder = tmp_path_factory.mktemp("chip")
    gem = folder / "chip.gem.gz"
    with gzip.open(gem, "wt") as fh:
        fh.write(f"#FileFormat=GEMv0.2\n#SortedBy=None\n#OffsetX={OX}\n#OffsetY={OY}\n#Stereo-seqChip=SS2000\n")
        rec.to_csv(fh, sep="\t", index=False)
    write_labels(folder / "mask.tif", mask)
    return {"mask": mask, "rec": rec, "gem": gem, "mask_path": folder / "mask.tif", "dir": folder}


def oracle_matrix(chip) -> pd.Series:
    """Summed count per (mask label, geneID), straight from the records."""
    rec = chip["rec"]
    label = chip["mask"][rec.y - OY, rec.x - OX]
    frame = pd.DataFrame({"label": label, "gene": rec.geneID, "count": rec.MIDCount})
    return frame[frame.label > 0].groupby(["label", "gene"])["count"].sum()


def read_cgef(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: f["cellBin"][k][()] for k in f["cellBin"]}
        out["attrs"] = {k: v for k, v in f.attrs.items()}
        out["cell_attrs"] = dict(f["cellBin/cell"].attrs)
    return out


def gef_matrix(g: dict) -> pd.Series:
    cell, genes = g["cell"], g["gene"]
    rows = np.repeat(np.arange(cell.size), cell["geneCount"])
    return pd.Series(
        g["cellExp"]["count"].astype(np.int64),
        index=pd.MultiIndex.from_arrays(
            [g["label"][rows], genes["geneID"][g["cellExp"]["geneID"]].astype(str)], names=["label", "gene"]
        ),
    ).sort_index()


@pytest.fixture(scope="module")
def built(chip):
    """The CLI run on the gz GEM with small chunks (streaming), plus AnnData."""
    out, h5ad = chip["dir"] / "chip.cellbin.gef", chip["dir"] / "chip.h5ad"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "csrefiner",
            "cgef",
            "--matrix",
            chip["gem"],
            "--mask",
            chip["mask_path"],
            "--out",
            out,
            "--h5ad",
            h5ad,
            "--block-size",
            "64",
            "--chunk-rows",
            "7000",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return {"gef": out, "h5ad": h5ad, "stdout": proc.stdout, "g": read_cgef(out)}


# ---------------------------------------------------------------- oracle


def test_per_cell_totals_equal_bincount_oracle(chip, built):
    mask, rec, g = chip["mask"], chip["rec"], built["g"]
    labels = np.unique(mask)[1:]
    compact = np.searchsorted(labels, mask[rec.y - OY, rec.x - OX]) + 1
    compact[mask[rec.y - OY, rec.x - OX] == 0] = 0
    oracle = np.bincount(compact, weights=rec.MIDCount, minlength=labels.size + 1)[1:].astype(np.int64)
    ours = dict(zip(g["label"], g["cell"]["expCount"].astype(np.int64)))
    assert len(ours) == labels.size  # every label is a cell: none merged, none dropped (incl. the empty one)
    assert np.array_equal([ours[v] for v in labels], oracle)
    assert ours[123] == 0 and ours[BIG_LABEL] > 0
    assert "counts in cells" in built["stdout"] and "1 cells have no counts" in built["stdout"]
    background = int(rec.MIDCount.sum() - oracle.sum())
    assert f"background {background:,} counts" in built["stdout"]


def test_full_matrix_and_geometry_match_the_mask(chip, built):
    mask, g = chip["mask"], built["g"]
    pd.testing.assert_series_equal(gef_matrix(g), oracle_matrix(chip).astype(np.int64), check_names=False)
    assert touching_pairs(mask) > 100  # the scene really has touching cells, and they stayed apart:
    area = pd.Series(mask.ravel()).value_counts()
    assert np.array_equal(g["cell"]["area"], area[g["label"]].to_numpy())
    dnb = chip["rec"].drop_duplicates(["x", "y"])
    dnb_label = pd.Series(mask[dnb.y - OY, dnb.x - OX]).value_counts()
    assert np.array_equal(g["cell"]["dnbCount"], dnb_label.reindex(g["label"], fill_value=0).to_numpy())
    # borders: <= 32 points, each a pixel of its own cell, offsets from the cell centre
    border = g["cellBorder"]
    assert border.shape == (g["cell"].size, 32, 2) and border.dtype == np.int16
    valid = border[..., 0] != BORDER_PAD
    rows = np.nonzero(valid)[0]
    bx = g["cell"]["x"][rows] + border[..., 0][valid] - OX
    by = g["cell"]["y"][rows] + border[..., 1][valid] - OY
    assert np.array_equal(mask[by, bx], g["label"][rows])
    assert valid.sum(axis=1).min() >= 1 and np.median(valid.sum(axis=1)) >= 16


def test_cellexp_geneexp_offsets_and_blocks_are_consistent(built):
    g = built["g"]
    cell, gene, cexp, gexp = g["cell"], g["gene"], g["cellExp"], g["geneExp"]
    assert np.array_equal(cell["id"], np.arange(cell.size))
    assert np.array_equal(cell["offset"], np.r_[0, np.cumsum(cell["geneCount"])[:-1]])
    assert np.array_equal(gene["offset"], np.r_[0, np.cumsum(gene["cellCount"])[:-1]])
    rows = np.repeat(np.arange(cell.size), cell["geneCount"])
    cols = np.repeat(np.arange(gene.size), gene["cellCount"])
    by_cell = {(r, c): n for r, c, n in zip(rows, cexp["geneID"], cexp["count"])}
    by_gene = {(r, c): n for r, c, n in zip(gexp["cellID"], cols, gexp["count"])}
    assert by_cell == by_gene and len(by_cell) == cexp.size
    for start, n in zip(cell["offset"], cell["geneCount"]):
        assert np.all(np.diff(cexp["geneID"][start : start + n].astype(np.int64)) > 0)
    assert np.all(gene["geneID"][:-1] < gene["geneID"][1:])
    assert np.array_equal(gene["expCount"], np.bincount(cexp["geneID"], weights=cexp["count"]).astype(np.int64))
    assert cell["expCount"].sum() == gene["expCount"].sum()
    assert gene["geneName"][0] == b"Gene0" and gene["geneID"][0] == b"ENSG00000"
    # blocks: [bw, bh, nbx, nby]; every cell sits in its block's range, x then y descending inside
    bw, bh, nbx, nby = g["blockSize"]
    assert (bw, bh, nbx, nby) == (64, 64, -(-W // 64), -(-H // 64))
    index = g["blockIndex"].astype(np.int64)
    assert index.size == nbx * nby + 1 and index[0] == 0 and index[-1] == cell.size
    block = (cell["x"] - OX) // bw + ((cell["y"] - OY) // bh) * nbx
    for b in range(nbx * nby):
        inside = slice(index[b], index[b + 1])
        assert np.all(block[inside] == b)
        assert np.all(np.diff(cell["x"][inside] * 100_000 + cell["y"][inside]) <= 0)
    a = g["attrs"]
    assert a["bin_type"][0] == b"CellBin" and a["version"][0] == 4 and a["resolution"][0] == 500
    assert (a["offsetX"][0], a["offsetY"][0], a["maxX"][0], a["maxY"][0]) == (OX, OY, OX + W - 1, OY + H - 1)
    assert a["sn"][0] == b"SS2000" and g["cellTypeList"][0] == b"default"
    assert g["label"].dtype == np.uint32 and g["cell_attrs"]["maxArea"][0] == cell["area"].max()


def test_h5ad_holds_the_same_matrix(chip, built):
    anndata = pytest.importorskip("anndata")
    ad = anndata.read_h5ad(built["h5ad"])
    g = built["g"]
    assert ad.shape == (g["cell"].size, g["gene"].size)
    assert np.array_equal(ad.obs["label"].to_numpy(), g["label"].astype(np.int64))
    assert list(ad.var_names) == list(g["gene"]["geneID"].astype(str))
    assert list(ad.var["gene_name"]) == list(g["gene"]["geneName"].astype(str))
    coo = ad.X.tocoo()
    ours = pd.Series(
        coo.data.astype(np.int64), index=pd.MultiIndex.from_arrays([g["label"][coo.row], ad.var_names[coo.col]])
    ).sort_index()
    pd.testing.assert_series_equal(ours, oracle_matrix(chip).astype(np.int64), check_names=False)
    assert np.array_equal(ad.obsm["spatial"], np.column_stack([g["cell"]["x"], g["cell"]["y"]]).astype(float))
    assert np.array_equal(ad.obs["area_px"].to_numpy(), g["cell"]["area"])


# ---------------------------------------------------------------- other inputs give the same result


def write_bgef(path: Path, rec: pd.DataFrame, version: int) -> None:
    """A bin1 GEF as gefpy writes it (layout doc): expression rows grouped by gene, gene table v4 or v2."""
    rec = rec.sort_values(["geneID", "x", "y"], kind="stable")
    gene_ids, counts = np.unique(rec.geneID.to_numpy(), return_counts=True)
    names = rec.drop_duplicates("geneID").set_index("geneID").geneName[gene_ids]
    expr = np.zeros(len(rec), [("x", "<i4"), ("y", "<i4"), ("count", "<u4")])
    expr["x"], expr["y"], expr["count"] = rec.x, rec.y, rec.MIDCount
    if version == 4:
        genes = np.zeros(gene_ids.size, [("geneID", "S64"), ("geneName", "S64"), ("offset", "<u8"), ("count", "<u8")])
        genes["geneID"], genes["geneName"] = gene_ids.astype("S64"), names.to_numpy().astype("S64")
    else:
        genes = np.zeros(gene_ids.size, [("gene", "S64"), ("offset", "<u8"), ("count", "<u8")])
        genes["gene"] = gene_ids.astype("S64")
    genes["offset"], genes["count"] = np.r_[0, np.cumsum(counts)[:-1]], counts
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.array([version], np.uint32)
        f.attrs["bin_type"] = np.array([b"Bin"], "S32")
        ds = f.create_dataset("geneExp/bin1/expression", data=expr, compression="gzip")
        for key, value in (("minX", OX), ("minY", OY), ("maxX", rec.x.max()), ("maxY", rec.y.max())):
            ds.attrs[key] = np.array([value], np.int32)
        ds.attrs["maxExp"] = np.array([rec.MIDCount.max()], np.uint32)
        ds.attrs["resolution"] = np.array([500], np.uint32)
        f.create_dataset("geneExp/bin1/gene", data=genes)


def same_result(a, b, names=True) -> None:
    for key in ("label", "x", "y", "area", "dnb_count", "border", "indptr", "gene", "count", "block_index"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert a.gene_ids == b.gene_ids and (a.gene_names == b.gene_names or not names)
    assert (a.offset_x, a.offset_y) == (b.offset_x, b.offset_y)


def test_gem_bgef_and_text_variants_agree(chip, tmp_path, monkeypatch):
    ref = build_cellbin(chip["gem"], chip["mask"], block_size=64)
    write_bgef(tmp_path / "v4.gef", chip["rec"], 4)
    monkeypatch.setattr("csrefiner.stereo.maskbands.BAND_PIXELS", 1)  # one row per band: cells span many bands
    same_result(ref, build_cellbin(tmp_path / "v4.gef", chip["mask"], block_size=64, chunk_rows=5000))
    monkeypatch.undo()
    write_bgef(tmp_path / "v2.gef", chip["rec"], 2)
    v2 = build_cellbin(tmp_path / "v2.gef", chip["mask"], block_size=64)
    same_result(ref, v2, names=False)
    assert v2.gene_names == v2.gene_ids  # no names in a v2 GEF: ids stand in
    # plain comma-separated v0.1 GEM, UMICount, columns in another order, no offsets header but same frame
    plain = tmp_path / "plain.gem"
    rec = chip["rec"].rename(columns={"MIDCount": "UMICount"})[["x", "y", "UMICount", "geneID"]]
    with open(plain, "w") as fh:
        fh.write(f"#FileFormat=GEMv0.1\n#OffsetX={OX}\n#OffsetY={OY}\n")
        rec.to_csv(fh, index=False)
    same_result(ref, build_cellbin(plain, chip["mask"], block_size=64), names=False)


def test_relabel_handles_sparse_and_dense_uint32_labels():
    mask = np.array([[0, 5, 5], [BIG_LABEL, 0, 70_000], [BIG_LABEL, 5, 70_000]], np.uint32)
    for m in (mask.copy(), np.where(mask == BIG_LABEL, 9, mask).astype(np.uint32)):
        original = m.copy()
        labels = relabel_in_place(m, "t")
        assert np.array_equal(labels[m[original > 0] - 1], original[original > 0]) and m.max() == labels.size


# ---------------------------------------------------------------- bad input: clear error, no output


def gem_text(header: str, rows: list[str]) -> str:
    return header + "\n" + "\n".join(rows) + "\n"


BAD_GEMS = {
    "missing column": (gem_text("geneID\tx\ty", ["A\t1\t1"]), "missing column"),
    "v0.2 header, no geneName": (
        gem_text("#FileFormat=GEMv0.2\ngeneID\tx\ty\tMIDCount", ["A\t1\t1\t1"]),
        "header lies",
    ),
    "v0.1 header, geneName": (
        gem_text("#FileFormat=GEMv0.1\ngeneID\tgeneName\tx\ty\tMIDCount", ["A\tB\t1\t1\t1"]),
        "header lies",
    ),
    "rows with an extra field": (
        gem_text("geneID\tx\ty\tMIDCount", ["A\tB\t1\t1\t1", "A\tB\t2\t1\t1"]),
        "rows do not match",
    ),
    "rows with a missing field": (gem_text("geneID\tgeneName\tx\ty\tMIDCount", ["A\t1\t1\t1"]), "rows do not match"),
    "empty geneID": (gem_text("geneID\tx\ty\tMIDCount", ["A\t1\t1\t1", "\t2\t1\t1"]), "empty geneID"),
    "negative coordinate": (gem_text("geneID\tx\ty\tMIDCount", ["A\t1\t1\t1", "A\t-3\t1\t1"]), "negative coordinate"),
    "outside the mask": (
        gem_text("geneID\tx\ty\tMIDCount", ["A\t1\t1\t1", "A\t25\t9\t1"]),
        r"span x 1..25, y 1..9 but the mask .* covers x 0..19, y 0..9",
    ),
    "offset pushes rows off the mask": (
        gem_text("#OffsetX=5\ngeneID\tx\ty\tMIDCount", ["A\t3\t1\t1"]),
        r"covers x 5..24",
    ),
    "not a GEM": ("\x00\x01binary", "not text|column row"),
}


@pytest.mark.parametrize("case", list(BAD_GEMS))
def test_bad_gem_is_a_clear_error_without_output(case, tmp_path):
    text, message = BAD_GEMS[case]
    (tmp_path / "bad.gem").write_text(text)
    mask = np.zeros((10, 20), np.uint32)
    mask[:, :10], mask[:, 10:] = 1, 2
    with pytest.raises(CsrefinerError, match=message) as err:
        cgef(tmp_path / "bad.gem", mask, tmp_path / "out.gef", h5ad=tmp_path / "out.h5ad")
    assert "bad.gem" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gem"]  # nothing written, no temp left


def test_bad_gef_inputs(chip, built, tmp_path):
    small = chip["mask"][:, : W // 2]
    write_bgef(tmp_path / "chip.gef", chip["rec"], 4)
    cases = [
        (tmp_path / "chip.gef", small, r"extent x 1000..1399, y 2000..2299 does not fit the mask"),
        (built["gef"], chip["mask"], "is a cell-bin GEF already"),
    ]
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    cases.append((tmp_path / "other.h5", chip["mask"], "without /geneExp/bin1/gene"))
    data = chip["gem"].read_bytes()
    (tmp_path / "cut.gem.gz").write_bytes(data[: len(data) // 2])
    cases.append((tmp_path / "cut.gem.gz", chip["mask"], "is the .gz file complete"))
    for matrix, mask, message in cases:
        with pytest.raises(CsrefinerError, match=message):
            cgef(matrix, mask, tmp_path / "out.gef")
        assert not (tmp_path / "out.gef").exists()


def test_bad_masks_and_existing_output_via_cli(chip, cli, tmp_path):
    rng = np.random.default_rng(0)
    binary = (chip["mask"] > 0).astype(np.uint8) * 255
    masks = {
        "float.tif": (chip["mask"].astype(np.float32), "not an integer label image"),
        "binary.tif": (binary, "binary or semantic mask"),
        "intensity.tif": (rng.integers(0, 255, (H, W)).astype(np.uint8), "intensity image"),
        "small.tif": (chip["mask"][: H // 2], r"covers x 1000..1399, y 2000..2149"),
    }
    for name, (array, message) in masks.items():
        tifffile.imwrite(tmp_path / name, array)
        out = tmp_path / f"{name}.gef"
        proc = cli("cgef", "--matrix", chip["gem"], "--mask", tmp_path / name, "--out", out, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert re.search(message, proc.stderr), proc.stderr
        assert not out.exists()
    out = tmp_path / "exists.gef"
    out.write_bytes(b"keep")
    proc = cli("cgef", "--matrix", chip["gem"], "--mask", chip["mask_path"], "--out", out, check=False)
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_bytes() == b"keep"
    assert not list(tmp_path.glob(".*partial*"))


# ---------------------------------------------------------------- gefpy 1.3.3 reads our file


READ_WITH_GEFPY = r"""
import sys, numpy as np
from gefpy.cgef_reader_cy import CgefR
g = CgefR(sys.argv[1])
out = {}
out["indices"], out["indptr"], out["count"] = g.get_sparse_matrix_indices(order="cell")
out["cells"] = np.asarray(g.get_cells()).copy()
names = g.get_gene_names()
out["names"] = np.asarray(names[0] if isinstance(names, tuple) else names)
coords, n = g.get_cellborders([])
out["borders"] = np.asarray(coords).reshape(-1, n // 2, 2)
region = [int(v) for v in sys.argv[3].split(",")]
for key, v in zip(["f_cell", "f_genes", "f_count", "f_ci", "f_gi"], g.get_filtered_data(region, [])):
    out[key] = np.asarray(v)
np.savez(sys.argv[2], **out)
"""

BGEF_WITH_GEFPY = r"""
import sys
from gefpy.bgef_writer_cy import generate_bgef
generate_bgef(sys.argv[1], sys.argv[2], n_thread=2, bin_sizes=[1])
"""


@pytest.fixture(scope="module")
def gefpy():
    from venvs import side_venv

    return str(side_venv(".venv-gefpy", "venv-gefpy") / "bin" / "python")


def test_gefpy_reads_our_cellbin_gef(chip, built, gefpy, tmp_path):
    region = (OX + 100, OX + 260, OY + 50, OY + 200)  # minX, maxX, minY, maxY (half-open in CgefR)
    proc = subprocess.run(
        [gefpy, "-c", READ_WITH_GEFPY, built["gef"], tmp_path / "r.npz", ",".join(map(str, region))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r, g = np.load(tmp_path / "r.npz"), built["g"]
    assert np.array_equal(r["indptr"], np.r_[0, np.cumsum(g["cell"]["geneCount"])])
    assert np.array_equal(r["indices"], g["cellExp"]["geneID"]) and np.array_equal(r["count"], g["cellExp"]["count"])
    for field in ("x", "y", "offset", "geneCount", "expCount", "dnbCount", "area"):
        assert np.array_equal(r["cells"][field].astype(np.int64), g["cell"][field].astype(np.int64)), field
    assert np.array_equal(r["names"].astype(str), g["gene"]["geneName"].astype(str))
    assert np.array_equal(r["borders"], g["cellBorder"])
    # stereopy's region read: cells whose centre is inside the region (uses blockIndex), same counts
    x, y = g["cell"]["x"].astype(np.int64), g["cell"]["y"].astype(np.int64)
    inside = np.flatnonzero((x >= region[0]) & (x < region[1]) & (y >= region[2]) & (y < region[3]))
    got = dict(zip(r["f_cell"].tolist(), range(r["f_cell"].size)))
    assert sorted(got) == sorted((x[inside] << 32 | y[inside]).tolist()) and len(inside) > 20
    label_at = dict(zip(((x << 32) | y).tolist(), g["label"].tolist()))
    sub = pd.Series(
        r["f_count"].astype(np.int64),
        index=pd.MultiIndex.from_arrays(
            [
                np.array([label_at[c] for c in r["f_cell"][r["f_ci"]].tolist()], np.uint32),
                r["f_genes"][r["f_gi"]].astype(str),
            ]
        ),
    ).sort_index()
    full = gef_matrix(g)
    names = dict(zip(g["gene"]["geneID"].astype(str), g["gene"]["geneName"].astype(str)))
    full.index = full.index.set_levels([names[v] for v in full.index.levels[1]], level=1)
    expected = full[full.index.get_level_values(0).isin(g["label"][inside])].sort_index()
    pd.testing.assert_series_equal(sub, expected, check_names=False)


def test_gefpy_written_bgef_gives_the_same_result(chip, gefpy, tmp_path):
    gem = tmp_path / "chip.gem"
    with gzip.open(chip["gem"], "rb") as src:
        gem.write_bytes(src.read())
    proc = subprocess.run(
        [gefpy, "-c", BGEF_WITH_GEFPY, gem, tmp_path / "chip.bgef"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    same_result(build_cellbin(chip["gem"], chip["mask"]), build_cellbin(tmp_path / "chip.bgef", chip["mask"]))


# ---------------------------------------------------------------- the mask is streamed, never read whole


def scale_bench():
    """benchmarks/cgef_scale.py: the analytic disc chip (label under any pixel is a formula) and its oracle."""
    spec = importlib.util.spec_from_file_location("cgef_scale", REPO / "benchmarks" / "cgef_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cgef_scale"] = module
    spec.loader.exec_module(module)
    return module


CAPPED = r"""
import resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from csrefiner.stereo.run import cgef
cgef(sys.argv[2], sys.argv[3], sys.argv[4])
"""
MEMORY_CAP = 700 * 2**20  # address space, imports included; the mask alone is 1.6 GB as uint32


def test_cgef_streams_a_400_mpx_mask_under_a_memory_cap(tmp_path):
    """20,000 x 20,000 uint32 mask (1.6 GB in memory, < 1 MB on disk: tiled, mostly empty tiles), 4,000 cells
    across several mask bands, 300k records; cgef runs with its address space capped at 700 MB and must give
    every cell's exact count. Reading the whole mask (or a per-pixel array) cannot fit under the cap."""
    bench = scale_bench()
    chip = bench.DiscChip(20_000, 20_000, spacing=100, cell_rows=(9_500, 11_500))
    chip.write_mask(tmp_path / "mask.tif")
    truth = chip.write_gem(tmp_path / "chip.gem.gz", 300_000, near_cells=0.5)
    assert chip.height * chip.width * 4 > 2 * MEMORY_CAP and (tmp_path / "mask.tif").stat().st_size < 2**20
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CSREFINER_QUIET": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
    }
    out = tmp_path / "chip.cellbin.gef"
    proc = subprocess.run(
        [sys.executable, "-c", CAPPED, str(MEMORY_CAP), tmp_path / "chip.gem.gz", tmp_path / "mask.tif", out],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = bench.check_exact(out, chip, truth)
    assert result["exact"] and result["cells"] == 4_000 and result["counts_in_cells"] > 100_000, result
    assert not list(tmp_path.glob(".*partial*"))  # the spill files are gone


# ---------------------------------------------------------------- exon counts, as gefpy writes them

EXON_SETS = ("cellExon", "cellExpExon", "geneExon", "geneExpExon")
GEFPY_BGEF_CGEF = r"""
import sys
from gefpy.bgef_writer_cy import generate_bgef
from gefpy.cgef_writer_cy import generate_cgef
generate_bgef(sys.argv[1], sys.argv[2], n_thread=1, bin_sizes=[1])
generate_cgef(sys.argv[3], sys.argv[2], sys.argv[4], [256, 256])
"""


def test_exon_datasets_equal_gefpys_own(gefpy, tmp_path):
    """A GEM with ExonCount on a mask of separate discs (gefpy's connected components find the same cells):
    gefpy's generate_cgef and ours give the same cells, matrix and exon datasets, from the GEM and from
    gefpy's BGEF; the .h5ad carries layers['exon']."""
    bench = scale_bench()
    bench.GENES = 50
    chip = bench.DiscChip(600, 800, spacing=40)
    yy, xx = np.mgrid[0:600, 0:800]
    mask = chip.labels_at(yy, xx)
    tifffile.imwrite(tmp_path / "binary.tif", (mask > 0).astype(np.uint8))
    chip.write_gem(tmp_path / "chip.gem.gz", 60_000, exon=True, near_cells=0.5)
    with gzip.open(tmp_path / "chip.gem.gz", "rb") as src:
        (tmp_path / "chip.gem").write_bytes(src.read())
    proc = subprocess.run(
        [
            gefpy,
            "-c",
            GEFPY_BGEF_CGEF,
            tmp_path / "chip.gem",
            tmp_path / "chip.bgef",
            tmp_path / "gefpy.gef",
            tmp_path / "binary.tif",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = read_cgef(tmp_path / "gefpy.gef")
    for matrix in ("chip.gem.gz", "chip.bgef"):
        out = tmp_path / f"{matrix}.gef"
        cgef(tmp_path / matrix, mask, out, h5ad=tmp_path / f"{matrix}.h5ad")
        ours = read_cgef(out)
        for key in ("cell", "cellExp", "geneExp", "blockIndex") + EXON_SETS:
            assert np.array_equal(ours[key], theirs[key]), (matrix, key)
        with h5py.File(out) as a, h5py.File(tmp_path / "gefpy.gef") as b:
            for key in EXON_SETS:
                attrs = {k: (v.tolist(), v.dtype) for k, v in a["cellBin"][key].attrs.items()}
                assert attrs == {k: (v.tolist(), v.dtype) for k, v in b["cellBin"][key].attrs.items()}, key
        assert ours["cellExon"].sum() > 1000
    anndata = pytest.importorskip("anndata")
    ad = anndata.read_h5ad(tmp_path / "chip.gem.gz.h5ad")
    assert np.array_equal(np.asarray(ad.layers["exon"].sum(axis=1)).ravel(), ours["cellExon"])


def test_without_exon_input_no_exon_datasets(built):
    assert not set(EXON_SETS) & set(built["g"])


# ---------------------------------------------------------------- cells without counts, and no cell hit at all


def write_small_gem(path: Path, rows: list[tuple[str, int, int, int]]) -> Path:
    path.write_text("geneID\tx\ty\tMIDCount\n" + "".join(f"{g}\t{x}\t{y}\t{c}\n" for g, x, y, c in rows))
    return path


def test_cells_without_counts_are_kept_wherever_they_sit(tmp_path):
    """The last cell in GEF block order without counts, a one-record GEM, and empty rows between full ones."""
    mask = np.zeros((40, 60), np.uint32)
    mask[2:6, 2:6], mask[2:6, 40:44], mask[30:35, 3:8], mask[30:36, 50:57] = 7, 8, 9, 10
    one = write_small_gem(tmp_path / "one.gem", [("A", 3, 3, 5)])
    m = cgef(one, mask, tmp_path / "one.gef", h5ad=tmp_path / "one.h5ad", block_size=16)
    g = read_cgef(tmp_path / "one.gef")
    assert g["label"][-1] != 7 and g["cell"]["geneCount"][-1] == 0  # the last cell in block order is empty
    assert dict(zip(g["label"], g["cell"]["expCount"].tolist())) == {7: 5, 8: 0, 9: 0, 10: 0}
    assert m.stats["cell_count"] == 5 and g["cellExp"].size == 1
    rows = [("A", 41, 3, 2), ("B", 41, 4, 1), ("B", 52, 31, 4), ("A", 0, 0, 9)]  # 8 and 10 hit, 7 and 9 not
    cgef(write_small_gem(tmp_path / "gaps.gem", rows), mask, tmp_path / "gaps.gef", block_size=16)
    g = read_cgef(tmp_path / "gaps.gef")
    assert dict(zip(g["label"], g["cell"]["expCount"].tolist())) == {7: 0, 8: 3, 9: 0, 10: 4}
    assert dict(zip(g["label"], g["cell"]["dnbCount"].tolist())) == {7: 0, 8: 2, 9: 0, 10: 1}


def test_no_record_on_any_cell_is_a_frame_error(tmp_path):
    mask = np.zeros((40, 60), np.uint32)
    mask[2:6, 2:6] = 1
    gem = write_small_gem(tmp_path / "off.gem", [("A", 30, 20, 1), ("B", 59, 39, 2)])
    with pytest.raises(
        CsrefinerError,
        match=r"none of its 2 records falls on a cell.*60 x 40 px.*x 30..59, "
        r"y 20..39.*frame mistake.*#OffsetX/#OffsetY",
    ) as err:
        cgef(gem, mask, tmp_path / "off.gef")
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off.gem"]


# ---------------------------------------------------------------- chunked writing and lean border state


def test_gef_written_in_tiny_chunks_has_the_same_bytes(tmp_path, monkeypatch):
    """The entry datasets (cellExp, geneExp and the exon ones) are written a chunk of entries and a range of
    genes at a time; chunks of a few entries must give the bytes of one whole write."""
    import csrefiner.stereo.cgef_chunks as chunks
    import csrefiner.stereo.cgef_writer as writer

    bench = scale_bench()
    bench.GENES = 50
    chip = bench.DiscChip(300, 400, spacing=40)
    yy, xx = np.mgrid[0:300, 0:400]
    chip.write_gem(tmp_path / "chip.gem.gz", 20_000, exon=True, near_cells=0.5)
    m = build_cellbin(tmp_path / "chip.gem.gz", chip.labels_at(yy, xx), block_size=64)
    assert m.exon is not None and m.gene.size > 500
    writer.write_cgef(m, tmp_path / "whole.gef")
    for module, name, value in ((chunks, "ENTRY_CHUNK", 37), (writer, "ENTRY_CHUNK", 37), (writer, "CELL_CHUNK", 5)):
        monkeypatch.setattr(module, name, value)
    assert len(list(chunks.gene_ranges(np.bincount(m.gene), chunks.ENTRY_CHUNK))) > 5
    writer.write_cgef(m, tmp_path / "chunked.gef")
    assert (tmp_path / "chunked.gef").read_bytes() == (tmp_path / "whole.gef").read_bytes()


def star_reference(cx, cy, bands):
    """The border search with a uint32 score per (cell, sector), as it was before the score was derived from
    the kept offsets: the oracle for saturated (far) offsets."""
    from csrefiner.stereo.geometry import BORDER_POINTS

    best = np.zeros((cx.size, BORDER_POINTS), np.uint32)
    border = np.zeros((cx.size, BORDER_POINTS, 2), np.int64)
    for cells, ys, xs in bands:
        picks = {}  # inside a band: the farthest point per (cell, sector), the first one on a tie
        for c, y, x in zip(cells.tolist(), ys.tolist(), xs.tolist()):
            dx, dy = x - int(cx[c - 1]), y - int(cy[c - 1])
            sector = int((np.arctan2(dy, dx) + np.pi) * (BORDER_POINTS / (2 * np.pi)))
            key = (c - 1, BORDER_POINTS - 1 - min(max(sector, 0), BORDER_POINTS - 1))
            if key not in picks or dx * dx + dy * dy > picks[key][0]:
                picks[key] = (dx * dx + dy * dy, dx, dy)
        for key, (d2, dx, dy) in picks.items():  # across bands: a saturated score keeps the earlier pick
            score = min(d2 + 1, np.iinfo(np.uint32).max)
            if score > best[key]:
                best[key] = score
                border[key] = np.clip([dx, dy], -BORDER_PAD, BORDER_PAD)
    return best > 0, border


def test_star_border_picks_equal_the_scored_search_even_for_far_points():
    """Picks come from exact squared distances also when an offset does not fit int16 (kept aside): a far
    saturated pick is replaced only by a farther point, and a cell left with one is refused."""
    from csrefiner.stereo.geometry import StarBorder

    rng = np.random.default_rng(5)
    cx, cy = np.array([0, 100, 50_000]), np.array([0, 100, 50_000])
    bands = []
    for scale in (20, 40_000, 60_000, 30, 45_000):
        cells = rng.integers(1, 4, 400)
        ys = rng.integers(-scale, scale + 1, 400) + cy[cells - 1]
        xs = rng.integers(-scale, scale + 1, 400) + cx[cells - 1]
        bands.append((cells, ys, xs))
    star = StarBorder(cx, cy)
    for band in bands:
        star.add(*band)
    present, border = star_reference(cx, cy, bands)
    assert np.array_equal(star.border[..., 0] != -32768, present)
    assert np.array_equal(star.border[present], border[present])
    assert star._far  # the far picks were exercised
    with pytest.raises(CsrefinerError, match="more than 32,766 pixels"):
        star.result()
    near = StarBorder(cx[:2], cy[:2])
    small = [(c[c < 3], y[c < 3], x[c < 3]) for c, y, x in bands[:1] + bands[3:4]]
    for band in small:
        near.add(*band)
    present, border = star_reference(cx[:2], cy[:2], small)
    out = near.result()
    for i in range(2):
        assert np.array_equal(out[i][: present[i].sum()], border[i][present[i]])
        assert (out[i][present[i].sum() :] == BORDER_PAD).all()
