"""`csrefiner round next / train / status`: annotation rounds with a ledger (csrefiner.hitl.rounds)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from csrefiner.cli import train_options as opts

round_app = typer.Typer(
    help="Annotation rounds: suggest new patches, fine-tune on all annotated ones, track "
    "held-out scores (ledger: PROJECT/rounds.json).",
    no_args_is_help=True,
)
PROJECT = typer.Option(..., "--project", help="Project folder (rounds.json + round-NN/ folders).")
FORCE = typer.Option(False, "--force", help="Redo a step the ledger already records.")


@round_app.command("next")
def next_(
    project: Path = PROJECT,
    pred: list[Path] = typer.Option(
        ...,
        "--pred",
        help="Predictions of the pool by one model (repeat; use the latest round's model as one of them).",
    ),
    image_dir: Path = typer.Option(..., "--image-dir", help="Pool tile images (<key>-img.tif or <key>.tif)."),
    top: int = typer.Option(20, "--top", min=1, help="Patches to annotate in this round."),
    patch_size: int = typer.Option(256, "--patch-size", min=0, help="Side of the suggested patches."),
    min_votes: int | None = typer.Option(None, "--min-votes", min=1, help="Votes a consensus object needs."),
    iou: float = typer.Option(0.5, "--iou", min=0.05, max=1.0, help="IoU at which objects of two models match."),
    name: list[str] | None = typer.Option(None, "--name", help="Model name per --pred, in the same order."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Rank only tiles every model predicted."),
    pseudo: int = typer.Option(0, "--pseudo", min=0, help="Also write the N most agreed windows as pseudo-labels."),
    exclude: list[Path] | None = typer.Option(None, "--exclude", help="More annotated folders to keep out."),
    exclude_list: list[Path] | None = typer.Option(None, "--exclude-list", help="More patch-name lists to keep out."),
    force: bool = FORCE,
) -> None:
    """Suggest the next round's patches; nothing suggested or annotated in earlier rounds is proposed again."""
    from csrefiner.cli.evaluate import method_names
    from csrefiner.cli.suggest import print_warnings
    from csrefiner.hitl.rounds import next_round, round_dir

    k, info = next_round(
        project,
        pred,
        image_dir,
        method_names(pred, name),
        top,
        patch_size,
        min_votes,
        iou,
        skip_missing,
        pseudo,
        exclude or [],
        exclude_list or [],
        force,
    )
    folder = project / round_dir(k)
    print_warnings(info)
    typer.echo(
        f"round {k}: {len(info['top'])} patches to annotate in {folder / 'suggest' / 'patches'} "
        f"({info['excluded']['n_windows']} windows excluded as already taken"
        + (f"; {len(info['pseudo'])} pseudo-labelled in {folder / 'suggest' / 'pseudo'})" if info["pseudo"] else ")")
    )
    typer.echo(
        f"put the corrected pairs in {folder / 'annotated'}, then run `csrefiner round train --project {project} ...`"
    )


@round_app.command("train")
def train(
    project: Path = PROJECT,
    model: str = typer.Option(..., "--model", help="Backend: cellpose, stardist, ..."),
    start: Literal["previous", "base"] = typer.Option(
        "previous", "--from", help="previous: fine-tune round k-1's model; base: the base."
    ),
    pretrained: str | None = typer.Option(None, "--pretrained", help="Base model (first round; recorded)."),
    heldout: Path | None = typer.Option(None, "--heldout", help="Held-out annotated patches (first round; recorded)."),
    epochs: int = opts.EPOCHS,
    lr: float | None = opts.LR,
    batch_size: int = opts.BATCH_SIZE,
    seed: int = opts.SEED,
    eval_every: int = opts.EVAL_EVERY,
    patience: int = opts.PATIENCE,
    val_fraction: float = typer.Option(
        0.15, "--val-fraction", min=0.01, max=0.9, help="Share of the annotated patches validated on."
    ),
    pseudo: bool = typer.Option(False, "--pseudo", help="Mix in this round's pseudo-labels (round next --pseudo)."),
    gamma: float = opts.GAMMA,
    stain: opts.Stain = opts.STAIN,
    device: opts.Device = opts.DEVICE,
    option: list[str] | None = opts.OPTION,
    force: bool = FORCE,
) -> None:
    """Fine-tune on ALL annotated patches of rounds 1..k, score on the held-out patches, record it."""
    from csrefiner.hitl.rounds import train_round

    params = opts.train_params(epochs, lr, batch_size, seed, eval_every, patience, stain, device, option)
    rec = train_round(project, model, params, start, pretrained, heldout, val_fraction, pseudo, gamma, force)
    t, h = rec["train"], rec["heldout"]
    typer.echo(
        f"round {rec['round']}: {t['n_patches']} annotated patches ({t['n_new_patches']} new), from "
        f"{t['from']} ({t['start_model']}); held-out F1 {h['f1']:.3f} on {h['n_images']} patches; "
        f"model {project / t['model']}"
    )


@round_app.command("status")
def status(project: Path = PROJECT) -> None:
    """The rounds so far: patches, starting model, held-out F1."""
    from csrefiner.hitl.rounds import status as rounds_status

    rows = rounds_status(project)
    typer.echo(f"{'round':>5} {'suggested':>9} {'annotated':>9} {'total':>5} {'from':>8} {'held-out F1':>11}  model")
    for r in rows:
        f1 = "-" if r["heldout_f1"] is None else f"{r['heldout_f1']:.3f}"
        total = "-" if r["total"] is None else r["total"]
        typer.echo(
            f"{r['round']:>5} {r['suggested']:>9} {r['annotated']:>9} {total:>5} {r['from']:>8} {f1:>11}  {r['model']}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(round_app, name="round")
