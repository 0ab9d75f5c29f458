"""`csrefiner segment`: segment patches or whole-slide tiles with a pretrained or fine-tuned model."""

from __future__ import annotations

from pathlib import Path

import typer

from csrefiner.cli.train_options import Device, Stain


def segment(
    input: Path = typer.Option(
        ..., "--input", help="An image, or a folder of images / tiles (-mask files are skipped)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for <key>-mask.tif (uint32) and segment.json."),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="A model folder written by `csrefiner finetune`."),
    model: str | None = typer.Option(
        None, "--model", help="A pretrained model: BACKEND:NAME (e.g. cellpose:cyto3) or BACKEND:PATH."
    ),
    tile_manifest: Path | None = typer.Option(
        None, "--tile-manifest", help="Check that every input is a tile of this manifest."
    ),
    stain: Stain = typer.Option(
        "ss", "--stain", help="For pretrained models: ss or he (a model folder knows its own)."
    ),
    device: Device = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    option: list[str] | None = typer.Option(None, "--option", help="Backend-specific KEY=VALUE, e.g. diameter=17."),
    tile_size: int = typer.Option(
        4096,
        "--tile-size",
        min=0,
        help="Images larger than this on a side are segmented tile by tile and stitched (0: never).",
    ),
    overlap: int = typer.Option(128, "--overlap", min=0, help="Tile overlap for such images: >= 2x cell diameter."),
    pixel_size: float | None = typer.Option(
        None,
        "--pixel-size",
        help="Micrometres per pixel written into the masks (default: each image's own, from its TIFF/OME metadata).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Write one uint32 instance mask per input image, named so `evaluate` and `stitch` pair it."""
    from csrefiner.cli.train_options import parse_options
    from csrefiner.io import check_outputs
    from csrefiner.models.base import TrainParams
    from csrefiner.models.segment import segment as run

    check_outputs([input, model_dir, tile_manifest, model and model.partition(":")[2]], [out])  # BACKEND:PATH
    params = TrainParams(stain=stain, device=device, options=parse_options(option))
    info = run(model_dir, model, input, out, params, tile_manifest, force, tile_size, overlap, pixel_size)
    typer.echo(
        f"{info['backend']}: segmented {info['images']} image(s), {sum(info['objects'].values())} objects, "
        f"{info['seconds']} s; wrote {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)
