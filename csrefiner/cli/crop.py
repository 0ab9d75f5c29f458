"""`csrefiner crop`: fixed-size patches (and masks) for annotation and training, edge remainders kept."""

from __future__ import annotations

from pathlib import Path

import typer


def crop(
    image: Path = typer.Option(..., "--image", help="Slide or image to cut (TIFF read lazily, PNG/JPEG)."),
    out: Path = typer.Option(..., "--out", help="Output folder for <slide>-x.._y.._w.._h..-img.tif (+ -mask.tif)."),
    mask: Path | None = typer.Option(None, "--mask", help="Instance label mask of the image (same size)."),
    size: int = typer.Option(256, "--size", min=1, help="Patch side in pixels."),
    stride: int | None = typer.Option(None, "--stride", min=1, help="Step between patches (default: --size)."),
    pad: str = typer.Option(
        "reflect", "--pad", help="Padding of edge patches' images: reflect or constant (0). Masks: always 0."
    ),
    name: str | None = typer.Option(None, "--name", help="Slide name in patch names (default: file name)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Cut patches; edge patches are padded and named by their valid extent (also listed in crops.json)."""
    from csrefiner.io import check_outputs
    from csrefiner.wsi.crop import crop_slide

    check_outputs([image, mask], [out])
    records = crop_slide(image, out, size, mask, stride, pad, name, force)
    padded = sum(r["w"] < size or r["h"] < size for r in records)
    typer.echo(f"wrote {len(records)} patches ({padded} padded at the edge) to {out}")


def register(app: typer.Typer) -> None:
    app.command("crop")(crop)
