"""Every `csrefiner` call in the pipeline's modules, and every option passed through ext.args, exists in the CLI.

The Typer app is introspected through the click command objects that Typer builds (typer.main.get_command),
so an option renamed in a step's Typer module breaks this test, not a pipeline run on a cluster.
A step the pipeline needs but the app does not have (yet) fails here by name.
"""

from __future__ import annotations

import re

import pytest
import typer.main
from nf_modules import REPO, aliases, ext_args, invocations, load_modules

from csrefiner.cli import app

# The pipeline's steps: module folder == `csrefiner` subcommand, demo_<x> == `csrefiner demo <x>` (test_gem is
# test data, not a step).
EXPECTED_STEPS = [
    "synth",
    "tile",
    "crop",
    "finetune",
    "segment",
    "stitch",
    "evaluate",
    "consensus",
    "suggest",
    "cgef",
    "demo_data",
    "demo_annotate",
    "demo_report",
]
NOT_STEPS = {"test_gem"}


def words(step: str) -> tuple[str, ...]:
    return tuple(step.split("_", 1)) if step.startswith("demo_") else (step,)


MODULES = load_modules()


def _commands() -> dict:
    """{(word, ...): click command} for every command and sub-group command of the app."""
    root = typer.main.get_command(app)
    found = {}
    for name, cmd in root.commands.items():
        found[(name,)] = cmd
        for sub, subcmd in getattr(cmd, "commands", {}).items():
            found[(name, sub)] = subcmd
    return found


COMMANDS = _commands()
GROUPS = {words[0] for words in COMMANDS if len(words) == 2}


def _options(cmd) -> dict[str, object]:
    """--option -> click parameter (options only, with their secondary names such as --no-x)."""
    out = {}
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "option":
            for name in list(p.opts) + list(p.secondary_opts):
                out[name] = p
    return out


def test_modules_found():
    assert set(EXPECTED_STEPS) | NOT_STEPS == set(MODULES), "a module folder was added or removed: update the lists"


@pytest.mark.parametrize("step", EXPECTED_STEPS)
def test_step_exists_in_cli(step):
    assert words(step) in COMMANDS, (
        f"`csrefiner {' '.join(words(step))}` is not in the Typer app, but modules/{step}/main.nf calls it "
        f"(app has: {', '.join(sorted(' '.join(w) for w in COMMANDS))})"
    )


@pytest.mark.parametrize("step", EXPECTED_STEPS)
def test_module_calls_its_step(step):
    calls = invocations(MODULES[step], GROUPS)
    assert [c.words for c in calls] == [list(words(step))], (
        f"modules/{step}/main.nf should call `csrefiner {step}` once"
    )


def call_problems(where: str, call) -> list[str]:
    """What is wrong with one `csrefiner` call: unknown command or option, missing required option or value."""
    cmd = COMMANDS.get(tuple(call.words))
    if cmd is None:
        return [f"{where} calls `csrefiner {' '.join(call.words)}`, which the app lacks"]
    known = _options(cmd)
    name = " ".join(call.words)
    problems = [f"{where}: `csrefiner {name}` has no option {o}" for o in sorted(set(call.options) - set(known))]
    required = {p.opts[0] for p in cmd.params if p.required and getattr(p, "param_type_name", "") == "option"}
    given = {known[o].opts[0] for o in call.options if o in known}
    problems += [f"{where}: `csrefiner {name}` requires {o}" for o in sorted(required - given)]
    for i, tok in enumerate(call.tokens):
        p = known.get(tok)
        if p is not None and not getattr(p, "is_flag", False):
            nxt = call.tokens[i + 1] if i + 1 < len(call.tokens) else ""
            if not nxt or nxt.startswith("--"):
                problems.append(f"{where}: {tok} needs a value")
    return problems


@pytest.mark.parametrize("step", EXPECTED_STEPS)
def test_module_options_exist(step):
    problems = [p for call in invocations(MODULES[step], GROUPS) for p in call_problems(f"modules/{step}", call)]
    assert not problems, "\n".join(problems)


def test_checker_catches_bad_calls():
    """The check itself: a wrong option, a missing required option and a missing value are all reported."""
    from nf_modules import Invocation

    bad = Invocation(["evaluate"], ["evaluate", "--gt", "gt", "--prd", "p", "--iou"], ["--gt", "--prd", "--iou"])
    problems = " | ".join(call_problems("fake", bad))
    assert "no option --prd" in problems and "requires --pred" in problems and "requires --out" in problems
    assert "--iou needs a value" in problems
    good = Invocation(["synth"], ["synth", "--out", "x", "--n", "2"], ["--out", "--n"])
    assert call_problems("fake", good) == []
    assert call_problems("fake", Invocation(["nosuchstep"], ["nosuchstep"], [])) != []


EXT_ARGS = ext_args()


@pytest.mark.parametrize("selector", sorted(EXT_ARGS))
def test_ext_args_options_exist(selector):
    """Options set in conf/modules.config ext.args exist in the step of every process the selector matches."""
    matched = sorted({mod for name, mod in aliases().items() if re.fullmatch(selector, name)})
    assert matched, f"conf/modules.config: withName '{selector}' matches no process of the workflows"
    opts = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", EXT_ARGS[selector])
    for mod in matched:
        cmd = COMMANDS.get(words(mod))
        assert cmd is not None, f"conf/modules.config '{selector}': `csrefiner {mod}` is not in the app"
        unknown = sorted(set(opts) - set(_options(cmd)))
        assert not unknown, f"conf/modules.config '{selector}': `csrefiner {mod}` has no option(s) {unknown}"


def test_workflows_use_every_module():
    used = set(aliases().values())
    assert used == set(MODULES), f"modules never included by a workflow: {sorted(set(MODULES) - used)}"


def test_finetune_and_segment_pick_container_by_backend():
    text = (REPO / "conf" / "containers.config").read_text()
    assert "meta.backend == 'stardist'" in text
    for step in ("finetune", "segment"):
        assert "csrefiner_base" not in MODULES[step].path.read_text()
