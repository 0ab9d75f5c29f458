"""`csrefiner cgef`: join the chip's expression matrix (GEM or bin1 GEF) with the whole-slide instance mask
into a cell-bin GEF (and optionally AnnData)."""

from __future__ import annotations

from pathlib import Path

import typer


def cgef(
    matrix: Path = typer.Option(..., "--matrix", help="Expression matrix: CHIP.gem.gz, CHIP.gem or bin1 CHIP.gef."),
    mask: Path = typer.Option(..., "--mask", help="Instance label mask (uint32 TIFF), one pixel per DNB."),
    out: Path = typer.Option(..., "--out", help="Cell-bin GEF to write (CHIP.cellbin.gef)."),
    h5ad: Path | None = typer.Option(None, "--h5ad", help="Also write the matrix as AnnData (.h5ad)."),
    block_size: int = typer.Option(
        256, "--block-size", min=1, max=100_000, help="Block side in pixels for the GEF index."
    ),
    chunk_rows: int = typer.Option(
        500_000, "--chunk-rows", min=1, max=100_000_000, help="Records read per chunk (memory bound)."
    ),
    pixel_size: float | None = typer.Option(
        None,
        "--pixel-size",
        help="Micrometres per mask pixel (default: the mask's OME PhysicalSize, else the chip's DNB pitch, 0.5 um).",
    ),
    lowres_image: Path | None = typer.Option(
        None, "--lowres-image", help="PNG overview of the mask (stitch --preview): the .h5ad's scanpy low-res image."
    ),
    force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
) -> None:
    """Sum every DNB's counts into the cell under it: exact counts, every mask label a cell (touching cells
    stay apart), area and border from the mask; GEF layout as gefpy 1.3.3 writes it, plus /cellBin/label."""
    from csrefiner.io import check_outputs
    from csrefiner.stereo.run import cgef as run_cgef
    from csrefiner.stereo.run import summary

    check_outputs([matrix, mask, lowres_image], [out, h5ad])
    m = run_cgef(
        matrix,
        mask,
        out,
        h5ad=h5ad,
        block_size=block_size,
        force=force,
        chunk_rows=chunk_rows,
        pixel_size_um=pixel_size,
        lowres_image=lowres_image,
    )
    for line in summary(m):
        typer.echo(line)
    typer.echo(f"wrote {out}" + (f" and {h5ad}" if h5ad else ""))


def register(app: typer.Typer) -> None:
    app.command("cgef")(cgef)
