"""A backend's `--option KEY=VALUE` knobs: one declaration each (`Option`) and one parser for all backends.

A backend lists its options in `option_specs` (name, type, default, help, scratch-only). `Backend.check_options`
refuses unknown keys and values of the wrong type before any work; `Backend.option_values` gives every declared
option's value, typed: as given, else its default. The options as given (strings) are what the model card records.
`csrefiner models options BACKEND` prints the declarations (`table`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from csrefiner.errors import CsrefinerError

TYPES = ("int", "float", "str", "ints")  # ints: comma-separated whole numbers, e.g. 2,32,64,128,256


@dataclass(frozen=True)
class Option:
    name: str
    type: str  # one of TYPES
    default: Any  # the value used when the option is not given; None: not set (the help says what happens)
    help: str
    scratch: bool = False  # architecture: applies only to a network built from scratch (--pretrained scratch)
    choices: tuple[str, ...] = ()  # for type str: the values allowed (matched without regard to case)

    def parse(self, value: Any) -> Any:
        """The typed value of `value` (a string from the command line, or already typed)."""
        text = str(value).strip()
        try:
            if self.type == "int":
                return int(value) if isinstance(value, (int, float)) else int(text)
            if self.type == "float":
                return float(value) if isinstance(value, (int, float)) else float(text)
            if self.type == "ints":
                return [int(v) for v in (value if isinstance(value, (list, tuple)) else text.split(","))]
        except (TypeError, ValueError):
            need = {
                "int": "give a whole number",
                "float": "give a number",
                "ints": "give whole numbers separated by commas",
            }[self.type]
            raise CsrefinerError(f"--option {self.name}={value}: {need}") from None
        if self.choices:
            lower = text.lower()
            if lower not in self.choices:
                raise CsrefinerError(f"--option {self.name}={value}: use one of {', '.join(self.choices)}")
            return lower
        return text

    def shown_default(self) -> str:
        if self.default is None:
            return "-"
        if isinstance(self.default, (list, tuple)):
            return ",".join(map(str, self.default))
        return str(self.default)


class OptionValues(dict):
    """Every declared option's typed value: as given, else its default. `raw`: the options as given."""

    def __init__(self, values: dict, raw: Mapping):
        super().__init__(values)
        self.raw = dict(raw)

    @property
    def given(self) -> dict:
        """The typed values of the options given, in the order given."""
        return {k: self[k] for k in self.raw}

    def over(self, saved: Mapping, key: str) -> Any:
        """The value given, else `saved`'s (e.g. a model folder's config), else the default."""
        return self[key] if key in self.raw else saved.get(key, self[key])


def parse(backend: str, specs: tuple[Option, ...], options: Mapping) -> OptionValues:
    """Refuse unknown keys (a misspelt --option would be ignored silently, and recorded in the model card as if
    it applied) and values of the wrong type; the typed values of every declared option."""
    by_name = {o.name: o for o in specs}
    unknown = sorted(set(options) - set(by_name))
    if unknown:
        raise CsrefinerError(
            f"--option {', '.join(unknown)}: not an option of backend '{backend}'; its options are "
            f"{', '.join(sorted(by_name)) or '(none)'}"
        )
    values = {o.name: o.default for o in specs}
    values.update({key: by_name[key].parse(value) for key, value in options.items()})
    return OptionValues(values, options)


def scratch_given(specs: tuple[Option, ...], options: Mapping) -> list[str]:
    """The scratch-only options among those given, sorted."""
    return sorted({o.name for o in specs if o.scratch} & set(options))


def table(backend) -> str:
    """A backend's options as text: one row per option (key, type, default, help), scratch-only ones marked."""
    from csrefiner.models.registry import BACKENDS, BASE

    entry = BACKENDS[backend.name]
    install = "the base install" if entry.extra == BASE else f"extra [{entry.extra}]"
    head = (
        f"{backend.name}: {entry.family}; default pretrained '{entry.default_pretrained}'; {install}, image "
        f"csrefiner/{entry.image}{', GPU' if entry.gpu else ''}{'' if entry.trainable else ', not trainable'}"
    )
    specs = backend.option_specs
    if not specs:
        return f"{head}\n  (no options)"
    rows = [("KEY", "TYPE", "DEFAULT", "HELP")]
    for o in specs:
        kind = "|".join(o.choices) if o.choices else o.type
        rows.append((o.name, kind, o.shown_default(), ("from scratch only: " if o.scratch else "") + o.help))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    return "\n".join([head, "--option KEY=VALUE (repeatable):", *lines])
