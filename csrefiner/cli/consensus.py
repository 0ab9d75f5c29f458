"""`csrefiner consensus`: fuse several models' masks of the same tiles into pseudo-labels with agreement scores."""

from __future__ import annotations

from pathlib import Path

import typer


def consensus(
    pred: list[Path] = typer.Option(..., "--pred", help="Prediction folder of one model; repeat (at least 2)."),
    out: Path = typer.Option(..., "--out", help="Output folder: patches/, objects.csv, tiles.csv, agreement.png."),
    min_votes: int | None = typer.Option(
        None, "--min-votes", min=1, help="Models that must agree on an object (default: more than half)."
    ),
    iou: float = typer.Option(0.5, "--iou", min=0.05, max=1.0, help="IoU at which objects of two models match."),
    name: list[str] | None = typer.Option(None, "--name", help="Model name per --pred, in the same order."),
    image_dir: Path | None = typer.Option(
        None, "--image-dir", help="Tile images (<key>-img.tif or <key>.tif): also write them next to the masks."
    ),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Fuse only tiles every model predicted."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Match objects across models by IoU, keep those found by >= K models, shape them by pixel vote."""
    from csrefiner.cli.evaluate import method_names
    from csrefiner.hitl.batch import consensus_folders
    from csrefiner.io import check_outputs

    check_outputs([*pred, image_dir], [out])
    names = method_names(pred, name)
    info = consensus_folders(pred, out, names, min_votes, iou, image_dir, skip_missing, force)
    for note in info["skipped"]:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    agreement = info["mean_agreement"]
    typer.echo(
        f"{info['n_tiles']} tiles, {info['n_objects']} fused objects (>= {info['min_votes']} of {len(names)} models), "
        f"mean agreement {agreement if agreement is None else round(agreement, 3)}, "
        f"mean tile disagreement {info['mean_disagreement']:.3f}"
    )
    typer.echo(f"wrote {out}/patches, {out}/objects.csv, {out}/tiles.csv")


def register(app: typer.Typer) -> None:
    app.command("consensus")(consensus)
