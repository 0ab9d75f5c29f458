"""Seconds per 256x256 patch and per 2048x2048 tile for each backend, through csrefiner and through the
library's own call on the same network in the same run (the wrapper must add nothing that matters).

Each backend first trains a short model from scratch on generated nuclei (`csrefiner finetune`, real code path)
so that the timed predictions find real objects (post-processing time depends on them), then predicts.

    .venv/bin/python benchmarks/segment_speed.py [--backends cellpose,stardist] [--epochs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import patch_name, write_image, write_labels
from csrefiner.models import backend_names, get_backend
from csrefiner.models.base import Pretrained, TrainParams
from csrefiner.models.finetune import finetune
from csrefiner.synth import EASY, nuclei_image


def library_call(segmenter):
    """The library's own prediction on the same loaded network, where the backend exposes it."""
    if hasattr(segmenter, "model") and hasattr(segmenter.model, "eval") and hasattr(segmenter, "config"):
        cfg = segmenter.config  # cellpose: CellposeModel.eval on the grey image

        def call(img):
            return segmenter.model.eval(
                img.astype(np.float32),
                channels=[0, 0],
                normalize=True,
                flow_threshold=cfg["flow_threshold"],
                cellprob_threshold=cfg["cellprob_threshold"],
            )[0]

        return call
    if hasattr(segmenter, "model") and hasattr(segmenter.model, "predict_instances"):
        from csbdeep.utils import normalize

        def call(img):  # stardist: predict_instances on the percentile-normalised image
            return segmenter.model.predict_instances(
                normalize(img, 1, 99.8), n_tiles=segmenter.model._guess_n_tiles(img)
            )[0]

        return call
    return None


def timed(fn, img, repeats: int) -> float:
    fn(img)  # warm-up (graph building, allocations)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(img)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def train_quick(name: str, root: Path, epochs: int) -> Path:
    data = root / "train"
    if not data.exists():
        data.mkdir()
        for i in range(8):
            img, lbl = nuclei_image((256, 256), EASY, i)
            key = patch_name("b", 0, 256 * i, 256, 256)
            write_image(data / f"{key}-img.tif", img)
            write_labels(data / f"{key}-mask.tif", lbl)
    out = root / name
    finetune(
        name,
        data,
        out,
        "scratch",
        TrainParams(epochs=epochs, batch_size=4, device="cpu", eval_every=epochs),
        val_fraction=0.25,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="cellpose,stardist")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    patch, _ = nuclei_image((256, 256), EASY, 1000)
    tile, _ = nuclei_image((2048, 2048), EASY, 1001)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [b for b in args.backends.split(",") if b in backend_names()]:
            try:
                get_backend(name).check_installed()
            except CsrefinerError as exc:
                print(f"skip {name}: {exc}")
                continue
            folder = train_quick(name, Path(tmp), args.epochs)
            seg = get_backend(name).load(Pretrained(name, folder, folder=True), TrainParams(device="cpu"))
            n_obj = int(seg.predict(tile).max())
            ref = library_call(seg)
            row = [name, timed(seg.predict, patch, args.repeats), timed(seg.predict, tile, 1)]
            row += [timed(ref, patch, args.repeats), timed(ref, tile, 1)] if ref else [float("nan")] * 2
            rows.append(row + [n_obj])
    print(
        "\n| backend | csrefiner s / 256^2 | csrefiner s / 2048^2 | library s / 256^2 | library s / 2048^2 "
        "| objects in the tile |"
    )
    print("|---|---|---|---|---|---|")
    for name, a, b, c, d, n in rows:
        print(f"| {name} | {a:.3f} | {b:.1f} | {c:.3f} | {d:.1f} | {n:,} |")


if __name__ == "__main__":
    main()
