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
    "synth",
    "tile",
    "crop",
    "finetune",
    "segment",
    "stitch",
    "evaluate",
    "consensus",
    "suggest",
    "annotations",
    "cgef",
    "export",
    "models",
    "demo",
    "round",
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
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Debug messages of csrefiner, and the frameworks' own log lines (TensorFlow's, absl's) on stderr.",
    ),
) -> None:
    """csrefiner: one command per pipeline step."""
    from csrefiner.log import configure

    configure(verbose)  # before any command imports a framework


for _name in STEP_MODULES:
    importlib.import_module(f"csrefiner.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes one red line on stderr and exit code 2, never a traceback; signals
    exit 128 + signal; either way no temporary output is left (see csrefiner/cli/boundary.py)."""
    from typer import exceptions as typer_exc
    from typer._click import exceptions as click

    from csrefiner.cli import boundary as b

    b.install_signal_handlers()
    try:
        code = app(args=argv, prog_name="csrefiner", standalone_mode=False)
    except b.Interrupted as exc:
        b.stop(exc.signum)
    except KeyboardInterrupt:
        b.stop(2)
    except CsrefinerError as exc:
        b.fail(str(exc))
    except click.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        b.fail(b.usage_line(exc))
    except click.ClickException as exc:
        b.fail(b.one_line(exc.format_message()))
    except typer_exc.Abort as exc:  # typer turns EOFError (a truncated gzip, ...) into Abort
        b.fail(b.damaged_line(exc.__cause__) if exc.__cause__ else "aborted")
    except OSError as exc:
        b.fail(b.damaged_line(exc) if b.is_damaged_file(exc) and not exc.errno else b.os_error_line(exc))
    except MemoryError:
        b.fail("out of memory; run on a machine with more memory or on smaller inputs (e.g. smaller tiles)")
    except Exception as exc:
        if not b.is_damaged_file(exc):
            raise
        b.fail(b.damaged_line(exc))
    finally:
        b.remove_temps()
    sys.exit(code if isinstance(code, int) else 0)
