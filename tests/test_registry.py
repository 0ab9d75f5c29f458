"""The backend registry (csrefiner/models/registry.py) is the one list of backends: the Python code reads it, and
the pipeline's copies (Groovy, JSON schema, container config), the images and docs/backends.md agree with it.

A difference is named file by file and backend by backend (`python -m csrefiner.models.registry --check`), and
`--write` regenerates the pipeline's copies. Static: imports no framework, needs no Docker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from csrefiner.models import backend_names, get_backend
from csrefiner.models import registry_files as rf
from csrefiner.models.registry import BACKENDS, ENTRIES, trainable

REPO = Path(__file__).resolve().parents[1]
FILES = [
    rf.GROOVY,
    rf.CONTAINERS,
    rf.SCHEMA,
    rf.DOCS,
    rf.PYPROJECT,
    rf.IMAGES,
]


def test_pipeline_images_and_docs_agree_with_the_registry():
    problems = rf.check(REPO)
    assert not problems, "run `python -m csrefiner.models.registry --write` (and fix the rest by hand):\n" + "\n".join(
        problems
    )


def test_every_backend_is_its_registry_entry():
    assert backend_names() == [e.name for e in ENTRIES]
    for e in ENTRIES:
        backend = get_backend(e.name)
        assert backend.name == e.name and backend.entry is e
        assert backend.default_pretrained == e.default_pretrained and backend.extra == e.extra
        frameworks = {"torch", "tensorflow"} & set(backend.requires)
        assert e.gpu == bool(frameworks), f"{e.name}: gpu={e.gpu} but it requires {backend.requires}"
        if e.trainable:  # the default answers to the backend's own names (segment --model NAME finds it)
            assert e.default_pretrained in backend.known_names, (e.name, e.default_pretrained, backend.known_names)


def test_cpsam_default_is_cellpose4s_current_model():
    """The drift this registry removed: the pipeline defaulted cpsam to 'cpsam', Python and the docs to 'cpsam_v2'."""
    from csrefiner.models.backends.cpsam import BUILTIN

    assert BACKENDS["cpsam"].default_pretrained == BUILTIN[0] == "cpsam_v2"
    assert "cpsam: 'cpsam_v2'" in (REPO / rf.GROOVY).read_text()


def test_generated_text_matches_the_registry():
    groovy = "\n".join(rf.groovy_block())
    for e in trainable():
        assert f"{e.name}: '{e.default_pretrained}'" in groovy
    assert "watershed" not in groovy
    containers = "\n".join(rf.containers_block())
    assert "meta.backend == 'stardist' || meta.backend == 'cellbin' ? params.container_stardist" in containers
    assert containers.count("params.container_base") == 1  # watershed: the fallback
    schema = json.loads((REPO / rf.SCHEMA).read_text())
    pattern = schema["$defs"]["finetune_options"]["properties"]["models"]["pattern"]
    assert pattern == rf.models_pattern()


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found (test needs updating)"
    path.write_text(text.replace(old, new, 1))


def test_check_names_each_drift_and_write_repairs_the_generated_ones(tmp_path):
    root = _copy(tmp_path)
    _edit(root / rf.GROOVY, "cpsam: 'cpsam_v2'", "cpsam: 'cpsam'")  # old drift
    _edit(root / rf.GROOVY, "'stardist', 'cellbin']", "'stardist']")  # dropped
    _edit(
        root / rf.CONTAINERS,
        "meta.backend == 'cellvit' ? params.container_cellvit\n",
        "meta.backend == 'cellvit' ? params.container_cellpose\n",
    )  # wrong image
    schema = root / rf.SCHEMA
    _edit(schema, "^(cellpose|cellvit|", "^(cellpose|watershed|")  # schema
    _edit(schema, '"default": "csrefiner/cpsam:0.1.0"', '"default": "csrefiner/cpsam:0.0.9"')
    _edit(root / rf.DOCS, "| `cpsam_v2` |", "| `cpsam` |")  # docs
    _edit(root / rf.IMAGES, '"cellvit": ["synth", "finetune", "segment"]', '"cellvit": ["synth", "segment"]')
    _edit(root / rf.IMAGES, '"cpsam": Family(', '"cpsam_renamed": Family(')
    problems = rf.check(root)
    report = "\n".join(problems)

    def has(*words: str) -> bool:
        return any(all(w in p for w in words) for p in problems)

    assert has(rf.GROOVY, "cpsam is 'cpsam'", "'cpsam_v2'"), report
    assert has(rf.GROOVY, "does not accept backend cellbin"), report
    assert has(rf.CONTAINERS, "backend cellvit run in container_cellpose", "container_cellvit"), report
    assert has(rf.SCHEMA, "does not allow backend cellvit"), report
    assert has(rf.SCHEMA, "allows 'watershed'"), report
    assert has(rf.SCHEMA, "container_cpsam default", "0.0.9"), report
    assert has(rf.DOCS, "default pretrained of cpsam is `cpsam`"), report
    assert has(rf.IMAGES, "STEPS['cellvit'] lacks finetune"), report
    assert has(rf.IMAGES, "FAMILIES lacks 'cpsam'"), report
    assert len(problems) == 9, report

    rf.write(root)
    left = rf.check(root)
    # the generated copies are repaired; the hand-written facts are still named
    assert not [p for p in left if p.startswith((rf.GROOVY, rf.CONTAINERS)) or "--models pattern" in p], left
    assert len(left) == 4, left
    assert "cpsam: 'cpsam_v2'" in (root / rf.GROOVY).read_text()


def test_check_without_markers_says_so(tmp_path):
    root = _copy(tmp_path)
    _edit(root / rf.CONTAINERS, rf.END, "// the end")
    assert any("no generated block" in p for p in rf.check(root))
    with pytest.raises(SystemExit, match="no generated block"):
        rf.write(root)


def test_module_runs_as_a_command(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "csrefiner.models.registry", "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert ok.returncode == 0 and ok.stdout == ok.stderr == "", ok.stdout + ok.stderr  # (no runpy warning either)
    root = _copy(tmp_path)
    _edit(root / rf.GROOVY, "cpsam: 'cpsam_v2'", "cpsam: 'cpsam'")
    bad = subprocess.run(
        [sys.executable, "-m", "csrefiner.models.registry", "--check", "--repo", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 1 and "the registry says 'cpsam_v2'" in bad.stdout
    fixed = subprocess.run(
        [sys.executable, "-m", "csrefiner.models.registry", "--write", "--repo", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert fixed.returncode == 0 and f"rewrote {rf.GROOVY}" in fixed.stdout, fixed.stdout + fixed.stderr
