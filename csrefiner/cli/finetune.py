"""`csrefiner finetune`: fine-tune a pretrained model (or train from scratch) on annotated patches."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from csrefiner.errors import CsrefinerError

Stain = Literal["ss", "he"]  # ssDNA/DAPI/fluorescence or H&E
Device = Literal["auto", "cpu", "cuda"]  # as csrefiner.models.device.CHOICES


def parse_options(items: list[str] | None) -> dict:
    """`--option key=value` pairs (backend-specific knobs, recorded in the model card)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CsrefinerError(f"--option {item!r}: write KEY=VALUE, e.g. --option nbase=2,16,32,64,256")
        out[key.strip()] = value.strip()
    return out


def finetune(
    model: str = typer.Option(..., "--model", help="Backend: cellpose, cpsam, stardist, ..."),
    train: Path = typer.Option(..., "--train", help="Annotated patches (<name>-img.tif / <name>-mask.tif)."),
    pretrained: str = typer.Option(
        ...,
        "--pretrained",
        help="Base model: a name in the local cache, a path, a csrefiner model folder, or 'scratch'.",
    ),
    out: Path = typer.Option(..., "--out", help="Model folder to write (never the base model's folder)."),
    val: Path | None = typer.Option(None, "--val", help="Validation patches (default: a seeded split of --train)."),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", min=0.01, max=0.9, help="Share of --train held out when --val is not given."
    ),
    pseudo: Path | None = typer.Option(
        None, "--pseudo", help="Pseudo-labelled ('easy') patches, mixed in with gamma-weighted sampling."
    ),
    gamma: float = typer.Option(
        0.85, "--gamma", min=0.0, max=1.0, help="Sampling gamma for --pseudo (0 uniform, 1 balanced)."
    ),
    epochs: int = typer.Option(
        100, "--epochs", min=1, max=100_000, help="Planned epochs (one epoch = one pass over the training patches)."
    ),
    lr: float | None = typer.Option(
        None, "--lr", min=1e-8, max=1.0, help="Base learning rate (default: the backend's, lower when fine-tuning)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=4096),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the split, the epoch order and the augmentation."),
    eval_every: int = typer.Option(5, "--eval-every", min=1, help="Epochs between validation F1 evaluations."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many evaluations without improvement."),
    stain: Stain = typer.Option("ss", "--stain", help="ss (ssDNA/DAPI/fluorescence) or he (H&E)."),
    device: Device = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    option: list[str] | None = typer.Option(
        None, "--option", help="Backend-specific KEY=VALUE (see docs/backends.md), repeatable."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Fine-tune MODEL on annotated patches; writes weights, model.json, train_log.json and loss_curve.png."""
    from csrefiner.io import check_outputs
    from csrefiner.models.base import TrainParams
    from csrefiner.models.finetune import finetune as run

    check_outputs([train, val, pseudo], [out])
    params = TrainParams(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        patience=patience,
        eval_every=eval_every,
        stain=stain,
        device=device,
        options=parse_options(option),
    )

    def report(rec, improved):
        if rec.val_f1 is not None:
            mark = " *best*" if improved else ""
            typer.echo(
                f"epoch {rec.epoch:4d}  lr {rec.lr:.2e}  train loss {rec.train_loss:.4f}  "
                f"val loss {rec.val_loss if rec.val_loss is not None else float('nan'):.4f}  "
                f"val F1 {rec.val_f1:.3f}{mark}",
                err=True,
            )

    card = run(model, train, out, pretrained, params, val, val_fraction, pseudo, gamma, force, report)
    v = card["validation"]
    typer.echo(
        f"{card['backend']} from {card['base_model']['name']}: validation F1 {v['before']['f1']:.3f} -> "
        f"{v['after']['f1']:.3f} ({v['n_images']} patches, best epoch {card['training']['best_epoch']}, "
        f"{card['training']['seconds']} s on {card['device']}); wrote {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
