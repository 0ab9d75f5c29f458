"""Whole-slide tiling and stitching at scale: wall time and peak RSS of `csrefiner tile` and `csrefiner stitch`
on a generated 16k x 16k slide with ~300k nuclei, and StarDist's `predict_instances_big` stitching on the same
slide with the same perfect per-block predictions.

Every stage runs in its own process; peak RSS is that process's ru_maxrss (os.wait4), so stages do not mask
each other. The per-tile masks are the ground truth cut to each tile (an oracle standing in for `segment`),
which makes exactness checkable: both stitched results are compared with the ground truth, streamed in bands.

    nice .venv/bin/python benchmarks/stitch_wholeslide.py [--size 16384] [--tile-size 2048] [--overlap 128]
        [--workdir results/bench_stitch] [--no-stardist]

The slide is generated in 1024-row strips (per-strip seeds and label offsets; nuclei on a strip border are
cut there) and written as tiled TIFFs without ever holding the slide.
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
STRIP = 1024
STARDIST_CONTEXT = 32  # blocks then overlap by min_overlap + 2 * context = our overlap


# ---------------------------------------------------------------- stages (each runs in a child process)


def stage_generate(work: Path, size: int) -> dict:
    from csrefiner.synth import EASY, nuclei_labels, render
    from csrefiner.wsi.writer import write_pyramid

    strips = list(range(0, size, STRIP))
    count = {"cells": 0}

    def label_bands(step):
        first = 1
        for i, y in enumerate(strips):
            labels, shading = nuclei_labels((min(STRIP, size - y), size), EASY, seed=1000 + i, first_label=first)
            np.save(work / f"strip{i}.npy", render(shading, EASY, seed=1000 + i))
            first = max(first, int(labels.max()) + 1)
            count["cells"] = first - 1  # counted here: the writer stops pulling after the last tile
            yield labels

    write_pyramid(work / "truth.tif", (size, size), np.uint32, label_bands, steps=[1], level=1)
    image_bands = lambda step: (np.load(work / f"strip{i}.npy") for i in range(len(strips)))  # noqa: E731
    write_pyramid(work / "slide.tif", (size, size), np.uint8, image_bands, steps=[1])
    for i in range(len(strips)):
        (work / f"strip{i}.npy").unlink()
    return count


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


class _Oracle:
    """Just enough of a StarDist2D for its own `predict_instances_big`: 'predicting' a block returns the ground
    truth under it, relabelled 1..n with one polygon record per object, as `predict_instances` would."""

    _axes_out = "YXC"

    def _axes_div_by(self, axes):
        return tuple(1 for _ in axes)

    def _axes_tile_overlap(self, axes):
        return tuple(STARDIST_CONTEXT for _ in axes)

    def predict_instances(self, block, **kwargs):
        from scipy import ndimage as ndi

        values, inverse = np.unique(block, return_inverse=True)
        labels = inverse.reshape(block.shape).astype(np.int32)
        if values[0] != 0:
            labels += 1
        n = int(labels.max())
        points = np.array(ndi.center_of_mass(labels > 0, labels, np.arange(1, n + 1))).reshape(n, 2)
        polys = {
            "prob": np.ones(n, np.float32),
            "points": points.round().astype(int),
            "coord": np.repeat(points[:, :, None], 32, axis=2),
        }
        return labels, polys


def stage_stardist(work: Path, size: int, tile_size: int, overlap: int) -> dict:
    import tifffile
    import zarr
    from stardist.models.base import StarDistBase

    _Oracle.predict_instances_big = StarDistBase.predict_instances_big
    with tifffile.TiffFile(work / "truth.tif") as tif:
        truth = zarr.open(tif.series[0].aszarr(), mode="r")
        out = np.memmap(work / "stardist_labels.raw", dtype=np.int32, mode="w+", shape=(size, size))
        _, polys = _Oracle().predict_instances_big(
            truth,
            axes="YX",
            block_size=tile_size,
            min_overlap=overlap - 2 * STARDIST_CONTEXT,
            context=STARDIST_CONTEXT,
            labels_out=out,
            show_progress=False,
        )
        out.flush()
    return {"objects": len(polys["prob"])}


def stage_stardist_import(work: Path) -> dict:
    from stardist.models.base import StarDistBase  # noqa: F401  (TensorFlow comes with it)

    return {}


def _bands_of(path: Path, size: int):
    if path.suffix == ".raw":
        for y in range(0, size, STRIP):
            mapped = np.memmap(path, dtype=np.int32, mode="r", offset=y * size * 4, shape=(min(STRIP, size - y), size))
            yield np.array(mapped).astype(np.uint32)
            del mapped
        return
    from csrefiner.wsi.reader import open_slide

    with open_slide(path) as slide:
        for y in range(0, size, STRIP):
            yield slide.read(y, 0, min(STRIP, size - y), size).astype(np.uint32)


def stage_verify(work: Path, size: int, result: str) -> dict:
    """Compare a stitched result with the ground truth, band by band: split, merged and missing cells."""
    pairs = []
    for truth, got in zip(_bands_of(work / "truth.tif", size), _bands_of(work / result, size)):
        pairs.append(np.unique(truth.astype(np.uint64) << np.uint64(32) | got))
    pairs = np.unique(np.concatenate(pairs))
    t, r = (pairs >> np.uint64(32)).astype(np.int64), (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    fg = (t > 0) & (r > 0)
    return {
        "truth_cells": int(np.unique(t[t > 0]).size),
        "result_cells": int(np.unique(r[r > 0]).size),
        "split": int(np.count_nonzero(np.bincount(t[fg]) > 1)),  # a true cell under several labels
        "merged": int(np.count_nonzero(np.bincount(r[fg]) > 1)),  # a label over several true cells
        "lost_pixels_of": int(np.unique(t[(t > 0) & (r == 0)]).size),
        "exact": bool(len(np.unique(t)) == len(t) and len(np.unique(r)) == len(r) and ((t == 0) == (r == 0)).all()),
    }


STAGES = {
    "generate": stage_generate,
    "oracle": stage_oracle,
    "stardist": stage_stardist,
    "stardist-import": stage_stardist_import,
    "verify": stage_verify,
}


# ---------------------------------------------------------------- driver


def run(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the child alone, stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "CSREFINER_QUIET": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    return wall, usage.ru_maxrss / 1024, stdout


def stage_cmd(name: str, args, *extra) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--stage",
        name,
        "--workdir",
        str(args.workdir),
        "--size",
        str(args.size),
        "--tile-size",
        str(args.tile_size),
        "--overlap",
        str(args.overlap),
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--tile-size", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=REPO / "results" / "bench_stitch")
    parser.add_argument("--no-stardist", action="store_true")
    parser.add_argument("--stage", choices=sorted(STAGES))
    parser.add_argument("--result", default="labels.ome.tif")
    args = parser.parse_args()
    work = args.workdir.resolve()

    if args.stage:  # child process
        kwargs = {
            "generate": (args.size,),
            "stardist": (args.size, args.tile_size, args.overlap),
            "verify": (args.size, args.result),
        }.get(args.stage, ())
        print(json.dumps(STAGES[args.stage](work, *kwargs)))
        return

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cli = [sys.executable, "-m", "csrefiner"]
    steps = [
        ("generate slide + truth", stage_cmd("generate", args), ""),
        (
            "csrefiner tile",
            cli
            + [
                "tile",
                "--image",
                str(work / "slide.tif"),
                "--out",
                str(work / "tiles"),
                "--tile-size",
                str(args.tile_size),
                "--overlap",
                str(args.overlap),
            ],
            "measured",
        ),
        ("oracle tile masks", stage_cmd("oracle", args), "stands in for segment"),
        (
            "csrefiner stitch",
            cli
            + [
                "stitch",
                "--manifest",
                str(work / "tiles" / "manifest.json"),
                "--tiles",
                str(work / "masks"),
                "--out",
                str(work / "labels.ome.tif"),
            ],
            "measured",
        ),
        ("verify csrefiner", stage_cmd("verify", args, "--result", "labels.ome.tif"), ""),
    ]
    if not args.no_stardist:
        steps += [
            ("stardist import only", stage_cmd("stardist-import", args), "baseline RSS of TensorFlow"),
            ("stardist predict_instances_big", stage_cmd("stardist", args), "oracle blocks, memmap out"),
            ("verify stardist", stage_cmd("verify", args, "--result", "stardist_labels.raw"), ""),
        ]
    rows = []
    for name, cmd, note in steps:
        wall, rss, stdout = run(cmd, REPO)
        info = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        rows.append((name, wall, rss, note, info))
        print(f"{name:<32} {wall:8.1f} s {rss:8.0f} MiB  {info}", flush=True)

    print(
        f"\nslide {args.size} x {args.size}, tiles {args.tile_size} px, overlap {args.overlap} px, "
        f"{os.cpu_count()} CPUs"
    )
    print("| stage | wall s | peak RSS MiB | note |\n|---|---|---|---|")
    for name, wall, rss, note, info in rows:
        print(f"| {name} | {wall:.1f} | {rss:.0f} | {note} {info} |")
    sizes = {p: sum(f.stat().st_size for f in (work / p).rglob("*") if f.is_file()) / 2**20 for p in ("tiles", "masks")}
    print(
        f"tiles {sizes['tiles']:.0f} MiB, masks {sizes['masks']:.0f} MiB, "
        f"labels.ome.tif {(work / 'labels.ome.tif').stat().st_size / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
