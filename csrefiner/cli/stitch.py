"""`csrefiner stitch`: merge per-tile instance masks into one uint32 whole-slide label image."""

from __future__ import annotations

from pathlib import Path

import typer


def stitch(
    manifest: Path = typer.Option(..., "--manifest", help="manifest.json written by `csrefiner tile`."),
    tiles: Path = typer.Option(..., "--tiles", help="Folder with one mask per tile: <key>-mask.tif or <key>.tif."),
    out: Path = typer.Option(..., "--out", help="Output label image (tiled pyramidal OME-TIFF, uint32)."),
    min_iou: float = typer.Option(
        0.5, "--min-iou", min=0.05, max=1.0, help="IoU inside a shared strip above which two tiles' objects are one."
    ),
    preview: Path | None = typer.Option(
        None, "--preview", help="Also write a PNG overview (objects coloured, seams grey)."
    ),
    report_json: Path | None = typer.Option(
        None,
        "--report",
        help="Also write the counts as JSON (tiles, objects, matched across seams, assembled, dropped).",
    ),
    pixel_size: float | None = typer.Option(
        None,
        "--pixel-size",
        help="Micrometres per pixel written as OME PhysicalSize (default: the manifest's, from the slide).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Resolve objects in tile overlaps once (matched across seams, owned by the tile holding their centre)."""
    from csrefiner.io import check_outputs, check_writable, outputs_together
    from csrefiner.wsi.manifest import Manifest
    from csrefiner.wsi.preview import write_preview
    from csrefiner.wsi.stitch import stitch_tiles, write_stitch_report

    check_outputs([manifest, tiles], [out, preview, report_json])
    for extra in (preview, report_json):
        if extra is not None:
            check_writable(extra, force)
    with outputs_together(out, preview, report_json):  # a failed --preview leaves no stitched mask behind
        report = stitch_tiles(manifest, tiles, out, force, min_iou, pixel_size_um=pixel_size)
        if preview is not None:
            write_preview(out, Manifest.load(manifest), preview, force)
        if report_json is not None:
            write_stitch_report(report, report_json, force)
    typer.echo(
        f"wrote {report.objects} objects from {report.tiles} tiles to {out} ({report.matched} matched across "
        f"seams, {report.assembled} assembled from pieces, {report.dropped} unowned duplicates dropped)"
    )


def register(app: typer.Typer) -> None:
    app.command("stitch")(stitch)
