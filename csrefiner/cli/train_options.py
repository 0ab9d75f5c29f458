"""Training options that `finetune` and `round train` share, declared once, and the TrainParams they build."""

from __future__ import annotations

from typing import Literal

import typer

from csrefiner.errors import CsrefinerError

Stain = Literal["ss", "he"]  # ssDNA/DAPI/fluorescence or H&E
Device = Literal["auto", "cpu", "cuda"]  # as csrefiner.models.device.CHOICES

EPOCHS = typer.Option(
    100, "--epochs", min=1, max=100_000, help="Planned epochs (one epoch = one pass over the training patches)."
)
LR = typer.Option(
    None, "--lr", min=1e-8, max=1.0, help="Base learning rate (default: the backend's, lower when fine-tuning)."
)
BATCH_SIZE = typer.Option(8, "--batch-size", min=1, max=4096)
SEED = typer.Option(0, "--seed", min=0, help="Seeds the split, the epoch order and the augmentation.")
EVAL_EVERY = typer.Option(5, "--eval-every", min=1, help="Epochs between validation F1 evaluations.")
PATIENCE = typer.Option(10, "--patience", min=1, help="Stop after this many evaluations without improvement.")
GAMMA = typer.Option(
    0.85, "--gamma", min=0.0, max=1.0, help="Sampling gamma for pseudo-labels (0 uniform, 1 balanced)."
)
STAIN = typer.Option("ss", "--stain", help="ss (ssDNA/DAPI/fluorescence) or he (H&E).")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")
OPTION = typer.Option(None, "--option", help="Backend-specific KEY=VALUE (see docs/backends.md), repeatable.")


def parse_options(items: list[str] | None) -> dict:
    """`--option key=value` pairs (backend-specific knobs, recorded in the model card)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CsrefinerError(f"--option {item!r}: write KEY=VALUE, e.g. --option nbase=2,16,32,64,256")
        out[key.strip()] = value.strip()
    return out


def train_params(
    epochs: int,
    lr: float | None,
    batch_size: int,
    seed: int,
    eval_every: int,
    patience: int,
    stain: str,
    device: str,
    option: list[str] | None,
):
    from csrefiner.models.base import TrainParams

    return TrainParams(
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
