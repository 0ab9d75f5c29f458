"""The `csrefiner` umbrella command. Each step lives in its own module under csrefiner/cli/ and only parses
arguments and calls the library; heavy frameworks (torch, tensorflow) are imported inside the commands so
`csrefiner --help` stays instant.

Adding a step: write `csrefiner/cli/<step>.py` with a `register(app)` function and list it in STEP_MODULES.
"""

from __future__ import annotations

import importlib
import sys

import typer

from csrefiner import __version__
from csrefiner.errors import CsrefinerError

STEP_MODULES = [
    "synth", "tile", "crop", "finetune", "segment", "stitch", "evaluate", "consensus", "suggest", "annotations",
    "cgef", "models", "demo", "round",
]

app = typer.Typer(
    name="csrefiner",
    help="Fine-tune cell segmentation on a few annotated patches, segment whole slides, build cell-bin matrices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"csrefiner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """csrefiner: one command per pipeline step."""


for _name in STEP_MODULES:
    importlib.import_module(f"csrefiner.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one red line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv)
    except CsrefinerError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
