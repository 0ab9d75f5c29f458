"""`csrefiner models list`: which pretrained models are on this machine (nothing is downloaded);
`csrefiner models options BACKEND`: the `--option KEY=VALUE` knobs a backend reads."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="Pretrained models available locally, and each backend's options.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """Show every backend, whether it is installed, and the pretrained weights found in its local cache."""
    from csrefiner.errors import CsrefinerError
    from csrefiner.models import backend_names, get_backend

    for name in backend_names():
        backend = get_backend(name)
        try:
            backend.check_installed()
            state = "installed"
        except CsrefinerError:
            state = f"not installed (pip extra [{backend.extra}])"
        found = backend.local_models()
        typer.echo(f"{name}: {state}; default pretrained '{backend.default_pretrained}'")
        for m in found:
            typer.echo(f"  {name}:{m.name}  {m.path}{'  ' + m.note if m.note else ''}")
        if not found:
            typer.echo(f"  (no pretrained weights found; {backend.cache_hint()})")


@models_app.command("options")
def list_options(
    backend: str = typer.Argument(..., help="Backend (--model), e.g. cellpose; `csrefiner models list` lists them."),
) -> None:
    """Show the --option KEY=VALUE knobs of BACKEND: type, default, what each does (scratch-only ones marked)."""
    from csrefiner.models import get_backend
    from csrefiner.models.options import table

    typer.echo(table(get_backend(backend)))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
