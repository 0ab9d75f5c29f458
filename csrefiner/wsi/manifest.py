"""The tile manifest: everything `stitch` needs to know about a tiled slide, as deterministic JSON.

No timestamps or absolute temporary paths: the same slide and options give byte-identical manifests, so a
workflow manager (Nextflow -resume) sees unchanged inputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.io import safe_name, write_text
from csrefiner.io.frames import check_pixel_size
from csrefiner.wsi.tiling import Tile, check_plan, plan_tiles

FORMAT = "csrefiner-tiles"
VERSION = 1


@dataclass(frozen=True)
class Manifest:
    slide: str  # slide name: prefix of every tile's sample key
    source: str  # the slide file as given to `csrefiner tile`
    shape: tuple[int, int]  # (H, W)
    dtype: str
    channels: int  # 1 grey, 3 RGB
    tile_size: int
    overlap: int
    pixel_size_um: float | None = None  # from the slide or --pixel-size; None when unknown

    @cached_property
    def tiles(self) -> list[Tile]:
        return plan_tiles(self.shape, self.tile_size, self.overlap)

    def key(self, tile: Tile) -> str:
        return tile.key(self.slide)

    def image_name(self, tile: Tile) -> str:
        return f"{self.key(tile)}-img.tif"

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "slide": self.slide,
            "source": self.source,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "channels": self.channels,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "pixel_size_um": self.pixel_size_um,
            "tiles": [
                {
                    "id": t.id,
                    "row": t.row,
                    "col": t.col,
                    "x": t.x,
                    "y": t.y,
                    "w": t.w,
                    "h": t.h,
                    "key": self.key(t),
                    "image": self.image_name(t),
                }
                for t in self.tiles
            ],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """JSON with one line per tile (readable and diffable for thousands of tiles)."""
        data = self.to_dict()
        tiles = data.pop("tiles")
        head = json.dumps(data, indent=1)[:-2]
        body = ",\n".join("  " + json.dumps(t) for t in tiles)
        return write_text(path, f'{head},\n "tiles": [\n{body}\n ]\n}}\n')

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        path = Path(path)
        if not path.is_file():
            raise CsrefinerError(f"{path}: no such manifest; `csrefiner tile` writes manifest.json next to the tiles")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CsrefinerError(f"{path}: not valid JSON ({exc}); re-run `csrefiner tile` to rewrite it") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CsrefinerError(f"{source}: not a csrefiner tile manifest (format != {FORMAT!r})")
        try:
            manifest = cls(
                slide=str(data["slide"]),
                source=str(data["source"]),
                shape=(int(data["shape"][0]), int(data["shape"][1])),
                dtype=str(data["dtype"]),
                channels=int(data["channels"]),
                tile_size=int(data["tile_size"]),
                overlap=int(data["overlap"]),
                pixel_size_um=check_pixel_size(data.get("pixel_size_um"), f"{source}: pixel_size_um"),
            )
            listed = [(int(t["id"]), int(t["x"]), int(t["y"]), int(t["w"]), int(t["h"])) for t in data["tiles"]]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CsrefinerError(f"{source}: missing or malformed field ({exc!r}); re-run `csrefiner tile`") from exc
        check_plan(manifest.shape, manifest.tile_size, manifest.overlap, source, min_size=1)  # before listing tiles
        safe_name(manifest.slide, f"{source}: slide name")  # tile file names are built from it
        expected = [(t.id, t.x, t.y, t.w, t.h) for t in manifest.tiles]
        if listed != expected:
            raise CsrefinerError(
                f"{source}: its {len(listed)} tiles do not form the grid of a {manifest.shape[0]}x{manifest.shape[1]} "
                f"slide with tile size {manifest.tile_size} and overlap {manifest.overlap} ({len(expected)} tiles); "
                "the manifest was edited or truncated: re-run `csrefiner tile`"
            )
        return manifest
