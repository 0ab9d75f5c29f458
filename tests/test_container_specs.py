"""The container specifications, checked without Docker (quick tier): one Dockerfile with a stage per family,
the families' extras and pins, and the `docker build` commands `containers/build.sh --dry-run` prints in the
public, --gpu and --offline modes. The images themselves run in tests/test_containers.py (docker tier)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from csrefiner.models.registry import BASE, ENTRIES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "containers"))
from images import FAMILIES, STEPS, images  # noqa: E402

IMAGES = images()


def test_images_are_named_in_one_place():
    """conf/containers.config names exactly the families containers/images.py builds, each the last stage of the
    one Dockerfile, and build.sh builds from it."""
    assert set(IMAGES) == set(FAMILIES) == set(STEPS)
    assert not list((REPO / "containers").glob("*/Dockerfile")), "one Dockerfile: containers/Dockerfile"
    stages = re.findall(r"^FROM runtime AS (\w+)\s*$", (REPO / "containers" / "Dockerfile").read_text(), re.M)
    assert sorted(stages) == sorted(FAMILIES)
    assert "containers/images.py" in (REPO / "containers" / "build.sh").read_text()


def test_each_image_installs_its_backends_extras():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for family, spec in FAMILIES.items():
        assert set(spec.extras) <= set(extras), family
        assert (REPO / spec.constraints).is_file(), family
        assert spec.framework in ("", "torch", "tensorflow"), family
    for e in ENTRIES:
        assert e.extra == BASE or e.extra in FAMILIES[e.image].extras, f"{e.name}: [{e.extra}] not in image {e.image}"


def _dry_run(*flags: str) -> dict[str, list[str]]:
    """{tag: docker build arguments} that `build.sh --dry-run` prints (no daemon, nothing built)."""
    out = subprocess.run(
        [str(REPO / "containers" / "build.sh"), "--dry-run", *flags], capture_output=True, text=True, check=True
    ).stdout
    commands = [shlex.split(line) for line in out.splitlines() if line.startswith("docker build ")]
    return {cmd[cmd.index("-t") + 1]: cmd for cmd in commands}


def _build_args(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, word in enumerate(cmd) if word == "--build-arg")


@pytest.mark.parametrize("flags", [(), ("--gpu",), ("--offline",)])
def test_build_commands(flags):
    """Every mode builds every image from containers/Dockerfile with its family's arguments, its deps stage first
    with the same arguments and its own tag (the layer cache that pruning superseded images keeps)."""
    commands = _dry_run(*flags)
    assert sorted(commands) == sorted([*IMAGES.values(), *(f"{ref}-deps" for ref in IMAGES.values())])
    for family, ref in IMAGES.items():
        cmd, deps = commands[ref], commands[f"{ref}-deps"]
        for c in (cmd, deps):
            assert c[:4] == ["docker", "build", "-f", "containers/Dockerfile"] and c[-1] == "."
        assert cmd[cmd.index("--target") + 1] == family and deps[deps.index("--target") + 1] == "deps"
        args = _build_args(cmd)
        assert _build_args(deps) == args
        spec = FAMILIES[family]
        assert args["EXTRAS"] == ",".join(spec.extras) and args["CONSTRAINTS"] == spec.constraints
        assert args["FRAMEWORK"] == spec.framework and args["CHECK"] == spec.check
        assert args["GPU"] == ("1" if "--gpu" in flags else "0")
        offline = "--offline" in flags
        assert ("--network" in cmd) == offline and ("BASE" in args) == offline
        assert args.get("PIP_ARGS") == ("--no-index --find-links /wheels" if offline else None)
