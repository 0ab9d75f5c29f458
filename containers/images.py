#!/usr/bin/env python3
"""The pipeline's container images, read from conf/containers.config (the one place they are named).

`python3 containers/images.py` prints `family image` lines (family = folder under containers/ with the
Dockerfile); containers/build.sh and tests/test_containers.py use it. Standard library only.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^\s*container_(\w+)\s*=\s*'([^']+)'", re.M)

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
    missing = [fam for fam in found if not (REPO / "containers" / fam / "Dockerfile").is_file()]
    if missing:
        raise SystemExit(f"conf/containers.config names images without containers/<family>/Dockerfile: {missing}")
    return found


if __name__ == "__main__":
    for family, ref in images().items():
        print(family, ref)
