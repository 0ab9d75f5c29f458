"""Line up the predictions of several models for the same tiles (paired by sample key, as everywhere)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrefiner.errors import CsrefinerError
from csrefiner.io import list_images, read_labels
from csrefiner.io.pairing import index_by_key, role


@dataclass(frozen=True)
class Tile:
    key: str
    paths: tuple[Path, ...]  # one prediction per model, in --pred order


def _predictions(folder: Path) -> dict[str, Path]:
    # A CSRefiner folder may hold -img files next to the masks: only masks are predictions.
    return index_by_key([p for p in list_images(folder) if role(p) != "img"], str(folder))


def align_predictions(folders: Sequence[str | os.PathLike], skip_missing: bool = False) -> tuple[list[Tile], list[str]]:
    """Tiles present in every folder, plus one message per tile left out (only with skip_missing).

    A tile missing from some folder is an error by default: fusing fewer models there would silently change
    what a vote means.
    """
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise CsrefinerError("give at least two --pred folders (one per model) to compare or fuse")
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) < len(resolved):
        raise CsrefinerError(f"the same folder is given twice among --pred {', '.join(map(str, folders))}")
    index = [_predictions(f) for f in folders]
    every = set.union(*(set(i) for i in index))
    common = set.intersection(*(set(i) for i in index))
    notes = []
    for folder, idx in zip(folders, index):
        missing = sorted(every - set(idx))
        if not missing:
            continue
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        if not skip_missing:
            raise CsrefinerError(
                f"{folder}: no prediction for {len(missing)} tile(s) that other --pred folders have: {shown}; "
                "predict every tile with every model, or pass --skip-missing to use only the common tiles"
            )
        notes += [f"tile {k}: no prediction in {folder}; skipped" for k in missing]
    if not common:
        raise CsrefinerError(f"no tile is predicted in all of {', '.join(map(str, folders))}; check the file names")
    return [Tile(k, tuple(idx[k] for idx in index)) for k in sorted(common)], sorted(set(notes))


def load_tile(tile: Tile) -> list[np.ndarray]:
    """The uint32 label masks of one tile; all models must agree on its shape."""
    stack = [read_labels(p) for p in tile.paths]
    shapes = {s.shape for s in stack}
    if len(shapes) > 1:
        listed = ", ".join(f"{p} {s.shape}" for p, s in zip(tile.paths, stack))
        raise CsrefinerError(f"tile {tile.key}: predictions differ in shape ({listed}); predict the same tile size")
    return stack


def image_index(folder: str | os.PathLike) -> dict[str, Path]:
    """Images of a tile folder by sample key (`<key>-img.tif` or plain `<key>.tif`; masks are ignored)."""
    return index_by_key([p for p in list_images(folder) if role(p) != "mask"], f"{folder} (images)")


def tile_image(images: dict[str, Path], tile: Tile, shape: tuple[int, int], folder) -> np.ndarray:
    from csrefiner.io import read_image

    if tile.key not in images:
        raise CsrefinerError(
            f"{folder}: no image for tile {tile.key} (looked for {tile.key}-img.tif or {tile.key}.tif)"
        )
    image = read_image(images[tile.key])
    if image.shape[:2] != shape:
        raise CsrefinerError(
            f"{images[tile.key]}: image is {image.shape[:2]} but the predictions of tile {tile.key} are {shape}"
        )
    return image
