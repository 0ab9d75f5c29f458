"""Time `csrefiner cgef` against gefpy 1.3.3 (generate_bgef + generate_cgef) on the same generated chip.

2000 x 2000 px mask of ~8,000 touching nuclei (uint32 labels), a GEM of 20,000 genes and ~4M records. Each
tool runs as its own subprocess (wall time and peak RSS from wait4); gefpy runs in a Python 3.10 venv
(.venv-gefpy, created if missing). Counts are checked against the numpy oracle
bincount(mask[y, x], weights=count). gefpy only takes a binary mask, so it gets (labels > 0) - touching cells
merge - and, as CSRefiner feeds it, a binary mask with each cell's bottom row and right column removed.

Run: `.venv/bin/python benchmarks/cgef_vs_gefpy.py [--workdir /tmp/cgef-bench] [--records 4000000]`
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import tifffile

from csrefiner.io import read_labels, write_labels
from csrefiner.stereo.gefpy_env import gefpy_python
from csrefiner.synth import HARD, mix, nuclei_labels

REPO = Path(__file__).resolve().parents[1]
SIZE, GENES = 2000, 20_000

GEFPY_BGEF = (
    "from gefpy.bgef_writer_cy import generate_bgef; import sys; "
    "generate_bgef(sys.argv[1], sys.argv[2], n_thread=2, bin_sizes=[1])"
)
GEFPY_BGEF_DEFAULT = (
    "from gefpy.bgef_writer_cy import generate_bgef; import sys; generate_bgef(sys.argv[1], sys.argv[2], n_thread=2)"
)
GEFPY_CGEF = (
    "from gefpy.cgef_writer_cy import generate_cgef; import sys; "
    "generate_cgef(sys.argv[1], sys.argv[2], sys.argv[3], [256, 256])"
)


def make_chip(work: Path, n_records: int) -> None:
    """Mask (uint32 TIFF) and GEM (gz) with Zipf-like gene frequencies; cached in the work folder."""
    if (work / "chip.gem.gz").exists() and (work / "mask.tif").exists():
        return
    labels, _ = nuclei_labels((SIZE, SIZE), mix(HARD, radius=(7.0, 13.0)), seed=0)
    write_labels(work / "mask.tif", labels, force=True)
    rng = np.random.default_rng(0)
    pos = rng.integers(0, SIZE * SIZE, n_records)
    gene = np.minimum(rng.zipf(1.3, n_records) - 1, GENES - 1)
    gene = (gene * 7919) % GENES  # spread the frequent genes over the id range
    key = np.unique(gene.astype(np.int64) * SIZE * SIZE + pos)
    gene, pos = key // (SIZE * SIZE), key % (SIZE * SIZE)
    count = np.minimum(rng.geometric(0.6, key.size), 60)
    frame = pd.DataFrame(
        {
            "geneID": pd.Categorical.from_codes(gene, [f"GENE{i:05d}" for i in range(GENES)]),
            "x": pos % SIZE,
            "y": pos // SIZE,
            "MIDCount": count,
        }
    )
    with gzip.open(work / "chip.gem.gz", "wt", compresslevel=3) as fh:
        fh.write("#FileFormat=GEMv0.1\n#OffsetX=0\n#OffsetY=0\n")
        frame.to_csv(fh, sep="\t", index=False)


# A forked child inherits its parent's peak RSS (Linux), so each tool is started by this small launcher and
# the launcher reports its child's figures.
LAUNCHER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.call(sys.argv[2:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(f'{time.perf_counter() - t} {u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
    "sys.exit(rc)"
)


def run(cmd: list, log: Path, may_fail: bool = False) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of a child process."""
    stats = log.with_suffix(".rusage")
    with open(log, "w") as out:
        rc = subprocess.call(
            [sys.executable, "-c", LAUNCHER, stats, *map(str, cmd)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), "CSREFINER_QUIET": "1"},
        )
    if rc != 0 and not may_fail:
        sys.exit(f"{cmd[:4]} failed, see {log}")
    if not stats.exists():
        return float("nan"), float("nan"), float("nan")
    wall, rss_kb, cpu = stats.read_text().split()
    return float(wall), float(rss_kb) / 1024, float(cpu)


def best_of(repeat: int, cmd: list, log: Path, before=None) -> tuple[float, float, float]:
    """The fastest of `repeat` runs (other jobs on the machine add noise): wall s, largest peak MB, its CPU s."""
    runs = []
    for _ in range(repeat):
        if before:
            before()
        runs.append(run(cmd, log))
    fastest = min(runs)
    return fastest[0], max(r[1] for r in runs), fastest[2]


def oracle(work: Path, labels: np.ndarray) -> tuple[dict, int]:
    gem = pd.read_csv(work / "chip.gem.gz", sep="\t", comment="#", usecols=["x", "y", "MIDCount"])
    under = labels[gem.y.to_numpy(), gem.x.to_numpy()]
    totals = pd.Series(gem.MIDCount.to_numpy()).groupby(under).sum()
    return totals.drop(0, errors="ignore").to_dict(), len(gem)


def cells_of(path: Path) -> tuple[int, int]:
    """(cells, counts in cells) of a cell-bin GEF."""
    try:
        f = h5py.File(path, "r")
    except OSError:
        return 0, 0
    with f:
        if "cellBin/cell" not in f:
            return 0, 0
        cell = f["cellBin/cell"][()]
    return cell.size, int(cell["expCount"].astype(np.int64).sum())


def csrefiner_binary(labels: np.ndarray) -> np.ndarray:
    """CSRefiner's instance-to-binary: a pixel stays only if its right and lower neighbours are the same cell."""
    keep = labels > 0
    keep[:, :-1] &= labels[:, :-1] == labels[:, 1:]
    keep[:-1, :] &= labels[:-1, :] == labels[1:, :]
    return keep.astype(np.uint8)


GEFPY_BOTH = (
    "import sys; from gefpy.bgef_writer_cy import generate_bgef; from gefpy.cgef_writer_cy import generate_cgef; "
    "generate_bgef(sys.argv[1], sys.argv[2], n_thread=1, bin_sizes=[1]); "
    "generate_cgef(sys.argv[3], sys.argv[2], sys.argv[4], [256, 256])"
)


def gefpy_pitfalls(python: str, work: Path) -> None:
    """Small cases where gefpy silently writes wrong or empty output (each line is measured, not quoted)."""
    tiny = work / "pitfalls"
    tiny.mkdir(exist_ok=True)
    labels, _ = nuclei_labels((60, 80), HARD, seed=1)
    tifffile.imwrite(tiny / "binary.tif", (labels > 0).astype(np.uint8))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 80, 3000), rng.integers(0, 60, 3000)
    x[:2], y[:2] = (0, 79), (0, 59)  # the data spans the whole mask
    for name, ox, header, _cols in (
        ("offsets", 1000, "#FileFormat=GEMv0.2\n#OffsetX=1000\n#OffsetY=500\n", True),
        ("v02-no-header", 0, "", True),
    ):
        oy = 500 if ox else 0
        with open(tiny / f"{name}.gem", "w") as fh:
            fh.write(header + "geneID\tgeneName\tx\ty\tMIDCount\n")
            for i in range(x.size):
                fh.write(f"G{i % 7}\tName{i % 7}\t{x[i] + ox}\t{y[i] + oy}\t1\n")
        out = tiny / f"{name}.cgef"
        out.unlink(missing_ok=True)
        proc = subprocess.run(
            [python, "-c", GEFPY_BOTH, tiny / f"{name}.gem", tiny / f"{name}.bgef", out, tiny / "binary.tif"],
            capture_output=True,
            text=True,
        )
        with h5py.File(tiny / f"{name}.bgef", "r") as f:
            table = f["geneExp/bin1/gene"][()]
            genes = [g.decode() for g in table[table.dtype.names[0]][:3]]  # v2 files call the field "gene"
        print(
            f"gefpy, GEM {name}: exit {proc.returncode}, {cells_of(out)[0]} cells written "
            f"(mask has {len(np.unique(labels)) - 1} objects), first gene ids read {genes}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/csrefiner-cgef-bench"))
    parser.add_argument("--records", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool; the fastest is reported")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    make_chip(work, args.records)
    labels = read_labels(work / "mask.tif")
    truth, n_records = oracle(work, labels)
    n_labels = int(np.unique(labels).size - 1)
    print(
        f"chip: {SIZE} x {SIZE} px, {n_labels:,} cells (labels), {GENES:,} genes, {n_records:,} records, "
        f"{sum(truth.values()):,} counts under cells"
    )

    rows = []
    wall, rss, cpu = best_of(
        args.repeat,
        [
            sys.executable,
            "-m",
            "csrefiner",
            "cgef",
            "--matrix",
            work / "chip.gem.gz",
            "--mask",
            work / "mask.tif",
            "--out",
            work / "ours.gef",
            "--force",
        ],
        work / "ours.log",
    )
    with h5py.File(work / "ours.gef", "r") as f:
        ours = dict(zip(f["cellBin/label"][()].tolist(), f["cellBin/cell"]["expCount"].astype(np.int64).tolist()))
    exact = all(ours.get(k, 0) == v for k, v in truth.items()) and len(ours) == n_labels
    rows.append(("csrefiner cgef (uint32 labels)", wall, cpu, rss, len(ours), sum(ours.values()), exact))

    python, why = gefpy_python(REPO / ".venv-gefpy")
    if python is None:
        print(f"gefpy NOT run: {why}")
    else:
        tifffile.imwrite(work / "binary.tif", (labels > 0).astype(np.uint8))
        tifffile.imwrite(work / "eroded.tif", csrefiner_binary(labels))
        t_b, rss_b, cpu_b = best_of(
            args.repeat,
            [python, "-c", GEFPY_BGEF, work / "chip.gem.gz", work / "chip.bgef"],
            work / "bgef.log",
            before=lambda: (work / "chip.bgef").unlink(missing_ok=True),
        )
        for mask, name in (("binary.tif", "labels > 0"), ("eroded.tif", "CSRefiner binary")):
            out = work / f"gefpy-{mask}.gef"
            t_c, rss_c, cpu_c = best_of(
                args.repeat,
                [python, "-c", GEFPY_CGEF, out, work / "chip.bgef", work / mask],
                work / f"{mask}.log",
                before=lambda: out.unlink(missing_ok=True),
            )
            n, counts = cells_of(out)
            same = n == n_labels and counts == sum(truth.values())  # necessary for exactness, not sufficient
            rows.append((f"gefpy bgef+cgef ({name})", t_b + t_c, cpu_b + cpu_c, max(rss_b, rss_c), n, counts, same))
        print(f"gefpy generate_bgef {t_b:.1f} s ({rss_b:.0f} MB), generate_cgef {t_c:.1f} s ({rss_c:.0f} MB)")
        (work / "default.bgef").unlink(missing_ok=True)
        t_d, rss_d, _ = run(
            [python, "-c", GEFPY_BGEF_DEFAULT, work / "chip.gem.gz", work / "default.bgef"], work / "bgef-default.log"
        )
        print(f"gefpy generate_bgef with its default bin sizes (1 ... 500): {t_d:.1f} s ({rss_d:.0f} MB)")
        out = work / "gefpy-uint32.gef"
        out.unlink(missing_ok=True)
        run([python, "-c", GEFPY_CGEF, out, work / "chip.bgef", work / "mask.tif"], work / "uint32.log", may_fail=True)
        size = out.stat().st_size if out.exists() else 0
        print(
            f"gefpy generate_cgef on the uint32 label mask: {cells_of(out)[0] if size else 0} cells, "
            f"{size} byte file (see {work / 'uint32.log'})"
        )
        gefpy_pitfalls(python, work)

    total = sum(truth.values())
    print(f"\n{'tool':<34} {'wall s':>7} {'CPU s':>6} {'peak MB':>8} {'cells':>7} {'counts in cells':>16} {'exact':>6}")
    for name, wall, cpu, rss, n, counts, ok in rows:
        print(
            f"{name:<34} {wall:>7.1f} {cpu:>6.1f} {rss:>8.0f} {n:>7,} {counts:>10,} ({counts / total:>4.0%}) "
            f"{str(ok):>6}"
        )
    if len(rows) > 1:
        print(f"speed-up over gefpy: {rows[1][1] / rows[0][1]:.1f}x wall, {rows[1][2] / rows[0][2]:.1f}x CPU")


if __name__ == "__main__":
    main()
