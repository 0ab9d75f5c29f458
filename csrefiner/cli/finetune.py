"""`csrefiner finetune`: fine-tune a pretrained model (or train from scratch) on annotated patches."""

from __future__ import annotations

from pathlib import Path

import typer

from csrefiner.cli import train_options as opts


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
    gamma: float = opts.GAMMA,
    epochs: int = opts.EPOCHS,
    lr: float | None = opts.LR,
    batch_size: int = opts.BATCH_SIZE,
    seed: int = opts.SEED,
    eval_every: int = opts.EVAL_EVERY,
    patience: int = opts.PATIENCE,
    stain: opts.Stain = opts.STAIN,
    device: opts.Device = opts.DEVICE,
    option: list[str] | None = opts.OPTION,
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Fine-tune MODEL on annotated patches; writes weights, model.json, train_log.json and loss_curve.png."""
    from csrefiner.io import check_outputs
    from csrefiner.models.finetune import finetune as run

    check_outputs([train, val, pseudo], [out])
    params = opts.train_params(epochs, lr, batch_size, seed, eval_every, patience, stain, device, option)

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
