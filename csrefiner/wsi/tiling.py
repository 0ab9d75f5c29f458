"""The tile grid of a whole slide: where tiles start, how they overlap, which pixels each tile owns.

Tiles start every `tile_size - overlap` pixels from 0; the last tile of a row or column stops at the slide
edge (ragged, never padded) as soon as the previous tile does not reach it, so it is always wider than the
overlap. Two neighbours share exactly `overlap` pixels. The *core* of a tile is the part of the slide it owns:
the shared strip is cut in the middle, so the cores partition the slide and every pixel has one owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from csrefiner.errors import CsrefinerError
from csrefiner.io import patch_name

MIN_TILE = 64  # smaller tiles hold no whole nucleus next to their overlap
MAX_TILES = 100_000  # a plan beyond this is a wrong unit or option, not a slide (a 2 cm chip at 2048 px: ~2,500)


def check_grid(tile_size: int, overlap: int, source: str = "tile grid") -> None:
    if tile_size < 1:
        raise CsrefinerError(f"{source}: tile size {tile_size} must be a positive number of pixels")
    if overlap < 0 or overlap >= tile_size:
        raise CsrefinerError(
            f"{source}: overlap {overlap} must be >= 0 and smaller than the tile size {tile_size}; "
            "use an overlap of about twice the cell diameter and a tile several times larger"
        )


def axis_count(length: int, tile_size: int, overlap: int) -> int:
    """len(axis_starts(...)) without listing them (a plan may be absurdly large)."""
    return 1 if length <= tile_size else 1 + -(-(length - tile_size) // (tile_size - overlap))


def check_plan(
    shape: tuple[int, int], tile_size: int, overlap: int, source: str, what: str = "tiles", min_size: int = MIN_TILE
) -> None:
    """Refuse, before any work, a grid that cannot be meant: tiles below `min_size` or more than MAX_TILES."""
    check_grid(tile_size, overlap, source)
    n = axis_count(int(shape[0]), tile_size, overlap) * axis_count(int(shape[1]), tile_size, overlap)
    if tile_size < min_size or n > MAX_TILES:
        raise CsrefinerError(
            f"{source}: size {tile_size} with overlap {overlap} cuts the {shape[0]} x {shape[1]} image into {n:,} "
            f"{what}; use a size >= {min_size} px that gives at most {MAX_TILES:,} {what}"
        )


def axis_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Tile starts along one axis: every `tile_size - overlap`, until a tile reaches the end."""
    check_grid(tile_size, overlap)
    stride = tile_size - overlap
    starts = [0]
    while starts[-1] + tile_size < length:
        starts.append(starts[-1] + stride)
    return starts


def axis_cores(starts: list[int], length: int, tile_size: int) -> list[tuple[int, int]]:
    """[begin, end) owned by each tile along an axis: shared strips are split at their middle."""
    cuts = [0]
    for prev, nxt in zip(starts, starts[1:]):
        shared = prev + tile_size - nxt
        cuts.append(nxt + shared // 2)
    cuts.append(length)
    return list(zip(cuts[:-1], cuts[1:]))


@dataclass(frozen=True)
class Tile:
    id: int
    row: int
    col: int
    x: int
    y: int
    w: int
    h: int
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 in slide coordinates
    edges: tuple[bool, bool, bool, bool]  # top, bottom, left, right edge is interior (a neighbour lies there)

    def key(self, slide: str) -> str:
        return patch_name(slide, self.x, self.y, self.w, self.h)

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)

    @property
    def local_core(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core
        return slice(y0 - self.y, y1 - self.y), slice(x0 - self.x, x1 - self.x)


def plan_tiles(shape: tuple[int, int], tile_size: int, overlap: int) -> list[Tile]:
    """All tiles of an (H, W) slide in row-major order (ids 0..n-1)."""
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise CsrefinerError(f"tile grid: slide shape {shape} has no pixels")
    ys, xs = axis_starts(h, tile_size, overlap), axis_starts(w, tile_size, overlap)
    y_cores, x_cores = axis_cores(ys, h, tile_size), axis_cores(xs, w, tile_size)
    tiles = []
    for r, (y, yc) in enumerate(zip(ys, y_cores)):
        for c, (x, xc) in enumerate(zip(xs, x_cores)):
            tiles.append(
                Tile(
                    id=len(tiles),
                    row=r,
                    col=c,
                    x=x,
                    y=y,
                    w=min(tile_size, w - x),
                    h=min(tile_size, h - y),
                    core=(yc[0], yc[1], xc[0], xc[1]),
                    edges=(r > 0, r < len(ys) - 1, c > 0, c < len(xs) - 1),
                )
            )
    return tiles


def grid_size(tiles: list[Tile]) -> tuple[int, int]:
    return max(t.row for t in tiles) + 1, max(t.col for t in tiles) + 1
