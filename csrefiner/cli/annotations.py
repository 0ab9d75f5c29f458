"""`csrefiner annotations to-masks / to-geojson`: QuPath GeoJSON <-> uint32 instance masks."""

from __future__ import annotations

from pathlib import Path

import typer

annotations = typer.Typer(help="Move masks to QuPath (GeoJSON) and corrected annotations back.", no_args_is_help=True)


@annotations.command("to-masks")
def to_masks(
    geojson: list[Path] = typer.Option(
        ..., "--geojson", help="QuPath GeoJSON file, or a folder of them; repeat for several files."
    ),
    image: Path = typer.Option(..., "--image", help="The image the objects were drawn on (gives shape and name)."),
    out: Path = typer.Option(..., "--out", help="Output folder; writes <name>-mask.tif (created if missing)."),
    origin: str = typer.Option(
        "image",
        "--origin",
        help="image: coordinates of this image; slide: of the slide (the patch position is read from its name).",
    ),
    object_type: list[str] | None = typer.Option(
        None, "--object-type", help="Use only features of this QuPath objectType (annotation, detection, cell); repeat."
    ),
    class_name: list[str] | None = typer.Option(None, "--class", help="Use only features of this class; repeat."),
    nucleus: bool = typer.Option(False, "--nucleus", help="For QuPath cells, rasterise the nucleus geometry."),
    lenient: bool = typer.Option(
        False,
        "--lenient",
        help="Fill self-intersecting polygons by the even-odd rule and skip unusable features "
        "(each with a warning) instead of stopping.",
    ),
    with_image: bool = typer.Option(False, "--with-image", help="Also write the image as <name>-img.tif."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
) -> None:
    """Rasterise QuPath objects into a uint32 instance mask (one label per feature, later features on top)."""
    from csrefiner.hitl.annotations import to_masks as run

    info = run(geojson, image, out, origin, object_type, class_name, nucleus, lenient, with_image, force)
    for note in info["notes"]:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{info['n_objects']} objects from {info['n_features']} features -> {info['mask']}")


@annotations.command("to-geojson")
def to_geojson(
    mask: Path = typer.Option(..., "--mask", help="Instance label mask (e.g. <name>-mask.tif)."),
    out: Path = typer.Option(..., "--out", help="GeoJSON file to write (import it in QuPath: File > Import objects)."),
    object_type: str = typer.Option(
        "annotation", "--object-type", help="annotation (editable in QuPath) or detection."
    ),
    class_name: str = typer.Option("Nucleus", "--class", help="QuPath classification name of every object."),
    color: str = typer.Option("0,200,255", "--color", help="Classification colour as red,green,blue."),
    origin: str = typer.Option(
        "image", "--origin", help="image: coordinates of this mask; slide: add the patch position read from its name."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Trace every object's outline (holes kept, touching objects separate) into a QuPath FeatureCollection."""
    from csrefiner.errors import CsrefinerError
    from csrefiner.hitl.annotations import parse_color
    from csrefiner.hitl.annotations import to_geojson as run
    from csrefiner.io import check_outputs

    check_outputs([mask], [out])
    if object_type not in ("annotation", "detection"):
        raise CsrefinerError(f"--object-type {object_type!r}: choose annotation or detection")
    info = run(mask, out, object_type, class_name, parse_color(color), origin, force)
    typer.echo(f"{info['n_objects']} objects -> {info['out']}")


def register(app: typer.Typer) -> None:
    app.add_typer(annotations, name="annotations")
