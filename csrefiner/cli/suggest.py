"""`csrefiner suggest`: which patches to annotate next (where models disagree most), with a starting mask."""

from __future__ import annotations

from pathlib import Path

import typer


def suggest(
    pred: list[Path] = typer.Option(..., "--pred", help="Prediction folder of one model; repeat (at least 2)."),
    image_dir: Path = typer.Option(..., "--image-dir", help="Tile images (<key>-img.tif or <key>.tif)."),
    top: int = typer.Option(20, "--top", min=1, help="Number of patches to write."),
    out: Path = typer.Option(..., "--out", help="Output folder: patches/, ranking.csv, suggest.png."),
    patch_size: int = typer.Option(
        256, "--patch-size", min=0, help="Side of the ranked patches; tiles are cut into windows (0: whole tiles)."
    ),
    min_votes: int | None = typer.Option(
        None, "--min-votes", min=1, help="Votes an object needs in the consensus mask (default: more than half)."
    ),
    iou: float = typer.Option(0.5, "--iou", min=0.05, max=1.0, help="IoU at which objects of two models match."),
    name: list[str] | None = typer.Option(None, "--name", help="Model name per --pred, in the same order."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Rank only tiles every model predicted."),
    exclude: list[Path] | None = typer.Option(
        None,
        "--exclude",
        help="Folder of patches already annotated "
        "(names with slide coordinates); windows overlapping them are "
        "never proposed. Repeatable.",
    ),
    exclude_list: list[Path] | None = typer.Option(
        None, "--exclude-list", help="Text file of annotated patch names, one per line (as --exclude). Repeatable."
    ),
    pseudo: int = typer.Option(
        0,
        "--pseudo",
        min=0,
        help="Also write the N most agreed windows as consensus pseudo-labels (pseudo/, for finetune --pseudo).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Rank patches by disagreement (1 - mean pairwise F1) and write the top N with the consensus mask."""
    from csrefiner.cli.evaluate import method_names
    from csrefiner.hitl.exclude import exclusion
    from csrefiner.hitl.suggest import suggest_folders
    from csrefiner.io import check_outputs

    check_outputs([*pred, image_dir, *(exclude or []), *(exclude_list or [])], [out])
    names = method_names(pred, name)
    excluded = exclusion(exclude or [], exclude_list or [])
    ranking, info = suggest_folders(
        pred, image_dir, out, names, top, patch_size, min_votes, iou, skip_missing, force, excluded, pseudo
    )
    print_warnings(info)
    chosen = ranking[ranking.selected]
    typer.echo(f"ranked {len(ranking)} patches; top {len(chosen)}:")
    for row in chosen.head(10).itertuples():
        typer.echo(
            f"  {row.rank:>3}. {row.name}  disagreement {row.disagreement:.3f}  unmatched {row.unmatched_share:.3f}"
        )
    if excluded.sources:
        typer.echo(
            f"excluded {info['excluded']['n_windows']} windows overlapping {info['excluded']['n_patches']} "
            "annotated patches"
        )
    typer.echo(
        f"wrote {out}/patches ({len(chosen)} image/mask pairs), {out}/ranking.csv, {out}/suggest.png"
        + (f", {out}/pseudo ({len(info['pseudo'])} pseudo-labelled pairs)" if info["pseudo"] else "")
    )


def print_warnings(info: dict) -> None:
    """Skipped tiles and a pseudo-label shortfall, from a suggest summary, on stderr."""
    for note in info["skipped"] + info["warnings"]:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)


def register(app: typer.Typer) -> None:
    app.command("suggest")(suggest)
