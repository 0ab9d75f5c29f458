"""Byte-identity guard for `csrefiner cgef`: build generated chips (offsets, touching cells, labels > 2^31, a
cell without records, GEM and bin1 GEF input, tiled and striped mask TIFFs), write the cell-bin GEF and .h5ad,
and record a hash of every file and of every dataset + attribute.

    python benchmarks/cgef_golden.py --save golden.json      # with the code to compare against
    python benchmarks/cgef_golden.py --check golden.json     # after a change: same hashes, at several band sizes

`--check` also reruns every case with tiny mask bands (many bands, cells spanning band edges), which must give
the same bytes. The GEF is compared byte for byte (the writer stores no timestamps); the .h5ad by content
(anndata's attribute order is its own business).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import tifffile

from csrefiner.synth import HARD, mix, nuclei_labels

BIG_LABEL = 4_000_000_000


def write_gem(path: Path, rec: pd.DataFrame, ox: int, oy: int, exon: bool = False) -> None:
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fmt = "GEMv0.2" if "geneName" in rec else "GEMv0.1"
        fh.write(f"#FileFormat={fmt}\n#OffsetX={ox}\n#OffsetY={oy}\n#Stereo-seqChip=SS2000\n")
        rec.to_csv(fh, sep="\t", index=False)


def write_bgef(path: Path, rec: pd.DataFrame, ox: int, oy: int) -> None:
    rec = rec.sort_values(["geneID", "x", "y"], kind="stable")
    gene_ids, counts = np.unique(rec.geneID.to_numpy(), return_counts=True)
    names = rec.drop_duplicates("geneID").set_index("geneID").geneName[gene_ids]
    expr = np.zeros(len(rec), [("x", "<i4"), ("y", "<i4"), ("count", "<u4")])
    expr["x"], expr["y"], expr["count"] = rec.x, rec.y, rec.MIDCount
    genes = np.zeros(gene_ids.size, [("geneID", "S64"), ("geneName", "S64"), ("offset", "<u8"), ("count", "<u8")])
    genes["geneID"], genes["geneName"] = gene_ids.astype("S64"), names.to_numpy().astype("S64")
    genes["offset"], genes["count"] = np.r_[0, np.cumsum(counts)[:-1]], counts
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.array([4], np.uint32)
        ds = f.create_dataset("geneExp/bin1/expression", data=expr)
        for key, value in (("minX", ox), ("minY", oy), ("maxX", rec.x.max()), ("maxY", rec.y.max())):
            ds.attrs[key] = np.array([value], np.int32)
        ds.attrs["resolution"] = np.array([500], np.uint32)
        f.create_dataset("geneExp/bin1/gene", data=genes)
        if "ExonCount" in rec:
            f.create_dataset("geneExp/bin1/exon", data=rec.ExonCount.to_numpy(np.uint16))


def records(shape, ox, oy, n, genes, seed, names=True, avoid=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    h, w = shape
    x, y = rng.integers(0, w, n), rng.integers(0, h, n)
    if avoid is not None:
        keep = avoid[y, x] == 0
        x, y = x[keep], y[keep]
    gene = rng.integers(0, genes, x.size)
    count = rng.integers(1, 6, x.size)
    rec = pd.DataFrame({"geneID": [f"ENSG{g:05d}" for g in gene], "x": x + ox, "y": y + oy, "MIDCount": count})
    if names:
        rec.insert(1, "geneName", [f"Gene{g}" for g in gene])
    keys = ["geneID", "geneName", "x", "y"] if names else ["geneID", "x", "y"]
    rec = rec.groupby(keys, as_index=False)["MIDCount"].sum()
    return rec.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def make_cases(work: Path) -> dict:
    """name -> (matrix path, mask path or array, block size, chunk rows)."""
    cases = {}
    # 1. the test chip: offsets, touching nuclei, labels from 70,000 and one at 4e9, a cell without records
    mask, _ = nuclei_labels((300, 400), HARD, seed=3, first_label=70_000)
    mask[mask == mask.max()] = BIG_LABEL
    mask[5:9, 5:9] = 123
    avoid = np.zeros_like(mask)
    avoid[5:9, 5:9] = 1
    rec = records(mask.shape, 1000, 2000, 60_000, 120, 7, avoid=avoid)
    write_gem(work / "chip.gem.gz", rec, 1000, 2000)
    write_bgef(work / "chip.gef", rec, 1000, 2000)
    tifffile.imwrite(work / "chip-mask.tif", mask, compression="zlib")
    cases["gem-offsets"] = ("chip.gem.gz", "chip-mask.tif", 64, 7000)
    cases["bgef-offsets"] = ("chip.gef", "chip-mask.tif", 64, 5000)
    cases["gem-array-mask"] = ("chip.gem.gz", mask, 256, 500_000)
    # 2. a larger dense chip, 1-based labels, no offsets, tiled mask as stitch writes it, v0.1 GEM
    mask2, _ = nuclei_labels((1100, 900), mix(HARD, radius=(5.0, 11.0)), seed=11)
    tifffile.imwrite(work / "dense-mask.tif", mask2, tile=(256, 256), compression="zlib")
    rec2 = records(mask2.shape, 0, 0, 300_000, 400, 5, names=False)
    write_gem(work / "dense.gem.gz", rec2, 0, 0)
    cases["gem-tiled"] = ("dense.gem.gz", "dense-mask.tif", 100, 50_000)
    # 3. sparse huge labels (> 2^31) on a striped uncompressed TIFF
    mask3 = np.where(mask2 > 0, mask2.astype(np.uint64) * 3_000_000 + 2_500_000_000, 0).astype(np.uint32)
    tifffile.imwrite(work / "big-mask.tif", mask3, rowsperstrip=37)
    write_gem(work / "big.gem.gz", records(mask3.shape, 0, 0, 100_000, 50, 9), 0, 0)
    cases["gem-big-labels"] = ("big.gem.gz", "big-mask.tif", 256, 500_000)
    # 4. the data covers only part of the mask: the last cells in block order have no counts (crashed before)
    write_gem(work / "part.gem.gz", records((1000, 800), 0, 0, 100_000, 50, 9), 0, 0)
    cases["gem-part-cover"] = ("part.gem.gz", "big-mask.tif", 256, 500_000)
    return cases


def dataset_hashes(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            h = hashlib.sha256()
            if isinstance(obj, h5py.Dataset):
                data = np.asarray(obj[()])
                h.update(str(data.dtype).encode() + str(data.shape).encode())
                h.update(np.ascontiguousarray(data).tobytes() if data.dtype != object else repr(data.tolist()).encode())
            for k in sorted(obj.attrs):
                h.update(k.encode() + repr(np.asarray(obj.attrs[k]).tolist()).encode())
            out[name] = h.hexdigest()[:16]

        visit("/", f)
        f.visititems(visit)
    return out


def run_cases(work: Path, cases: dict) -> dict:
    from csrefiner.stereo.run import cgef

    result = {}
    for name, (matrix, mask, block, chunk) in cases.items():
        out, h5ad = work / f"{name}.gef", work / f"{name}.h5ad"
        mask = work / mask if isinstance(mask, str) else mask
        try:
            cgef(work / matrix, mask, out, h5ad=h5ad, block_size=block, force=True, chunk_rows=chunk)
        except Exception as exc:  # a crash of the reference code is recorded, not compared
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        result[name] = {
            "gef_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "gef": dataset_hashes(out),
            "h5ad": dataset_hashes(h5ad),
        }
    return result


def compare(expected: dict, got: dict, label: str) -> list[str]:
    bad = []
    for case, exp in expected.items():
        g = got[case]
        if "error" in exp or "error" in g:
            if "error" not in exp or "error" not in g:
                print(f"{label} {case}: reference {exp.get('error', 'ok')}, now {g.get('error', 'ok')}")
            continue
        if g["gef_sha256"] != exp["gef_sha256"]:
            diff = [k for k in exp["gef"] if g["gef"].get(k) != exp["gef"][k]]
            bad.append(f"{label} {case}: GEF bytes differ (datasets differing: {diff or 'none, layout only'})")
        diff = [k for k in exp["h5ad"] if g["h5ad"].get(k) != exp["h5ad"][k]]
        if diff:
            bad.append(f"{label} {case}: h5ad content differs in {diff}")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cgef-golden-") as tmp:
        work = Path(tmp)
        cases = make_cases(work)
        if args.save:
            args.save.write_text(json.dumps(run_cases(work, cases), indent=1))
            print(f"saved {len(cases)} cases to {args.save}")
            return
        expected = json.loads(args.check.read_text())
        bad = compare(expected, run_cases(work, cases), "default bands")
        import csrefiner.stereo.maskbands as bands

        for pixels in (1, 5000, 40_000):  # one row per band, a few rows, many rows
            bands.BAND_PIXELS = pixels
            bad += compare(expected, run_cases(work, cases), f"bands of {pixels} px")
        print("\n".join(bad) if bad else f"all {len(cases)} cases byte-identical at every band size")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
