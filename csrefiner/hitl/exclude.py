"""Patches already annotated, so `suggest` never proposes them (or any window overlapping them) again.

Annotated patches are named `<slide>-x{X}_y{Y}_w{W}_h{H}` (what `suggest` writes); a window is excluded when it
lies on the same slide and its rectangle shares at least one pixel with an excluded patch. Sources: folders of
annotated patches (`--exclude`, every image in them) and lists of names, one per line (`--exclude-list`;
blank lines and `#` comments ignored; file suffixes such as `-img.tif` are allowed).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.io import SlideCoords, list_images, parse_coords, sample_key


def overlaps(a: SlideCoords, b: SlideCoords) -> bool:
    """Same slide and a rectangle intersection of more than zero pixels."""
    return a.slide == b.slide and a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def coords_of(name: str, source: str) -> SlideCoords:
    coords = parse_coords(name)
    if coords is None:
        raise CsrefinerError(
            f"{source}: patch '{name}' carries no slide coordinates; exclusions need names like "
            "<slide>-x512_y256_w256_h256 (as `suggest` writes them)"
        )
    return coords


@dataclass
class Exclusion:
    """Excluded patches by slide (a few hundred at most: a linear scan per window is enough)."""

    by_slide: dict[str, list[tuple[str, SlideCoords]]] = field(default_factory=lambda: defaultdict(list))
    sources: list[str] = field(default_factory=list)

    def add(self, names: Iterable[str], source: str) -> None:
        for name in names:
            key = sample_key(name)
            self.by_slide[coords_of(key, source).slide].append((key, coords_of(key, source)))
        self.sources.append(source)

    @property
    def names(self) -> list[str]:
        return sorted({k for items in self.by_slide.values() for k, _ in items})

    def hit(self, window: SlideCoords) -> str | None:
        """The first excluded patch that `window` overlaps, or None."""
        for key, c in self.by_slide.get(window.slide, ()):
            if overlaps(window, c):
                return key
        return None


def read_name_list(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise CsrefinerError(f"{path}: no such file; give a text file of patch names, one per line")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def folder_names(folder: str | os.PathLike) -> list[str]:
    return sorted({sample_key(p) for p in list_images(folder)})


def exclusion(
    folders: Sequence[str | os.PathLike] = (),
    lists: Sequence[str | os.PathLike] = (),
    names: Iterable[str] = (),
    source: str = "excluded names",
) -> Exclusion:
    """All excluded patches of folders, list files and plain names."""
    out = Exclusion()
    for folder in folders:
        out.add(folder_names(folder), str(folder))
    for path in lists:
        out.add(read_name_list(path), str(path))
    names = list(names)
    if names:
        out.add(names, source)
    return out
