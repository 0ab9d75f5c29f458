"""`csrefiner models list`: which pretrained models are on this machine (nothing is downloaded)."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="Pretrained models available locally.", no_args_is_help=True)


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


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
