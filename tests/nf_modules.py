"""Read the pipeline's modules and configs from Python: scripts, `csrefiner` invocations, declared outputs, ext.args.

Used by the tests that check the modules against the Typer app and that run the test profile's flow without
Nextflow: a module's script block is rendered the way Nextflow renders it (GString `${...}` interpolation,
`\\$` escapes, indentation stripped) and run with `bash -ue`, Nextflow's default shell, in a task folder where
inputs are staged as symlinks, with the `eval()` outputs' commands appended as Nextflow appends them (the
versions tuple). The input/output declarations are parsed into channels (also for the meta.yml check). Only the
simple interpolations the modules use are supported (`${name}`, `${a.b}`); anything else fails loudly, which
keeps the modules simple enough to be checked this way.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_INTERP = re.compile(r"(?<!\\)\$\{([^}]*)\}")
_SIMPLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@dataclass
class Element:
    """One item of an input/output declaration: `val(meta)`, `path(images, stageAs: 'input/*')`, `path("${prefix}")`,
    `val('csrefiner')`, `eval("csrefiner --version")`."""

    kind: str  # val, path, eval, env, stdin, file
    name: str  # the variable (inputs, val(meta)) or the quoted text, still a template (path("..."), eval("..."))
    quoted: bool = False


@dataclass
class Channel:
    """One line of an `input:` or `output:` block: its elements (one unless `tuple`) and options (emit, topic, ...)."""

    elements: list[Element]
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Output:
    pattern: str  # the path(...) pattern, still a template ("" for an output without a path, e.g. versions)
    emit: str
    optional: bool = False
    elements: list[Element] = field(default_factory=list)
    topic: str = ""

    @property
    def evals(self) -> list[str]:
        """The eval(...) commands of this output, still templates."""
        return [e.name for e in self.elements if e.kind == "eval"]


@dataclass
class Module:
    step: str
    path: Path
    process: str
    defs: dict[str, str]  # name -> Groovy expression, from the script section
    script: str  # the script template (between triple quotes), not yet rendered
    stub: str
    outputs: list[Output] = field(default_factory=list)
    inputs: list[Channel] = field(default_factory=list)


def _section(text: str, label: str) -> tuple[list[str], str]:
    """(def lines, triple-quoted template) of the `script:` or `stub:` section."""
    start = re.search(rf"^\s*{label}:\s*$", text, re.M)
    if not start:
        raise ValueError(f"no {label}: section")
    rest = text[start.end() :]
    q1 = rest.index('"""')
    q2 = rest.index('"""', q1 + 3)
    lines = [ln.strip() for ln in rest[:q1].splitlines() if ln.strip()]
    return lines, rest[q1 + 3 : q2]


def _defs(lines: list[str]) -> dict[str, str]:
    out = {}
    for ln in lines:
        m = re.match(r"^(?:def\s+)?([A-Za-z_]\w*)\s*=\s*(.+)$", ln)
        if not m:
            raise ValueError(f"unsupported line before the script: {ln!r}")
        out[m.group(1)] = m.group(2)
    return out


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside parentheses, brackets and quotes; a `//` comment outside quotes ends the text."""
    parts, depth, quote, cur, i = [], 0, "", "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                cur += text[i : i + 2]
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif text.startswith("//", i):
            break
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(cur.strip())
            cur, i = "", i + 1
            continue
        cur += c
        i += 1
    if quote or depth:
        raise ValueError(f"unbalanced declaration: {text!r}")
    parts.append(cur.strip())
    return [p for p in parts if p]


_QUALIFIER = re.compile(r"^(val|path|file|env|eval|stdin)\s*(?:\((.*)\)|\s(.+))$", re.S)


def _element(item: str) -> Element:
    m = _QUALIFIER.match(item.strip())
    if not m:
        raise ValueError(f"unsupported declaration item: {item!r}")
    kind, inner = m.group(1), (m.group(2) if m.group(2) is not None else m.group(3)).strip()
    first = _split_top(inner)[0] if inner else ""
    if first[:1] in "'\"" and first[-1:] == first[:1]:
        return Element(kind, first[1:-1], True)
    if not re.fullmatch(r"[A-Za-z_]\w*", first):
        raise ValueError(f"unsupported declaration item: {item!r}")
    return Element(kind, first)


def _channel(line: str) -> Channel | None:
    line = line.strip()
    if not line or line.startswith("//"):
        return None
    tuple_ = re.match(r"^tuple\s+", line)
    items = _split_top(line[tuple_.end() :] if tuple_ else line)
    if not items:
        return None
    elements, options = [], {}
    for item in items:
        opt = re.match(r"^(\w+)\s*:\s*(.+)$", item, re.S)
        if opt and not _QUALIFIER.match(item):
            options[opt.group(1)] = opt.group(2).strip()
        else:
            elements.append(_element(item))
    if not tuple_ and len(elements) != 1:
        raise ValueError(f"several items without `tuple`: {line!r}")
    return Channel(elements, options)


def _block(text: str, label: str) -> str:
    m = re.search(rf"^\s*{label}:\s*$(.*?)^\s*(?:input|output|when|script|shell|stub|exec):\s*$", text, re.M | re.S)
    return m.group(1) if m else ""


def channels(text: str, label: str) -> list[Channel]:
    """The channels declared in a process's `input:` or `output:` block, one per line, in order."""
    return [c for c in map(_channel, _block(text, label).splitlines()) if c is not None]


def _outputs(text: str) -> list[Output]:
    outs = []
    for ch in channels(text, "output"):
        paths = [e.name for e in ch.elements if e.kind == "path" and e.quoted]
        if paths or any(e.kind == "eval" for e in ch.elements):
            outs.append(
                Output(
                    paths[0] if paths else "",
                    ch.options.get("emit", ""),
                    ch.options.get("optional") == "true",
                    ch.elements,
                    ch.options.get("topic", ""),
                )
            )
    return outs


def load_module(path: Path) -> Module:
    text = path.read_text()
    process = re.search(r"^process\s+(\w+)\s*\{", text, re.M).group(1)
    def_lines, script = _section(text, "script")
    _, stub = _section(text, "stub")
    return Module(
        path.parent.name, path, process, _defs(def_lines), script, stub, _outputs(text), channels(text, "input")
    )


def load_modules(root: Path = REPO) -> dict[str, Module]:
    return {p.parent.name: load_module(p) for p in sorted((root / "modules").glob("*/main.nf"))}


# ---------------------------------------------------------------------------------------------- invocations
@dataclass
class Invocation:
    words: list[str]  # e.g. ["segment"] or ["models", "list"]
    tokens: list[str]  # everything after `csrefiner`, shell-split, ${...} kept whole
    options: list[str]  # --options written in the call or in the defs it interpolates


def _logical_lines(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def _split(line: str) -> list[str]:
    # protect ${...} (may contain spaces or quotes) from shlex
    holes = {}

    def keep(m):
        key = f"@@{len(holes)}@@"
        holes[key] = m.group(0)
        return key

    protected = _INTERP.sub(keep, line)
    return [re.sub(r"@@\d+@@", lambda m: holes[m.group(0)], t) for t in shlex.split(protected, posix=True)]


def invocations(module: Module, group_words: set[str] = frozenset()) -> list[Invocation]:
    """Every `csrefiner ...` call in the module's script, with the options it passes."""
    calls = []
    for line in _logical_lines(module.script):
        stripped = line.strip()
        if not stripped.startswith("csrefiner ") or "$(" in stripped[:12]:
            continue
        tokens = _split(stripped)[1:]
        if tokens and tokens[0].startswith("--"):  # `csrefiner --version`
            continue
        words = tokens[:2] if tokens and tokens[0] in group_words else tokens[:1]
        options = [t.split("=", 1)[0] for t in tokens if t.startswith("--")]
        for t in tokens:
            m = _INTERP.fullmatch(t)
            if m and m.group(1) in module.defs:  # options hidden in a def, e.g. "--model-dir ${model}"
                options += _OPTION.findall(module.defs[m.group(1)])
        calls.append(Invocation(words, tokens, options))
    return calls


# ------------------------------------------------------------------------------------------------ configs
def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"\s//.*$", "", ln) if not ln.lstrip().startswith("//") else "" for ln in text.splitlines())


def _value(raw: str):
    raw = raw.strip().rstrip(",")
    if raw in ("null",):
        return None
    if raw in ("true", "false"):
        return raw == "true"
    if raw[:1] in "'\"":
        return raw[1:-1]
    try:
        return int(raw)
    except ValueError:
        return float(raw)


def read_params(*configs: Path) -> dict:
    """`name = value` lines of the `params { }` blocks, later files overriding earlier ones."""
    params = {}
    for cfg in configs:
        text = _strip_comments(cfg.read_text())
        for block in re.finditer(r"^params\s*\{(.*?)^\}", text, re.M | re.S):
            for m in re.finditer(r"^\s*(\w+)\s*=\s*(.+?)\s*$", block.group(1), re.M):
                params[m.group(1)] = _value(m.group(2))
    return params


def pipeline_params(profile: str | None = None) -> dict:
    """params of nextflow.config, with a profile's config (conf/<profile>.config) on top."""
    files = [REPO / "nextflow.config", REPO / "conf" / "containers.config"]
    if profile:
        files.append(REPO / "conf" / f"{profile}.config")
    return read_params(*files)


def _ext_settings(config: Path, setting: str) -> dict[str, str]:
    """withName selector -> the first group of regex `setting` inside its block."""
    text = _strip_comments(config.read_text())
    out = {}
    for m in re.finditer(r"withName:\s*'([^']+)'\s*\{(.*?)\n\s*\}", text, re.S):
        a = re.search(setting, m.group(2))
        if a:
            out[m.group(1)] = a.group(1)
    return out


def ext_args(config: Path = REPO / "conf" / "modules.config") -> dict[str, str]:
    """withName selector -> the ext.args GString template (closure body) set for it."""
    return _ext_settings(config, r'ext\.args\s*=\s*\{\s*"([^"]*)"\s*\}')


def ext_prefixes(config: Path = REPO / "conf" / "modules.config") -> dict[str, str]:
    """withName selector -> a fixed ext.prefix set for it."""
    return _ext_settings(config, r"ext\.prefix\s*=\s*'([^']*)'")


def aliases(root: Path = REPO) -> dict[str, str]:
    """Process name used in the workflows (alias or own name) -> module folder."""
    out = {}
    for nf in list(root.glob("workflows/*.nf")) + list(root.glob("subworkflows/**/*.nf")) + [root / "main.nf"]:
        for m in re.finditer(r"include\s*\{([^}]*)\}\s*from\s*'[./]*/?modules/(\w+)/main'", nf.read_text()):
            for item in m.group(1).split(";"):
                parts = item.split(" as ")
                out[parts[-1].strip()] = m.group(2)
    return out


# -------------------------------------------------------------------------------------------------- render
def _lookup(ctx: dict, expr: str):
    value = ctx
    for part in expr.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(f"${{{expr}}}: no value for {part!r}")
    return value


def render(template: str, ctx: dict) -> str:
    """Interpolate like a Groovy GString (simple references only) and strip the indentation like Nextflow."""

    def sub(m):
        expr = m.group(1).strip()
        if not _SIMPLE.match(expr):
            raise ValueError(f"${{{expr}}}: only simple references can be rendered outside Nextflow")
        value = _lookup(ctx, expr)
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value)
        return "" if value is None else str(value)

    text = _INTERP.sub(sub, template)
    if re.search(r"(?<!\\)\$(?!\{)", text.replace("\\$", "")):
        raise ValueError("unescaped $ in script: Groovy would interpolate it")
    return textwrap.dedent(text.replace("\\$", "$")).strip() + "\n"


def inline_sourced(script: str, root: Path = REPO) -> str:
    """The script with each `source NAME` / `. NAME` of a pipeline bin/ file replaced by that file's commands
    (comment lines dropped): what the task's shell runs, for checks that read a script. Not for running: a
    sourced file may refuse to run inlined."""

    def expand(m):
        f = root / "bin" / m.group(2)
        if not f.is_file():
            return m.group(0)
        body = [ln for ln in f.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        return "\n".join(m.group(1) + ln for ln in body)

    return re.sub(r"^([ \t]*)(?:source|\.)[ \t]+([\w.-]+)[ \t]*$", expand, script, flags=re.M)


def _eval_snippet(commands: list[str]) -> str:
    """What Nextflow appends to .command.sh for eval() outputs: each command run by `bash -c "..."` in the script's
    shell after the script (its exports apply), `"` escaped and nothing else, without -e/-u; here its stdout,
    stderr and exit status go to files instead of .command.env."""
    lines = ["", "# eval() outputs", "set +u", "set +e"]
    for i, cmd in enumerate(commands):
        escaped = cmd.replace('"', '\\"')
        lines += [
            f'bash -c "{escaped}" > .command.eval{i}.out 2> .command.eval{i}.err',
            f"echo $? > .command.eval{i}.exit",
        ]
    return "\n".join(lines) + "\n"


def _read_evals(module: Module, commands: list[str], workdir: Path) -> dict[str, str]:
    values = {}
    for i, cmd in enumerate(commands):
        status = (workdir / f".command.eval{i}.exit").read_text().strip()
        if status != "0":
            err = (workdir / f".command.eval{i}.err").read_text()
            raise AssertionError(f"{module.process}: eval({cmd!r}) exited {status} in {workdir}: {err[-2000:]}")
        values[cmd] = (workdir / f".command.eval{i}.out").read_text().strip("\n")  # read -d '' with IFS=\n
    return values


def check_outputs(module: Module, ctx: dict, workdir: Path, evals: dict[str, str] | None = None) -> dict[str, list]:
    """Glob each declared output (as Nextflow would) in the task folder; a missing required one raises.
    An output without a path (the versions tuple) gives one tuple of its vals and eval() results (`evals`:
    rendered command -> stdout, as run_task collects them)."""
    found = {}
    for out in module.outputs:
        if not out.pattern:
            values = []
            for e in out.elements:
                if e.kind == "eval":
                    values.append((evals or {})[render(e.name, ctx).strip()])
                elif e.kind == "val":
                    values.append(render(e.name, ctx).strip() if e.quoted else _lookup(ctx, e.name))
                else:
                    raise ValueError(f"{module.process}: output {out.emit}: {e.kind}() next to eval() is not supported")
            found[out.emit] = [tuple(values)]
            continue
        pattern = render(out.pattern, ctx).strip()
        hits = sorted(Path(p) for p in glob.glob(str(workdir / pattern), recursive=True))
        if not hits and not out.optional:
            listing = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if ".home" not in p.parts)
            raise AssertionError(f"{module.process}: declared output '{pattern}' missing in {workdir}; has {listing}")
        found[out.emit or pattern] = hits
    return found


def stage(workdir: Path, files, into: str | None = None) -> None:
    """Link input files into the task folder (Nextflow's default symlink staging; stageAs 'dir/*' -> into)."""
    target = workdir / into if into else workdir
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = target / Path(f).name
        if not link.exists():
            link.symlink_to(Path(f).resolve())


def run_task(module: Module, ctx: dict, workdir: Path, env: dict | None = None, stub: bool = False):
    """Render the module's script (or stub) with ctx, run it with bash -ue in workdir (with the eval() outputs'
    commands appended, as Nextflow does), check declared outputs."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = render(module.stub if stub else module.script, ctx)
    commands = [render(cmd, ctx).strip() for out in module.outputs for cmd in out.evals]
    if commands:
        script += _eval_snippet(commands)
    (workdir / ".command.sh").write_text("#!/bin/bash -ue\n" + script)
    proc = subprocess.run(
        ["bash", "-ue", ".command.sh"], cwd=workdir, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    (workdir / ".command.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise AssertionError(
            f"{module.process} failed ({proc.returncode}) in {workdir}:\n{script}\n{proc.stderr[-3000:]}"
        )
    return check_outputs(module, ctx, workdir, _read_evals(module, commands, workdir))


_EXT_DEFAULT = re.compile(r"""^task\.ext\.(\w+)\s*\?:\s*(?:"([^"]*)"|'([^']*)')$""")


def task_context(
    module: Module, meta: dict, inputs: dict, ext: dict | None = None, defs: dict | None = None, accelerator=None
) -> dict:
    """The variables a task's script sees: inputs, meta, task.*, and the script's `def`s.

    `task.ext.x ?: "default"` defs are evaluated here; any other def must be given in `defs` (the caller states
    what the Groovy expression yields for these inputs), so a def added to a module fails until it is handled.
    """
    ext = ext or {}
    ctx = {**inputs, "meta": meta, "task": {"process": module.process, "ext": ext, "accelerator": accelerator}}
    given = dict(defs or {})
    for name, expr in module.defs.items():
        if name in given:
            ctx[name] = given.pop(name)
            continue
        m = _EXT_DEFAULT.match(expr)
        if not m:
            raise KeyError(f"{module.process}: give a value for `def {name} = {expr}`")
        ctx[name] = ext.get(m.group(1)) or render(m.group(2) or m.group(3) or "", ctx).strip()
    if given:
        raise KeyError(f"{module.process}: defs {sorted(given)} are not in the module's script section")
    return ctx
