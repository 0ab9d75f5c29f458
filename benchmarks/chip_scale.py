"""Chip scale: tile -> stitch -> cgef on a generated Stereo-seq chip with exact truth, each stage in its own process.

For each size, a slide (uint8, tiled TIFF), its ground-truth nuclei (uint32, tiled TIFF) and a bin1 GEM are
generated block by block with the project's generators (`csrefiner.synth.nuclei_labels`, per-block seeds and
label offsets; nuclei on a block border are cut there): the slide is never held in memory. The per-tile masks
are the ground truth cut to the manifest's tile grid (an oracle standing in for `segment`), so every output is
checkable: the stitched objects must equal the truth up to renumbering, and every cell's count in the cell-bin
GEF must equal the sum of the GEM records under it (accumulated while the GEM is generated).

Measured per stage (its own process, started by a launcher that reports RUSAGE_CHILDREN): wall s, CPU s, peak
RSS, and peak disk of the stage's output folder (polled; the stitch canvas is a sparse temporary file there).
Side by side: gefpy 1.3.3 generate_bgef + generate_cgef (Python 3.10 venv, binary mask as it requires) under
a time cap; sopa's `aggregate` (vectorised stitched mask, GEM records as points; chip_scale_sopa.py) under its
own cap when `--sopa-python` names a Python that has sopa, checked cell by cell against the truth like cgef.

    nice .venv/bin/python benchmarks/chip_scale.py --sizes 8192,16384 [--records-per-pixel 0.15]
        [--stages tile,stitch,cgef] [--gefpy-cap 900] [--no-gefpy] [--code PATH] [--workdir results/chip_scale]
        [--sopa-python /path/to/venv/bin/python] [--sopa-cap 900]

Sizes are N (square) or HxW (40000x60000). `--code` runs the csrefiner stages from another checkout (before /
after comparisons). Raw figures go to <workdir>/chip_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BLOCK = 512  # generator block side (a multiple of the TIFF tile)
GENES = 2000

# A forked child inherits its parent's peak RSS on Linux, so each stage is started by this launcher, which
# reports only its child's figures.
LAUNCHER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.call(sys.argv[2:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(f'{time.perf_counter() - t} {u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
    "sys.exit(rc)"
)


# ---------------------------------------------------------------- child stages


def _block_grid(shape):
    h, w = shape
    return [(y, x, min(BLOCK, h - y), min(BLOCK, w - x)) for y in range(0, h, BLOCK) for x in range(0, w, BLOCK)]


def stage_generate(work: Path, shape: tuple[int, int], rpp: float) -> dict:
    """truth.tif, slide.tif, chip.gem and oracle.npy (per-truth-label count sums), one block row at a time."""
    import pandas as pd

    from csrefiner.synth import EASY, nuclei_labels, render
    from csrefiner.wsi.writer import TILE, write_pyramid

    h, w = shape
    rows = list(range(0, h, BLOCK))
    state = {"first": 1, "records": 0, "oracle": np.zeros(1 << 16, dtype=np.int64)}
    names = np.array([f"GENE{i:05d}" for i in range(GENES)])
    gem = open(work / "chip.gem", "w")
    gem.write("#FileFormat=GEMv0.1\n#OffsetX=0\n#OffsetY=0\ngeneID\tx\ty\tMIDCount\n")

    def records(labels, y, x, seed, corner):
        """GEM records of one block: unique (gene, pixel), Zipf-like genes, counts 1..."""
        bh, bw = labels.shape
        rng = np.random.default_rng(seed)
        n = int(round(rpp * bh * bw))
        pos = rng.integers(0, bh * bw, n)
        if corner is not None and n:
            pos[0] = corner  # the GEM spans the whole mask (gefpy requires it)
        gene = (np.minimum(rng.zipf(1.3, n) - 1, GENES - 1) * 7919) % GENES
        key = np.unique(gene.astype(np.int64) * (bh * bw) + pos)
        gene, pos = key // (bh * bw), key % (bh * bw)
        count = np.minimum(rng.geometric(0.6, key.size), 60)
        under = labels.ravel()[pos]
        top = int(under.max(initial=0)) + 1
        if top > state["oracle"].size:
            grown = np.zeros(max(top, 2 * state["oracle"].size), np.int64)
            grown[: state["oracle"].size] = state["oracle"]
            state["oracle"] = grown
        state["oracle"][:top] += np.bincount(under, weights=count, minlength=top).astype(np.int64)
        state["records"] += key.size
        frame = pd.DataFrame({"geneID": names[gene], "x": x + pos % bw, "y": y + pos // bw, "MIDCount": count})
        frame.to_csv(gem, sep="\t", header=False, index=False)

    # First pass: blocks, GEM records and the oracle, one block row at a time into raw band files. The TIFF
    # writer reads each level twice (content UUID, then the pixels), so its tile sources must be re-readable.
    for i, y in enumerate(rows):
        bh = min(BLOCK, h - y)
        labels = np.zeros((bh, w), dtype=np.uint32)
        image = np.zeros((bh, w), dtype=np.uint8)
        for j, x in enumerate(range(0, w, BLOCK)):
            bw = min(BLOCK, w - x)
            seed = 1_000_003 * i + j
            lab, shading = nuclei_labels((bh, bw), EASY, seed=seed, first_label=state["first"])
            state["first"] = max(state["first"], int(lab.max()) + 1)
            labels[:, x : x + bw], image[:, x : x + bw] = lab, render(shading, EASY, seed=seed)
            corner = 0 if (y, x) == (0, 0) else bh * bw - 1 if (y + bh, x + bw) == (h, w) else None
            records(lab, y, x, seed, corner)
        np.save(work / f"labels{i}.npy", labels)
        np.save(work / f"image{i}.npy", image)
    gem.close()

    def band_tiles(prefix):
        def tiles(step):
            for i in range(len(rows)):
                band = np.load(work / f"{prefix}{i}.npy", mmap_mode="r")
                for r in range(0, band.shape[0], TILE):
                    for c in range(0, w, TILE):
                        yield np.array(band[r : r + TILE, c : c + TILE])

        return tiles

    write_pyramid(
        work / "truth.tif", shape, np.uint32, None, steps=[1], level=1, tiles=band_tiles("labels"), force=True
    )
    write_pyramid(work / "slide.tif", shape, np.uint8, None, steps=[1], tiles=band_tiles("image"), force=True)
    for i in range(len(rows)):
        (work / f"labels{i}.npy").unlink()
        (work / f"image{i}.npy").unlink()
    np.save(work / "oracle.npy", state["oracle"][: state["first"]])
    return {"cells": state["first"] - 1, "records": state["records"]}


def stage_oracle(work: Path) -> dict:
    """Stand-in for `csrefiner segment`: each tile's mask is the ground truth under it."""
    from csrefiner.io import write_labels
    from csrefiner.wsi.manifest import Manifest
    from csrefiner.wsi.reader import open_slide

    manifest = Manifest.load(work / "tiles" / "manifest.json")
    (work / "masks").mkdir(exist_ok=True)
    with open_slide(work / "truth.tif") as truth:
        for t in manifest.tiles:
            write_labels(work / "masks" / f"{manifest.key(t)}-mask.tif", truth.read(t.y, t.x, t.h, t.w), force=True)
    return {"tiles": len(manifest.tiles)}


def _paired_blocks(work: Path, shape, other: str):
    from csrefiner.wsi.reader import open_slide

    with open_slide(work / "truth.tif") as a, open_slide(work / other) as b:
        for y in range(0, shape[0], 2048):
            for x in range(0, shape[1], 2048):
                hh, ww = min(2048, shape[0] - y), min(2048, shape[1] - x)
                yield a.read(y, x, hh, ww).astype(np.uint64), b.read(y, x, hh, ww).astype(np.uint64)


def stage_verify(work: Path, shape) -> dict:
    """Stitched objects == truth up to renumbering (streamed); saves the truth label of each stitched label."""
    pairs = np.unique(
        np.concatenate([np.unique(t << np.uint64(32) | r) for t, r in _paired_blocks(work, shape, "labels.ome.tif")])
    )
    t, r = (pairs >> np.uint64(32)).astype(np.int64), (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    exact = bool(len(np.unique(t)) == len(t) and len(np.unique(r)) == len(r) and ((t == 0) == (r == 0)).all())
    truth_of = np.zeros(int(r.max()) + 1, dtype=np.int64)
    truth_of[r] = t
    np.save(work / "truth_of.npy", truth_of)
    return {"objects": int((r > 0).sum()), "truth_cells": int((t > 0).sum()), "exact": exact}


def stage_check_cgef(work: Path, gef: str) -> dict:
    """Every cell's expCount equals the GEM records under its true cell; cells without records may be absent."""
    import h5py

    oracle, truth_of = np.load(work / "oracle.npy"), np.load(work / "truth_of.npy")
    with h5py.File(work / gef, "r") as f:
        labels = f["cellBin/label"][()].astype(np.int64)
        counts = f["cellBin/cell"]["expCount"].astype(np.int64)
    expected = oracle[truth_of[labels]]
    listed = np.zeros(truth_of.size, dtype=bool)
    listed[labels] = True
    listed[0] = True  # background
    missed = int(oracle[truth_of[~listed]].sum()) if (~listed).any() else 0
    return {
        "cells": int(labels.size),
        "counts": int(counts.sum()),
        "exact": bool((expected == counts).all() and missed == 0),
    }


def stage_check_sopa(work: Path) -> dict:
    """sopa's per-polygon counts against the truth: polygons assign by geometry, so some records move or vanish."""
    oracle, truth_of = np.load(work / "oracle.npy"), np.load(work / "truth_of.npy")
    got = np.load(work / "sopa" / "counts.npz")
    stitched = np.flatnonzero(truth_of)  # every stitched cell; a polygon dropped by vectorize counts 0
    counts = np.zeros(truth_of.size, dtype=np.int64)
    counts[got["labels"]] = got["counts"]
    diff = counts[stitched] - oracle[truth_of[stitched]]
    return {
        "cells": int(got["labels"].size),
        "truth_cells": int(stitched.size),
        "cells_with_counts": int((got["counts"] > 0).sum()),
        "truth_cells_with_counts": int((oracle[truth_of[stitched]] > 0).sum()),
        "counts": int(got["counts"].sum()),
        "truth_counts": int(oracle[truth_of[stitched]].sum()),
        "cells_exact": int((diff == 0).sum()),
        "abs_diff": int(np.abs(diff).sum()),  # counts in a wrong cell or in none, summed over both sides
        "exact": bool((diff == 0).all()),
    }


def stage_binary(work: Path, shape) -> dict:
    """The mask gefpy takes: labels > 0 as an uncompressed uint8 TIFF, written in row bands."""
    import tifffile

    from csrefiner.wsi.reader import open_slide

    out = tifffile.memmap(work / "binary.tif", shape=shape, dtype=np.uint8)
    with open_slide(work / "labels.ome.tif") as labels:
        for y in range(0, shape[0], 1024):
            out[y : y + 1024] = labels.read(y, 0, min(1024, shape[0] - y), shape[1]) > 0
    out.flush()
    del out
    return {}


STAGES = {
    "generate": stage_generate,
    "oracle": stage_oracle,
    "verify": stage_verify,
    "check-cgef": stage_check_cgef,
    "check-sopa": stage_check_sopa,
    "binary": stage_binary,
}


# ---------------------------------------------------------------- driver


def _disk(folder: Path) -> int:
    """Allocated bytes under `folder` (sparse files count what they hold)."""
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass  # removed while walking
    return total


def measure(cmd: list, log: Path, env: dict, watch: Path | None = None, cap: float | None = None) -> dict:
    """wall s, CPU s, peak RSS MB of one child process; peak disk MB of `watch` while it runs."""
    stats = log.with_suffix(".rusage")
    stats.unlink(missing_ok=True)
    base = _disk(watch) if watch else 0
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(stats), *map(str, cmd)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=log.parent,
        )  # not the repo: `python -m` would import the checkout in cwd
        peak, t0, timed_out = base, time.perf_counter(), False
        while proc.poll() is None:
            if watch:
                peak = max(peak, _disk(watch))
            if cap and time.perf_counter() - t0 > cap:
                os.killpg(proc.pid, 15)  # the launcher's own session: only our processes
                timed_out = True
                proc.wait()
                break
            time.sleep(0.25)
    row = {"rc": proc.returncode, "timed_out": timed_out, "disk_peak_mb": (peak - base) / 2**20 if watch else None}
    if stats.exists():
        wall, rss_kb, cpu = stats.read_text().split()
        row.update(wall_s=float(wall), cpu_s=float(cpu), rss_mb=float(rss_kb) / 1024)
    else:
        row.update(wall_s=time.perf_counter() - t0, cpu_s=None, rss_mb=None)
    return row


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


OUTPUTS = ("tiles", "masks", "gef", "out", "binary.tif", "gefpy", "sopa", "labels.ome.tif")


def run_size(args, shape, rpp: float, env: dict, own: dict) -> dict:
    """All stages at one size; `env` runs the measured csrefiner commands, `own` this script's helper stages."""
    h, w = shape
    work = (args.workdir / f"{h}x{w}-rpp{rpp}").resolve()
    generated = work / "generate.json"
    reuse = args.reuse and generated.exists()
    if reuse:  # same inputs as a --keep run: only the stages' outputs are removed
        for p in OUTPUTS:
            target = work / p
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    me = [sys.executable, __file__, "--workdir", str(work), "--shape", f"{h}x{w}", "--records-per-pixel", str(rpp)]
    cli = [sys.executable, "-m", "csrefiner"]
    result = {"shape": [h, w], "records_per_pixel": rpp, "tile_size": args.tile_size, "overlap": args.overlap}

    def step(name, cmd, watch=None, cap=None, check=True):
        row = measure(cmd, work / f"{name}.log", own if cmd[:2] == me[:2] else env, watch, cap)
        text = (work / f"{name}.log").read_text().strip().splitlines()
        try:
            row["info"] = json.loads(text[-1]) if text else {}
        except json.JSONDecodeError:
            row["info"] = {}
        result[name] = row
        print(
            f"  {name:<14} rc {row['rc']} wall {row['wall_s']:.1f} s cpu {row['cpu_s'] or float('nan'):.1f} s "
            f"rss {row['rss_mb'] or float('nan'):.0f} MB disk {row['disk_peak_mb'] or 0:.0f} MB {row['info']}",
            flush=True,
        )
        if check and row["rc"] != 0:
            raise SystemExit(f"{name} failed: see {work / (name + '.log')}")
        return row

    if reuse:
        result["generate"] = json.loads(generated.read_text())
        print(f"  reusing the generated slide, truth and GEM in {work}")
    else:
        step("generate", me + ["--stage", "generate"])
        generated.write_text(json.dumps(result["generate"]))
    result["cells"], result["records"] = result["generate"]["info"]["cells"], result["generate"]["info"]["records"]
    stages = args.stages
    if "tile" in stages or "stitch" in stages:
        step(
            "tile",
            cli
            + [
                "tile",
                "--image",
                work / "slide.tif",
                "--out",
                work / "tiles",
                "--tile-size",
                args.tile_size,
                "--overlap",
                args.overlap,
            ],
            watch=work,
        )
    if "stitch" in stages:
        step("oracle", me + ["--stage", "oracle"])
        (work / "out").mkdir()
        step(
            "stitch",
            cli
            + [
                "stitch",
                "--manifest",
                work / "tiles" / "manifest.json",
                "--tiles",
                work / "masks",
                "--out",
                work / "out" / "labels.ome.tif",
            ],
            watch=work / "out",
        )
        os.replace(work / "out" / "labels.ome.tif", work / "labels.ome.tif")
        step("verify", me + ["--stage", "verify"])
    if "cgef" in stages:
        if not (work / "labels.ome.tif").exists():
            raise SystemExit("--stages cgef needs stitch (the stitched mask)")
        (work / "gef").mkdir()
        step(
            "cgef",
            cli
            + [
                "cgef",
                "--matrix",
                work / "chip.gem",
                "--mask",
                work / "labels.ome.tif",
                "--out",
                work / "gef" / "chip.cellbin.gef",
            ],
            watch=work / "gef",
            check=False,
        )
        if result["cgef"]["rc"] == 0:
            step("check-cgef", me + ["--stage", "check-cgef", "--gef", "gef/chip.cellbin.gef"])
    if "cgef" in stages and not args.no_gefpy:
        run_gefpy(args, work, me, step, result)
    if "cgef" in stages and args.sopa_python:
        run_sopa(args, work, me, step, result)
    else:
        result["sopa"] = "not run: pass --sopa-python with a Python that has sopa"
    if not args.keep:
        for p in OUTPUTS + ("slide.tif", "truth.tif", "chip.gem", "generate.json"):
            target = work / p
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    return result


def run_gefpy(args, work: Path, me: list, step, result: dict) -> None:
    """gefpy 1.3.3: generate_bgef (GEM -> bin1 GEF) then generate_cgef with the binary mask, each under the cap."""
    from csrefiner.stereo.gefpy_env import gefpy_python

    python, why = gefpy_python(Path(os.environ.get("CSREFINER_GEFPY_VENV", REPO / ".venv-gefpy")))
    if python is None:
        result["gefpy"] = {"skipped": why}
        print(f"  gefpy not run: {why}")
        return
    step("binary", me + ["--stage", "binary"])
    (work / "gefpy").mkdir()
    bgef = (
        "from gefpy.bgef_writer_cy import generate_bgef; import sys; "
        "generate_bgef(sys.argv[1], sys.argv[2], n_thread=2, bin_sizes=[1])"
    )
    cgef = (
        "from gefpy.cgef_writer_cy import generate_cgef; import sys; "
        "generate_cgef(sys.argv[1], sys.argv[2], sys.argv[3], [256, 256])"
    )
    b = step(
        "gefpy-bgef",
        [python, "-c", bgef, work / "chip.gem", work / "gefpy" / "chip.bgef"],
        watch=work / "gefpy",
        cap=args.gefpy_cap,
        check=False,
    )
    if b["rc"] != 0 or b["timed_out"]:
        return
    step(
        "gefpy-cgef",
        [python, "-c", cgef, work / "gefpy" / "chip.cgef", work / "gefpy" / "chip.bgef", work / "binary.tif"],
        watch=work / "gefpy",
        cap=args.gefpy_cap,
        check=False,
    )


def run_sopa(args, work: Path, me: list, step, result: dict) -> None:
    """sopa's aggregate in its own venv under the cap; when stopped, the last phase it finished is in its info."""
    (work / "sopa").mkdir()
    script = Path(__file__).with_name("chip_scale_sopa.py")
    cmd = [args.sopa_python, script, work / "labels.ome.tif", work / "chip.gem", work / "sopa" / "counts.npz"]
    row = step("sopa", cmd, cap=args.sopa_cap, check=False)
    if row["timed_out"]:
        row["note"] = f"stopped after {args.sopa_cap:.0f} s"
    elif row["rc"] == 0:
        step("check-sopa", me + ["--stage", "check-sopa"])


def table(results: list[dict]) -> str:
    lines = [
        "| size (px) | cells | records | stage | wall s | CPU s | peak RSS MB | peak disk MB | exact |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        size = f"{r['shape'][0]:,} x {r['shape'][1]:,} @ {r['records_per_pixel']} rec/px"
        for name, exact_of in (
            ("tile", None),
            ("stitch", "verify"),
            ("cgef", "check-cgef"),
            ("gefpy-bgef", None),
            ("gefpy-cgef", None),
            ("sopa", "check-sopa"),
        ):
            row = r.get(name)
            if not isinstance(row, dict):  # absent, or a "not run" note
                continue
            exact = r.get(exact_of, {}).get("info", {}).get("exact", "") if exact_of else ""
            state = "timed out" if row["timed_out"] else (f"rc {row['rc']}" if row["rc"] else "")
            fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
            lines.append(
                f"| {size} | {r['cells']:,} | {r['records']:,} | {name} {state} | {fmt(row['wall_s'], '.1f')} | "
                f"{fmt(row['cpu_s'], '.1f')} | {fmt(row['rss_mb'], '.0f')} | "
                f"{fmt(row['disk_peak_mb'], '.0f')} | {exact} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="8192,16384", help="comma-separated N or HxW")
    parser.add_argument("--records-per-pixel", default="0.15", help="comma-separated, e.g. 0.15,1.0")
    parser.add_argument("--stages", default="tile,stitch,cgef", help="subset of tile,stitch,cgef")
    parser.add_argument("--tile-size", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=REPO / "results" / "chip_scale")
    parser.add_argument("--code", type=Path, default=REPO, help="csrefiner checkout the measured stages import")
    parser.add_argument("--gefpy-cap", type=float, default=900.0, help="seconds per gefpy step before it is stopped")
    parser.add_argument("--no-gefpy", action="store_true")
    parser.add_argument("--sopa-python", default=None, help="a Python with sopa: runs chip_scale_sopa.py")
    parser.add_argument("--sopa-cap", type=float, default=900.0, help="seconds before sopa's step is stopped")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--reuse", action="store_true", help="reuse the generated files a --keep run left")
    parser.add_argument("--stage", choices=sorted(STAGES))  # child process
    parser.add_argument("--shape", default=None)
    parser.add_argument("--gef", default=None)
    args = parser.parse_args()

    if args.stage:
        work, shape = args.workdir, parse_size(args.shape)
        call = {
            "generate": lambda: stage_generate(work, shape, float(args.records_per_pixel)),
            "oracle": lambda: stage_oracle(work),
            "verify": lambda: stage_verify(work, shape),
            "check-cgef": lambda: stage_check_cgef(work, args.gef),
            "check-sopa": lambda: stage_check_sopa(work),
            "binary": lambda: stage_binary(work, shape),
        }
        print(json.dumps(call[args.stage]()))
        return

    args.stages = set(args.stages.split(","))
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve()), "CSREFINER_QUIET": "1"}
    own = {**env, "PYTHONPATH": str(REPO)}
    results = []
    args.workdir.mkdir(parents=True, exist_ok=True)
    for rpp in [float(v) for v in args.records_per_pixel.split(",")]:
        for text in args.sizes.split(","):
            shape = parse_size(text)
            print(f"{shape[0]} x {shape[1]} px, {rpp} records/px ({os.cpu_count()} CPUs, code {args.code})", flush=True)
            results.append(run_size(args, shape, rpp, env, own))
            (args.workdir / "chip_scale.json").write_text(json.dumps(results, indent=1) + "\n")
    print()
    print(table(results))
    for r in results:
        check = r.get("check-sopa", {}).get("info") or r.get("sopa")
        print(f"sopa at {r['shape'][0]} x {r['shape'][1]}: {check}")


if __name__ == "__main__":
    main()
