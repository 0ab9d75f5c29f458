"""`csrefiner cgef` at chip scale: a generated mask + GEM written streaming (never whole in memory), cgef run in
its own process, wall / CPU / peak RSS measured, and every cell's count checked against a streaming oracle.

The mask is an analytic "oracle segmentation": one disc per cell of a jittered grid (spacing SPACING px, radius
5-11 px, inside its own grid square so discs never overlap), labels from 100,001 up, written as a tiled (512 px)
zlib TIFF like `stitch` writes. The label under any pixel is a formula, so the GEM's records (uniform over the
chip, in random order) get their truth per chunk without any mask in memory.

    python benchmarks/cgef_scale.py --side 8192 --side 16384 [--records-per-px 0.15] [--workdir /tmp/cgef-scale]
    python benchmarks/cgef_scale.py --size 40000x60000      # a whole 2 x 3 cm chip (~3.3 GB GEM, ~5 GB spill)

`run_cgef_case(side_y, side_x, records_per_px, workdir) -> dict` is the entry point for other benchmarks.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPACING = 28  # px between cell centres (1.3M cells at 32,768^2, ~3M at 40k x 60k)
FIRST_LABEL = 100_001
GENES = 20_000
TILE = 512
GEM_CHUNK = 2_000_000


@dataclass
class DiscChip:
    """Cell (i, j) of the grid: centre (j * S + ox, i * S + oy), radius r; label FIRST_LABEL + i * nx + j."""

    height: int
    width: int
    seed: int = 0
    spacing: int = SPACING
    cell_rows: tuple[int, int] | None = None  # only grid rows inside these pixel rows hold cells (a sparse chip)

    def __post_init__(self):
        s = self.spacing
        self.ny, self.nx = self.height // s, self.width // s
        y0, y1 = self.cell_rows or (0, self.height)
        self.i0, self.i1 = -(-y0 // s), y1 // s  # grid rows with cells
        rng = np.random.default_rng(self.seed)
        self.r = rng.integers(5, 12, (self.ny, self.nx))
        self.ox = rng.integers(self.r + 1, s - self.r - 1)
        self.oy = rng.integers(self.r + 1, s - self.r - 1)

    @property
    def n_cells(self) -> int:  # label range; labels of grid rows without cells are simply absent
        return self.ny * self.nx

    @property
    def n_present(self) -> int:
        return (self.i1 - self.i0) * self.nx

    def labels_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """uint32 label (0 = background) at integer pixel coordinates."""
        i, j = y // self.spacing, x // self.spacing
        ok = (i >= self.i0) & (i < self.i1) & (j < self.nx)
        i, j = np.minimum(i, self.ny - 1), np.minimum(j, self.nx - 1)
        dy = y - (i * self.spacing + self.oy[i, j])
        dx = x - (j * self.spacing + self.ox[i, j])
        inside = ok & (dx * dx + dy * dy <= self.r[i, j] ** 2)
        return np.where(inside, FIRST_LABEL + i * self.nx + j, 0).astype(np.uint32)

    def tiles(self):
        for y0 in range(0, self.height, TILE):
            for x0 in range(0, self.width, TILE):
                if (y0 or x0) and (y0 + TILE <= self.i0 * self.spacing or y0 >= self.i1 * self.spacing):
                    yield None  # an empty tile, stored with no bytes (tifffile needs the first one real)
                elif self.spacing < 64:
                    yy, xx = np.mgrid[y0 : y0 + TILE, x0 : x0 + TILE]
                    yield self.labels_at(yy.astype(np.int64), xx.astype(np.int64))
                else:  # sparse cells: paint the few discs that reach this tile
                    yield self._painted(y0, x0)

    def _painted(self, y0: int, x0: int) -> np.ndarray:
        tile = np.zeros((TILE, TILE), np.uint32)
        s = self.spacing
        for i in range(max(0, y0 // s - 1), min(self.ny, (y0 + TILE) // s + 1)):
            for j in range(max(0, x0 // s - 1), min(self.nx, (x0 + TILE) // s + 1)):
                cy, cx, r = i * s + self.oy[i, j], j * s + self.ox[i, j], self.r[i, j]
                ys = np.arange(max(cy - r, y0), min(cy + r + 1, y0 + TILE))
                xs = np.arange(max(cx - r, x0), min(cx + r + 1, x0 + TILE))
                if ys.size and xs.size:
                    lab = self.labels_at(ys[:, None].repeat(xs.size, 1), xs[None, :].repeat(ys.size, 0))
                    part = tile[ys[0] - y0 : ys[-1] - y0 + 1, xs[0] - x0 : xs[-1] - x0 + 1]
                    np.maximum(part, lab, out=part)
        return tile

    def write_mask(self, path: Path) -> None:
        import tifffile

        tifffile.imwrite(
            path,
            self.tiles(),
            shape=(self.height, self.width),
            dtype=np.uint32,
            tile=(TILE, TILE),
            compression="zlib",
            compressionargs={"level": 1},
            photometric="minisblack",
            metadata=None,
            bigtiff=True,
        )

    def write_gem(
        self,
        path: Path,
        n_records: int,
        exon: bool = False,
        ox: int = 0,
        oy: int = 0,
        seed: int = 1,
        near_cells: float = 0.0,
    ) -> dict:
        """GEM (gz) of n_records records in random order, uniform over the chip except a `near_cells` fraction
        aimed at random cells; returns the oracle: counts per cell."""
        import pandas as pd

        rng = np.random.default_rng(seed)
        per_cell = np.zeros(self.n_cells + 1, np.int64)
        total = 0
        names = np.array([f"G{g:05d}" for g in range(GENES)])
        with gzip.open(path, "wt", compresslevel=1) as fh:
            fh.write(f"#FileFormat=GEMv0.1\n#OffsetX={ox}\n#OffsetY={oy}\n")
            fh.write("geneID\tx\ty\tMIDCount" + ("\tExonCount" if exon else "") + "\n")
            for start in range(0, n_records, GEM_CHUNK):
                n = min(GEM_CHUNK, n_records - start)
                y = rng.integers(0, self.height, n)
                x = rng.integers(0, self.width, n)
                aim = np.flatnonzero(rng.random(n) < near_cells)
                i, j = rng.integers(self.i0, self.i1, aim.size), rng.integers(0, self.nx, aim.size)
                y[aim] = np.clip(i * self.spacing + self.oy[i, j] + rng.integers(-11, 12, aim.size), 0, self.height - 1)
                x[aim] = np.clip(j * self.spacing + self.ox[i, j] + rng.integers(-11, 12, aim.size), 0, self.width - 1)
                gene = (np.minimum(rng.zipf(1.3, n) - 1, GENES - 1) * 7919) % GENES
                count = np.minimum(rng.geometric(0.6, n), 60)
                label = self.labels_at(y, x)
                cell = np.where(label > 0, label.astype(np.int64) - FIRST_LABEL + 1, 0)
                per_cell += np.bincount(cell, weights=count, minlength=per_cell.size).astype(np.int64)
                total += int(count.sum())
                frame = pd.DataFrame({"geneID": names[gene], "x": x + ox, "y": y + oy, "MIDCount": count})
                if exon:
                    frame["ExonCount"] = rng.integers(0, count + 1)
                frame.to_csv(fh, sep="\t", index=False, header=False)
        return {"per_cell": per_cell[1:], "total": total}


LAUNCHER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.call(sys.argv[2:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(f'{time.perf_counter() - t} {u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
    "sys.exit(rc)"
)


def measure(cmd: list, log: Path) -> tuple[int, float, float, float]:
    """(exit code, wall s, peak RSS MB, CPU s) of a child process (a launcher, so the peak is the child's own)."""
    stats = log.with_suffix(".rusage")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CSREFINER_QUIET": "1"}
    with open(log, "w") as out:
        rc = subprocess.call(
            [sys.executable, "-c", LAUNCHER, stats, *map(str, cmd)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    wall, rss_kb, cpu = stats.read_text().split()
    return rc, float(wall), float(rss_kb) / 1024, float(cpu)


def check_exact(gef: Path, chip: DiscChip, truth: dict) -> dict:
    import h5py

    with h5py.File(gef, "r") as f:
        label = f["cellBin/label"][()].astype(np.int64)
        exp = f["cellBin/cell"]["expCount"].astype(np.int64)
        nnz = int(f["cellBin/cellExp"].shape[0])
    ours = np.zeros(chip.n_cells, np.int64)
    ours[label - FIRST_LABEL] = exp
    return {
        "cells": int(label.size),
        "nnz": nnz,
        "counts_in_cells": int(exp.sum()),
        "exact": bool(label.size == chip.n_present and np.array_equal(ours, truth["per_cell"])),
    }


def run_cgef_case(side_y: int, side_x: int, records_per_px: float, workdir: str | os.PathLike) -> dict:
    """Generate (cached) a side_y x side_x chip, run `csrefiner cgef` on it, return its figures."""
    work = Path(workdir) / f"cgef-{side_y}x{side_x}-{records_per_px}"
    work.mkdir(parents=True, exist_ok=True)
    chip = DiscChip(side_y, side_x)
    n_records = int(round(records_per_px * side_y * side_x))
    t = time.perf_counter()
    truth_file = work / "truth.npz"
    if not truth_file.exists():
        chip.write_mask(work / "mask.tif")
        truth = chip.write_gem(work / "chip.gem.gz", n_records)
        np.savez(truth_file, per_cell=truth["per_cell"], total=truth["total"])
    truth = dict(np.load(truth_file))
    generate_s = time.perf_counter() - t
    out = work / "chip.cellbin.gef"
    rc, wall, rss, cpu = measure(
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
            out,
            "--force",
        ],
        work / "cgef.log",
    )
    result = {
        "side_y": side_y,
        "side_x": side_x,
        "records_per_px": records_per_px,
        "records": n_records,
        "mask_gb_uint32": side_y * side_x * 4 / 1e9,
        "generate_s": round(generate_s, 1),
        "exit": rc,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_mb": round(rss),
        "records_per_s_wall": round(n_records / wall),
        "mask_mb_on_disk": round((work / "mask.tif").stat().st_size / 1e6),
        "gem_mb": round((work / "chip.gem.gz").stat().st_size / 1e6),
    }
    if rc == 0:
        result.update(check_exact(out, chip, truth))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, action="append", help="square chip side in px (repeatable)")
    parser.add_argument("--size", action="append", default=[], help="HxW chip in px, e.g. 40000x60000 (repeatable)")
    parser.add_argument("--records-per-px", type=float, default=0.15)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/csrefiner-cgef-scale"))
    args = parser.parse_args()
    rows = []
    shapes = [(side, side) for side in args.side or []] + [tuple(map(int, size.split("x"))) for size in args.size]
    for side_y, side_x in shapes or [(8192, 8192)]:
        row = run_cgef_case(side_y, side_x, args.records_per_px, args.workdir)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.workdir / "cgef_scale.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
