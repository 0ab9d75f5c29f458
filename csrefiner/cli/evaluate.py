"""`csrefiner evaluate`: score predictions against ground truth, compare methods with paired statistics."""

from __future__ import annotations

from pathlib import Path

import typer

from csrefiner.errors import CsrefinerError


def method_names(preds: list[Path], names: list[str] | None) -> list[str]:
    if names:
        if len(names) != len(preds):
            raise CsrefinerError(
                f"--name given {len(names)} times for {len(preds)} --pred folders; give one per folder"
            )
        chosen = list(names)
    else:
        chosen = [p.resolve().name for p in preds]
        if len(set(chosen)) < len(chosen):
            chosen = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in preds]
    if len(set(chosen)) < len(chosen):
        raise CsrefinerError(f"method names {chosen} repeat; name each --pred with --name")
    return chosen


def evaluate(
    gt: Path = typer.Option(..., "--gt", help="Ground-truth masks (<name>-mask.tif, or same stems as --pred)."),
    pred: list[Path] = typer.Option(..., "--pred", help="Prediction folder; repeat to compare methods."),
    out: Path = typer.Option(..., "--out", help="Output folder for CSV, JSON, plots and summary.md."),
    iou: float = typer.Option(0.5, "--iou", min=0.05, max=1.0, help="IoU threshold for a true positive."),
    name: list[str] | None = typer.Option(None, "--name", help="Display name per --pred, in the same order."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Match objects one-to-one (as stardist.matching) and report precision, recall, F1, Jaccard, Dice, PQ, AJI+."""
    from csrefiner.io import check_outputs, check_writable
    from csrefiner.metrics.report import evaluate_methods

    check_outputs([gt, *pred], [out])
    check_writable(out, force)
    info = evaluate_methods(gt, list(zip(method_names(pred, name), pred)), out, iou, force)
    for method, s in info["methods"].items():
        m = s["macro"]
        typer.echo(
            f"{method}: {s['n_images']} images  precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
            f"F1 {m['f1']:.3f}  object Jaccard {m['object_jaccard']:.3f}  pixel Dice {m['pixel_dice']:.3f}"
        )
    typer.echo(f"wrote {out}/summary.md")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
