"""`csrefiner demo`: the CSRefiner experiment in miniature, end to end, with one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo(
    out: Path = typer.Option(Path("results/demo"), "--out", help="Output folder (report.html, summary.json, ...)."),
    models: str = typer.Option("cellpose", "--models", help="Comma-separated backends; unavailable ones are "
                               "skipped with a note in the report."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs of fine-tuning and of the "
                                         "from-scratch baseline (default: 15 and 15; --quick 10 and 20)."),
    patches: Optional[int] = typer.Option(None, "--patches", min=3, help="Patches `suggest` picks for annotation "
                                          "(default 20; --quick 10)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Baseline = this pretrained model from the "
                                             "local cache (e.g. cyto3) instead of one trained on the easy domain."),
    seed: int = typer.Option(0, "--seed"),
    quick: bool = typer.Option(False, "--quick", help="Smaller slide, fewer patches and epochs (a few minutes)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Baseline -> suggest -> fine-tune -> evaluate before/after -> whole slide -> cgef + h5ad; report.html."""
    from csrefiner.demo import make_config, run_demo

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    cfg = make_config(quick, models=names, epochs=epochs, baseline_epochs=epochs, patches=patches,
                      pretrained=pretrained, seed=seed)
    summary = run_demo(out, cfg, force=force, say=typer.echo)
    for m, g in summary["gain"].items():
        typer.echo(f"{m}: F1 on held-out hard patches {g['f1_before']:.3f} -> {g['f1_after']:.3f} "
                   f"(gain {g['f1_gain']:+.3f}, Wilcoxon p {g['p_value']:.3g}, n {g['n_images']})")
    for m, why in summary["skipped_models"].items():
        typer.echo(f"{m}: skipped ({why})")
    typer.echo(f"report: {out / 'report.html'} ({summary['total']['wall_s']} s)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
