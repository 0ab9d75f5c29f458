"""`csrefiner tile`: cut a whole slide into overlapping tiles plus the manifest that `stitch` needs."""

from __future__ import annotations

from pathlib import Path

import typer


def tile(
    image: Path = typer.Option(..., "--image", help="Slide: tiled TIFF / OME-TIFF (read lazily), or PNG/JPEG."),
    out: Path = typer.Option(..., "--out", help="Output folder for <slide>-x.._y.._w.._h..-img.tif and manifest.json."),
    tile_size: int = typer.Option(2048, "--tile-size", min=64, help="Tile side in pixels (edge tiles are smaller)."),
    overlap: int = typer.Option(
        128,
        "--overlap",
        min=0,
        help="Pixels shared by neighbouring tiles: >= 2x cell diameter (0 cuts cells at seams).",
    ),
    name: str | None = typer.Option(None, "--name", help="Slide name in tile names (default: file name)."),
    pixel_size: float | None = typer.Option(
        None,
        "--pixel-size",
        help="Micrometres per pixel (default: the slide's OME PhysicalSize or TIFF resolution tags).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Write overlapping tiles of SLIDE and manifest.json (slide shape, tile grid, overlap)."""
    from csrefiner.io import check_outputs
    from csrefiner.wsi.tile import tile_slide

    check_outputs([image], [out])
    manifest = tile_slide(image, out, tile_size, overlap, name, force, pixel_size)
    rows, cols = manifest.tiles[-1].row + 1, manifest.tiles[-1].col + 1
    typer.echo(
        f"wrote {rows * cols} tiles ({rows} x {cols}) of {manifest.shape[0]} x {manifest.shape[1]} "
        f"slide '{manifest.slide}' and manifest.json to {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("tile")(tile)
