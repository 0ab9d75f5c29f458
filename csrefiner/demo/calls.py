"""The library functions behind the csrefiner commands the demo's steps run, called in-process with the options
of data/demo.json (the same text the pipeline's tasks pass on their command line).

Each option string is read into keyword arguments (`--tile-size 256` -> tile_size=256) that must all be
parameters of the call: an option added to demo.json that the runner would ignore fails here instead.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from csrefiner.errors import CsrefinerError

DEVICE = "cpu"  # the demo is sized for a CPU (the pipeline: params.segment_args, the finetune module's default)


def _typed(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse(options: str) -> dict:
    """`--name value` pairs -> {name: value} (numbers converted); a repeated `--option` collects a list."""
    words = shlex.split(options)
    if len(words) % 2 or not all(w.startswith("--") for w in words[::2]):
        raise CsrefinerError(f"demo options {options!r}: expected `--name value` pairs")
    out: dict = {}
    for flag, value in zip(words[::2], words[1::2]):
        key = flag[2:].replace("-", "_")
        if key == "option":
            out.setdefault(key, []).append(value)
        elif key in out:
            raise CsrefinerError(f"demo options {options!r}: {flag} given twice")
        else:
            out[key] = _typed(value)
    return out


def finetune(model: str, train: Path, out: Path, pretrained: str, options: str, val: Path | None = None) -> dict:
    """`csrefiner finetune` (its options: TrainParams fields, --val-fraction and --option KEY=VALUE)."""
    from csrefiner.cli.train_options import parse_options
    from csrefiner.models.base import TrainParams
    from csrefiner.models.finetune import finetune as run

    kw = parse(options)
    knobs = parse_options(kw.pop("option", []))
    val_fraction = kw.pop("val_fraction", 0.1)  # the command's default
    params = TrainParams(**kw, device=DEVICE, options=knobs)
    return run(model, train, out, str(pretrained), params, val, val_fraction)


def segment(model_dir: Path | None, model: str | None, images: Path, out: Path) -> dict:
    """`csrefiner segment --model-dir DIR` or `--model BACKEND:NAME`, with the command's defaults."""
    from csrefiner.models.base import TrainParams
    from csrefiner.models.segment import segment as run

    return run(model_dir, model, images, out, TrainParams(device=DEVICE))


def tile(image: Path, out: Path, options: str):
    from csrefiner.wsi.tile import tile_slide

    return tile_slide(image, out, **parse(options))


def suggest(preds: list[Path], images: Path, top: int, out: Path, options: str):
    """`csrefiner suggest`: each opinion named after its folder, as the command names them."""
    from csrefiner.hitl.suggest import suggest_folders

    return suggest_folders(preds, images, out, [Path(p).name for p in preds], top, **parse(options))


def evaluate(gt: Path, preds: list[Path], out: Path, options: str) -> dict:
    """`csrefiner evaluate`: each method named after its folder."""
    return _evaluate(gt, preds, out, **parse(options))


def _evaluate(gt: Path, preds: list[Path], out: Path, iou: float = 0.5) -> dict:
    from csrefiner.metrics.report import evaluate_methods

    return evaluate_methods(gt, [(Path(p).name, p) for p in preds], out, iou)


def stitch(manifest: Path, tiles: Path, out: Path, report: Path, preview: Path):
    """`csrefiner stitch --report --preview`."""
    from csrefiner.wsi.manifest import Manifest
    from csrefiner.wsi.preview import write_preview
    from csrefiner.wsi.stitch import stitch_tiles, write_stitch_report

    counts = stitch_tiles(manifest, tiles, out)
    write_preview(out, Manifest.load(manifest), preview)
    write_stitch_report(counts, report)
    return counts


def cgef(matrix: Path, mask: Path, out: Path, h5ad: Path):
    from csrefiner.stereo.run import cgef as run

    return run(matrix, mask, out, h5ad=h5ad)
