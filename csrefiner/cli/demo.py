"""`csrefiner demo`: the CSRefiner experiment in miniature, end to end, with one HTML report.

`demo run` runs every step in one process (csrefiner/demo/flow.py, through the library functions of the steps'
commands); `demo data`, `demo annotate` and `demo report` are the steps that only the demo has (the others are
ordinary csrefiner commands), which the pipeline's test profile runs as tasks.
"""

from __future__ import annotations

from pathlib import Path

import typer

demo_app = typer.Typer(
    help="The CSRefiner experiment in miniature on generated data, with an HTML report.", no_args_is_help=True
)


def _config(
    quick: bool,
    models: str,
    epochs: int | None,
    patches: int | None,
    pretrained: str | None,
    seed: int,
    tile: int | None = None,
    overlap: int | None = None,
):
    from csrefiner.demo import make_config

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    return make_config(
        quick,
        models=names,
        epochs=epochs,
        baseline_epochs=epochs,
        patches=patches,
        pretrained=pretrained,
        seed=seed,
        tile=tile,
        overlap=overlap,
    )


TILE = typer.Option(None, "--tile-size", min=64, help="Whole-slide tiles (default 1024; --quick 512).")
OVERLAP = typer.Option(None, "--overlap", min=0, help="Whole-slide tile overlap (default 64).")
QUICK = typer.Option(False, "--quick", help="Smaller slide, fewer patches and epochs (a few minutes).")
SEED = typer.Option(0, "--seed", min=0, help="Seeds the data, every split and every training run.")
FORCE = typer.Option(False, "--force", help="Replace an existing output folder.")


@demo_app.command("run")
def run(
    out: Path = typer.Option(Path("results/demo"), "--out", help="Output folder (report.html, summary.json, ...)."),
    models: str = typer.Option(
        "auto",
        "--models",
        help="Comma-separated backends (unavailable ones are skipped "
        "with a note in the report); auto: every installed one the demo has small-network "
        "settings for (cellpose, stardist).",
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        min=1,
        help="Epochs of fine-tuning and of the from-scratch baseline (default: 15 and 15; --quick 10 and 20).",
    ),
    patches: int | None = typer.Option(
        None, "--patches", min=3, help="Patches `suggest` picks for annotation (default 20; --quick 8)."
    ),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="Baseline: a pretrained model from the local "
        "cache (e.g. cyto3, or cellpose:cyto3,stardist:scratch), or 'scratch' "
        "(trained on the easy block). Default: the backend's default model "
        "when it is cached, else scratch.",
    ),
    seed: int = SEED,
    quick: bool = QUICK,
    tile: int | None = TILE,
    overlap: int | None = OVERLAP,
    force: bool = FORCE,
    budget_sweep: str | None = typer.Option(
        None,
        "--budget-sweep",
        help="Also fine-tune on the top b suggested "
        "patches for each budget b (e.g. 0,4,8): a learning curve in the "
        "report (one fine-tune per budget and model).",
    ),
) -> None:
    """Baseline -> suggest -> fine-tune -> evaluate before/after -> whole slide -> cgef + h5ad; report.html."""
    from csrefiner.demo import run_demo
    from csrefiner.errors import CsrefinerError

    cfg = _config(quick, models, epochs, patches, pretrained, seed, tile, overlap)
    try:
        budgets = tuple(sorted({int(b) for b in (budget_sweep or "").split(",") if b.strip()}))
    except ValueError:
        budgets = (-1,)
    if any(b < 0 or b == 1 for b in budgets):
        raise CsrefinerError(f"--budget-sweep {budget_sweep}: give budgets as 0 or whole numbers >= 2, e.g. 0,4,8")
    summary = run_demo(out, cfg, force=force, say=typer.echo, budgets=budgets)
    for m, g in summary["gain"].items():
        typer.echo(
            f"{m}: F1 on held-out hard patches {g['f1_before']:.3f} -> {g['f1_after']:.3f} "
            f"(gain {g['f1_gain']:+.3f}, Wilcoxon p {g['p_value']:.3g}, n {g['n_images']})"
        )
    for m, why in summary["skipped_models"].items():
        typer.echo(f"{m}: skipped ({why})")
    typer.echo(f"report: {out / 'report.html'} ({summary['total']['wall_s']} s)")


@demo_app.command("data")
def data(
    out: Path = typer.Option(..., "--out", help="Output folder: slide, ground truth, patch sets, GEM, demo.json."),
    seed: int = SEED,
    quick: bool = QUICK,
    patches: int | None = typer.Option(None, "--patches", min=3, help="Patches `suggest` will pick."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs written into demo.json's options."),
    tile: int | None = TILE,
    overlap: int | None = OVERLAP,
    force: bool = FORCE,
) -> None:
    """The generated slide (easy + hard block) with ground truth, its patch sets and GEM, and each step's options."""
    from csrefiner.demo.data import write_demo_data

    spec = write_demo_data(out, _config(quick, "auto", epochs, patches, None, seed, tile, overlap), force=force)
    d = spec["data"]
    typer.echo(
        f"wrote {out}: slide {d['slide_shape']} with {d['nuclei']} nuclei, {d['heldout_hard_patches']} "
        f"held-out hard patches, GEM with {d['gem']['records']} records"
    )


@demo_app.command("annotate")
def annotate(
    suggested: Path = typer.Option(..., "--suggested", help="Folder written by `csrefiner suggest`."),
    data_dir: Path = typer.Option(..., "--data", help="Folder written by `csrefiner demo data`."),
    out: Path = typer.Option(..., "--out", help="Output folder of annotated patches (<name>-img/-mask.tif)."),
    force: bool = FORCE,
) -> None:
    """The simulated annotator: every suggested patch gets its ground truth in place of the consensus mask."""
    from csrefiner.demo.annotate import annotate_from_data
    from csrefiner.io import check_outputs

    check_outputs([suggested, data_dir], [out])
    info = annotate_from_data(suggested, data_dir, out, force)
    typer.echo(f"annotated {info['selected']} patches ({info['in_hard_region']} in the hard block) into {out}")


@demo_app.command("report")
def report(
    run_dir: Path = typer.Option(..., "--run", help="A demo run folder (the layout of csrefiner/demo/layout.py)."),
) -> None:
    """summary.json, figures/ and one self-contained report.html from a finished run folder."""
    from csrefiner.demo.summary import write_run_report

    summary = write_run_report(run_dir)
    for m, g in summary["gain"].items():
        typer.echo(
            f"{m}: F1 on held-out hard patches {g['f1_before']:.3f} -> {g['f1_after']:.3f} (gain {g['f1_gain']:+.3f})"
        )
    typer.echo(f"wrote {run_dir / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.add_typer(demo_app, name="demo")
