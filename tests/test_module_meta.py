"""Every module has an nf-core style meta.yml beside its main.nf, and it describes the process as declared: the
same input channels and elements, the same emits (in order) with the same elements, the same topics, and the
tool its versions output reports. Both files are parsed; nothing about a module is written here, so adding or
changing a channel without its meta.yml fails. A broken copy proves the check sees each kind of mismatch."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from nf_modules import REPO, Channel, channels

MODULE_DIRS = sorted(p.parent for p in (REPO / "modules").glob("*/main.nf"))
TOP_KEYS = ["name", "description", "keywords", "tools", "input", "output", "authors", "maintainers"]
PATH_TYPES = {"file", "directory"}


def _yaml_channel(entry) -> list[tuple[str, dict]]:
    """A meta.yml channel (a list of single-key maps for a tuple, one single-key map otherwise) as (name, spec).
    nf-core names an element by its variable (`meta`, `mask`) or by its quoted text (`"${prefix}.h5ad"`,
    `"${task.process}"`, the eval command), which is what nf_modules.channels gives as Element.name."""
    items = entry if isinstance(entry, list) else [entry]
    out = []
    for item in items:
        if not (isinstance(item, dict) and len(item) == 1):
            raise ValueError(f"an element is one `name: {{type, description, ...}}` map, not {item!r}")
        ((name, spec),) = item.items()
        out.append((str(name), spec or {}))
    return out


def _type_problems(where: str, declared: Channel, described: list[tuple[str, dict]]) -> list[str]:
    problems = []
    for e, (name, spec) in zip(declared.elements, described):
        kind = spec.get("type")
        if not spec.get("description"):
            problems.append(f"{where} {name}: no description")
        if e.kind == "val" and e.name == "meta":
            ok, want = kind == "map", "map"
        elif e.kind in ("path", "file"):
            ok, want = kind in PATH_TYPES, "file or directory"
            if "pattern" not in spec:
                problems.append(f"{where} {name}: a path needs a pattern")
        elif e.kind == "eval":
            ok, want = kind == "eval", "eval"
        else:
            ok, want = bool(kind) and kind not in PATH_TYPES | {"map", "eval"}, f"a value type for {e.kind}()"
        if not ok:
            problems.append(f"{where} {name}: type {kind!r}, expected {want}")
    return problems


def header_problems(module_dir: Path) -> list[str]:
    meta = yaml.safe_load((module_dir / "meta.yml").read_text())
    problems = [f"meta.yml lacks {k}" for k in TOP_KEYS if k not in meta]
    if problems:
        return problems
    if meta["name"] != module_dir.name:
        problems.append(f"name {meta['name']!r} is not the folder's {module_dir.name!r}")
    if not (isinstance(meta["keywords"], list) and len(meta["keywords"]) >= 3):
        problems.append("nf-core asks for 3 or more keywords")
    tools = {name: spec or {} for t in meta["tools"] for name, spec in t.items()}
    for name, spec in tools.items():
        problems += [f"tools.{name}.{f} is missing" for f in ("description", "homepage", "licence") if not spec.get(f)]
        if spec.get("homepage") and not re.match(r"https?://", spec["homepage"]):
            problems.append(f"tools.{name}.homepage is not a URL")
    versions = [
        c for c in channels((module_dir / "main.nf").read_text(), "output") if c.options.get("emit") == "versions"
    ]
    if len(versions) != 1:
        problems.append("main.nf: one `versions` output expected")
    else:  # the tool the versions output names (its quoted, non-template val) is one of the tools described
        reported = [e.name for e in versions[0].elements if e.kind == "val" and e.quoted and "$" not in e.name]
        if not reported or not set(reported) <= set(tools):
            problems.append(f"versions report {reported}, meta.yml tools are {sorted(tools)}")
    for people in ("authors", "maintainers"):
        if not (meta[people] and all(str(p).startswith("@") for p in meta[people])):
            problems.append(f"{people}: a list of @handles")
    return problems


def input_problems(module_dir: Path) -> list[str]:
    declared = channels((module_dir / "main.nf").read_text(), "input")
    described = yaml.safe_load((module_dir / "meta.yml").read_text()).get("input") or []
    if len(described) != len(declared):
        return [f"main.nf declares {len(declared)} input channels, meta.yml describes {len(described)}"]
    problems = []
    for i, (ch, entry) in enumerate(zip(declared, described), start=1):
        items = _yaml_channel(entry)
        names, want = [n for n, _ in items], [e.name for e in ch.elements]
        if names != want:
            problems.append(f"input {i} is {want} in main.nf, {names} in meta.yml")
            continue
        if isinstance(entry, list) != (len(ch.elements) > 1):
            problems.append(f"input {i}: a tuple is a list of elements, a single element is not")
        problems += _type_problems(f"input {i}", ch, items)
    return problems


def output_problems(module_dir: Path) -> list[str]:
    declared = channels((module_dir / "main.nf").read_text(), "output")
    meta = yaml.safe_load((module_dir / "meta.yml").read_text())
    described = meta.get("output") or {}
    emits = [c.options.get("emit", "") for c in declared]
    if not all(emits):
        return ["every output needs an emit: name (nf-core)"]
    if list(described) != emits:
        return [f"emits {emits} in main.nf, {list(described)} in meta.yml"]
    problems = []
    for ch in declared:
        emit = ch.options["emit"]
        entry = described[emit]
        if not (isinstance(entry, list) and len(entry) == 1):
            problems.append(f"output {emit}: one channel, a list of one")
            continue
        items = _yaml_channel(entry[0])
        names, want = [n for n, _ in items], [e.name for e in ch.elements]
        if names != want:
            problems.append(f"output {emit} is {want} in main.nf, {names} in meta.yml")
            continue
        problems += _type_problems(f"output {emit}", ch, items)
    topics: dict[str, list[list[str]]] = {}
    for ch in declared:
        if "topic" in ch.options:
            topics.setdefault(ch.options["topic"], []).append([e.name for e in ch.elements])
    described_topics = {
        name: [[n for n, _ in _yaml_channel(c)] for c in chans] for name, chans in (meta.get("topics") or {}).items()
    }
    if described_topics != topics:
        problems.append(f"topics {topics} in main.nf, {described_topics} in meta.yml")
    return problems


def missing_meta(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / "modules").glob("*/main.nf") if not (p.parent / "meta.yml").is_file())


def test_every_module_has_meta_yml():
    assert len(MODULE_DIRS) == 14
    assert not missing_meta(REPO), (
        f"modules without meta.yml (nf-core layout: main.nf + meta.yml): {missing_meta(REPO)}"
    )


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=[d.name for d in MODULE_DIRS])
def test_meta_yml_matches_process(module_dir):
    problems = header_problems(module_dir) + input_problems(module_dir) + output_problems(module_dir)
    assert not problems, f"modules/{module_dir.name}:\n" + "\n".join(problems)


def test_checker_catches_broken_copies(tmp_path):
    """A renamed input, a new emit, a dropped topic, a wrong type, a versions tool not among the tools and a
    module without meta.yml are each reported."""
    shutil.copytree(REPO / "modules" / "cgef", tmp_path / "modules" / "cgef")
    shutil.copytree(REPO / "modules" / "tile", tmp_path / "modules" / "tile")
    (tmp_path / "modules" / "tile" / "meta.yml").unlink()
    cgef = tmp_path / "modules" / "cgef"
    text = (cgef / "main.nf").read_text()
    for old, new in [
        ("path(matrix)", "path(gem)"),
        ("emit: h5ad\n", 'emit: h5ad\n    tuple val(meta), path("x.csv"), emit: extra\n'),
        (", topic: versions", ""),
        ("val('csrefiner')", "val('csrefiner2')"),
    ]:
        assert old in text, f"test needs updating: {old!r} not in modules/cgef/main.nf"
        text = text.replace(old, new, 1)
    (cgef / "main.nf").write_text(text)
    meta = (cgef / "meta.yml").read_text()
    assert "type: map" in meta
    (cgef / "meta.yml").write_text(meta.replace("type: map", "type: file", 1))

    assert missing_meta(tmp_path) == ["tile"]
    report = header_problems(cgef) + input_problems(cgef) + output_problems(cgef)
    text = "\n".join(report)
    assert "versions report ['csrefiner2']" in text, text
    assert "input 1 is ['meta', 'mask', 'gem'] in main.nf, ['meta', 'mask', 'matrix'] in meta.yml" in text, text
    assert "emits ['gef', 'h5ad', 'extra', 'versions'] in main.nf" in text, text

    # one fault at a time where an earlier one would hide it
    (cgef / "main.nf").write_text((REPO / "modules" / "cgef" / "main.nf").read_text().replace(", topic: versions", ""))
    assert any(p.startswith("topics {} in main.nf") for p in output_problems(cgef)), output_problems(cgef)
    (cgef / "main.nf").write_text((REPO / "modules" / "cgef" / "main.nf").read_text())
    assert input_problems(cgef) == ["input 1 meta: type 'file', expected map"], input_problems(cgef)
