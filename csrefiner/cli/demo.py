"""`csrefiner demo`: run what csrefiner can do end to end on generated data."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("results/demo"), "--out", help="Output folder."),
    n: int = typer.Option(12, "--n", min=2, help="Number of generated patches."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Generate hard-region patches, segment them two ways, evaluate and compare."""
    from csrefiner.demo import run_demo

    info = run_demo(out, n_patches=n, seed=seed, force=force)
    for method, s in info["methods"].items():
        typer.echo(f"{method:>10}: F1 {s['macro']['f1']:.3f}  (macro over {s['n_images']} patches)")
    typer.echo(f"report: {out}/evaluation/summary.md ({info['seconds']} s)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
