#!/usr/bin/env python3
"""The pipeline's container images: their names (read from conf/containers.config, the one place they are written)
and how each family is built from the one containers/Dockerfile (FAMILIES below, the one place that says it).

    python3 containers/images.py                          `family image` lines, one per image
    python3 containers/images.py args FAMILY              the family's `docker build` arguments, one per line
    python3 containers/images.py requirements FAMILY      its pip requirements (core dependencies + extras)
    python3 containers/images.py constraints FAMILY       its pins file

containers/build.sh and tests/test_containers.py use it. Standard library only (build.sh runs it with the host's
python3 before any venv exists).
"""

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^\s*container_(\w+)\s*=\s*'([^']+)'", re.M)


@dataclass(frozen=True)
class Family:
    extras: tuple[str, ...]  # pyproject.toml extras beside the core dependencies
    framework: str = ""  # torch | tensorflow | "": what `build.sh --gpu` swaps for its CUDA build
    check: str = ""  # Python the build runs in the finished venv (the frameworks import)
    constraints: str = "constraints.txt"

    def build_args(self, family: str) -> list[str]:
        """`docker build` arguments (beside BASE, GPU and PIP_ARGS, which the build mode sets)."""
        args = ["--target", family]
        values = {
            "EXTRAS": ",".join(self.extras),
            "CONSTRAINTS": self.constraints,
            "FRAMEWORK": self.framework,
            "CHECK": self.check,
        }
        for key, value in values.items():
            args += ["--build-arg", f"{key}={value}"]
        return args


# One row per image family; the Dockerfile's last stage of the same name adds the family's environment.
# The backend registry (csrefiner/models/registry.py) says which family runs each backend.
FAMILIES = {
    "base": Family(("cgef",)),
    "cellpose": Family(("cellpose",), "torch", "import torch, cellpose; print('torch', torch.__version__)"),
    "cellvit": Family(
        ("cellvit",), "torch", "import torch, csrefiner.models.backends.cellvit; print('torch', torch.__version__)"
    ),
    # cellpose 4 and cellpose 3 are the same package with incompatible weights: own image, own pins.
    "cpsam": Family(
        ("cpsam",),
        "torch",
        "from csrefiner.models.backends.cpsam import cellpose4; import torch; cellpose4(); "
        "from cellpose.vit import CPSAM; print('torch', torch.__version__, 'cellpose 4 ok')",
        constraints="constraints-cpsam.txt",
    ),
    # CellBin (BCDU-Net in Keras) needs nothing beyond the stardist extra.
    "stardist": Family(
        ("stardist",), "tensorflow", "import stardist, tensorflow as tf; print('tensorflow', tf.__version__)"
    ),
}

# What each image must run (csrefiner subcommands), checked by the docker tier.
STEPS = {
    "base": ["synth", "tile", "crop", "stitch", "evaluate", "consensus", "suggest", "cgef", "segment", "demo"],
    "cellpose": ["synth", "finetune", "segment"],
    "cellvit": ["synth", "finetune", "segment"],
    "cpsam": ["synth", "finetune", "segment"],
    "stardist": ["synth", "finetune", "segment"],
}


def images(config: Path = REPO / "conf" / "containers.config") -> dict[str, str]:
    """{family: image reference} for every container_<family> param except the registry."""
    found = {fam: ref for fam, ref in _LINE.findall(config.read_text()) if fam != "registry"}
    missing = [fam for fam in found if fam not in FAMILIES]
    if missing:
        raise SystemExit(f"conf/containers.config names images that containers/images.py cannot build: {missing}")
    return found


def requirements(family: str, pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """What the image installs (the Dockerfile reads pyproject.toml the same way)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"] + [req for extra in FAMILIES[family].extras for req in extras[extra]]


def main(argv: list[str]) -> int:
    if not argv:
        for family, ref in images().items():
            print(family, ref)
        return 0
    if len(argv) != 2 or argv[0] not in ("args", "requirements", "constraints") or argv[1] not in FAMILIES:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    command, family = argv
    if command == "args":
        lines = FAMILIES[family].build_args(family)
    elif command == "requirements":
        lines = requirements(family)
    else:
        lines = [FAMILIES[family].constraints]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
