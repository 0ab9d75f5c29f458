"""`csrefiner synth`: generated nuclei images with exact ground truth (test data that needs no download)."""

from __future__ import annotations

from pathlib import Path

import typer

STYLES = ("easy", "hard")


def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    n: int = typer.Option(4, "--n", min=1, max=10_000, help="Number of images."),
    size: int = typer.Option(256, "--size", min=32, max=8192, help="Image side, pixels."),
    style: str = typer.Option("easy", "--style", help="easy (sparse, sharp) or hard (dense, touching, blurred)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; image i uses seed + i."),
    name: str = typer.Option("synth", "--name", help="Slide name used in the file names."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Write N generated images as <name>-x0_y<i*size>_w<size>_h<size>-img.tif / -mask.tif pairs."""
    from csrefiner.errors import CsrefinerError
    from csrefiner.io import atomic_dir, patch_name, safe_name, write_image, write_labels
    from csrefiner.synth import EASY, HARD, nuclei_image

    if style not in STYLES:
        raise CsrefinerError(f"--style {style!r}: choose one of {', '.join(STYLES)}")
    safe_name(name, "--name")
    with atomic_dir(out, force=force) as tmp:
        for i in range(n):
            img, labels = nuclei_image((size, size), EASY if style == "easy" else HARD, seed + i)
            key = patch_name(name, 0, i * size, size, size)
            write_image(tmp / f"{key}-img.tif", img)
            write_labels(tmp / f"{key}-mask.tif", labels)
    typer.echo(f"wrote {n} image/mask pairs to {out}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
