"""Which models a demo run uses and where each one's baseline comes from (a cached pretrained model, or one
trained from scratch on the easy block)."""

from __future__ import annotations

from collections.abc import Callable

from csrefiner.demo import layout as L
from csrefiner.demo.config import AUTO, DemoConfig
from csrefiner.errors import CsrefinerError
from csrefiner.models import get_backend


def backend_problem(name: str) -> str | None:
    """Why backend `name` cannot be fine-tuned here (unknown, classical, not installed), or None."""
    if name == L.WATERSHED:
        return "watershed has nothing to fine-tune (it is the demo's second opinion and reference)"
    try:
        get_backend(name).check_installed()
    except CsrefinerError as exc:
        return str(exc)
    except ImportError as exc:  # a backend file whose own imports fail
        return f"backend '{name}' cannot be imported here ({exc})"
    return None


def usable_models(cfg: DemoConfig, say: Callable[[str], None]) -> tuple[list[str], dict[str, str]]:
    """(models to run, {skipped model: why}); an error when none can run."""
    names = [n for n in cfg.models if n != AUTO]
    # auto: the backends the demo has small-network knobs for, those installed (no note for the others)
    auto = [b for b in cfg.options if b not in names] if AUTO in cfg.models else []
    models, skipped = [], {}
    for name in names + auto:
        problem = backend_problem(name)
        if problem and name in auto:
            continue
        if problem:
            skipped[name] = problem
            say(f"[demo] skipping model '{name}': {problem}")
        else:
            models.append(name)
    if not models:
        raise CsrefinerError(
            f"demo: none of the models {', '.join(cfg.models)} can run here: " + "; ".join(skipped.values())
        )
    return models, skipped


def pretrained_for(spec: str | None, model: str) -> str | None:
    """The baseline of `model`: a pretrained name, "scratch" (train one on the easy block) or None (auto).

    --pretrained is one name for every model, or BACKEND:NAME items (models not listed: auto)."""
    for item in [s.strip() for s in (spec or "").split(",") if s.strip()]:
        backend, sep, name = item.partition(":")
        if not sep:
            return item
        if backend == model:
            return name
    return None


def cached_default(model: str) -> str | None:
    """The backend's default pretrained model when the local cache has it (never downloaded), else None."""
    backend = get_backend(model)
    try:
        return backend.default_pretrained if backend.resolve(backend.default_pretrained).path else None
    except CsrefinerError:
        return None


def cached_baseline(cfg: DemoConfig, model: str) -> str | None:
    """The pretrained name `model`'s baseline is taken from (checked to be in the local cache), or None: train
    one from scratch."""
    name = pretrained_for(cfg.pretrained, model)
    name = cached_default(model) if name is None else name
    if not name or name == "scratch":
        return None
    get_backend(model).resolve(name)  # a clear error when it is not in the local cache
    return name
