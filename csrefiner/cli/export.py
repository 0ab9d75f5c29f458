"""`csrefiner export`: the stitched mask (plus slide and cell-bin matrix) for other tools: QuPath GeoJSON of
the whole slide, and a SpatialData zarr store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer


def _pair(text: str | None, option: str) -> tuple[int, int] | None:
    from csrefiner.errors import CsrefinerError

    if text is None:
        return None
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise CsrefinerError(f"{option} {text!r}: give two integers X,Y, e.g. 5000,7000") from None
    return x, y


def export(
    mask: Path = typer.Option(..., "--mask", help="Stitched uint32 label image (OME-TIFF from `csrefiner stitch`)."),
    geojson: Path | None = typer.Option(
        None,
        "--geojson",
        help="Write every cell as a QuPath GeoJSON feature (pixel-edge convention), traced band by band.",
    ),
    zarr_out: Path | None = typer.Option(
        None, "--zarr", help="Write a SpatialData zarr store (needs the spatialdata extra: `make venv-clients`)."
    ),
    image: Path | None = typer.Option(
        None, "--image", help="The slide the mask was segmented from (tiled TIFF), for the zarr store's image."
    ),
    table: Path | None = typer.Option(
        None,
        "--table",
        help="Cell-bin matrix for the zarr store's table: the .h5ad or .cellbin.gef of `csrefiner cgef`.",
    ),
    origin: str | None = typer.Option(
        None,
        "--origin",
        help="X,Y added to GeoJSON vertices: where the mask's "
        "pixel (0, 0) lies on the slide QuPath opens (default 0,0).",
    ),
    offset: str | None = typer.Option(
        None,
        "--offset",
        help="X,Y chip offset for the zarr's 'chip' frame "
        "(default: the table's, from #OffsetX/#OffsetY or GEF minX/minY).",
    ),
    pixel_size: float | None = typer.Option(
        None, "--pixel-size", help="Micrometres per pixel (default: the mask's, the slide's, then the table's)."
    ),
    object_type: Literal["detection", "annotation"] = typer.Option(
        "detection", "--object-type", help="QuPath object type: detection or annotation."
    ),
    force: bool = typer.Option(False, "--force", help="Replace existing outputs."),
) -> None:
    """Export the stitched mask: --geojson for QuPath, --zarr for SpatialData (image, labels, shapes, table)."""
    from csrefiner.errors import CsrefinerError
    from csrefiner.io import check_outputs, check_writable, outputs_together

    if geojson is None and zarr_out is None:
        raise CsrefinerError("export: nothing to write; give --geojson OUT.geojson and/or --zarr OUT.zarr")
    check_outputs([mask, image, table], [geojson, zarr_out])
    origin_xy, offset_xy = _pair(origin, "--origin") or (0, 0), _pair(offset, "--offset")  # before any work
    for out in (geojson, zarr_out):
        if out is not None:
            check_writable(out, force)
    with outputs_together(geojson, zarr_out):  # a failed second output leaves no first one behind
        _export(mask, geojson, zarr_out, image, table, origin_xy, offset_xy, pixel_size, object_type, force)


def _export(mask, geojson, zarr_out, image, table, origin_xy, offset_xy, pixel_size, object_type, force) -> None:
    if zarr_out is not None:
        from csrefiner.interop.spatialdata import export_spatialdata

        info = export_spatialdata(zarr_out, mask, image, table, pixel_size, offset_xy, force)
        typer.echo(
            f"wrote {zarr_out}: {info['cells']} cells, {info['levels']} levels, pixel size "
            f"{info['pixel_size_um']} um, chip offset {info['offset']}"
        )
    if geojson is not None:
        from csrefiner.wsi.outlines import write_slide_geojson

        n = write_slide_geojson(mask, geojson, origin_xy, object_type, force=force)
        typer.echo(f"wrote {n} cells to {geojson}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
