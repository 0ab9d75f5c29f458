"""Stitch per-tile instance masks into one uint32 label image with no cell cut or doubled at a seam.

Ownership rule (what `csrefiner stitch` guarantees):

1. Every tile's objects are compared with the left and upper neighbour's objects inside the strip the two
   tiles share; views whose IoU there exceeds `min_iou` (0.5) are the same object. Matches chain across
   seams (connected components), so an object spread over many tiles becomes one group.
2. A group seen *whole* by some tile (not touching an interior tile edge) is painted entirely from one such
   view: the tile whose core contains the object's anchor (bounding-box centre), else the whole view with
   the widest margin to an interior edge when the anchor's tile saw the object too (cut, as happens to cells
   larger than half the overlap). A whole view that the anchor's tile did not match is dropped: that tile
   owns the object and has its own view of it (the StarDist / InstanSeg rule for unmatched duplicates).
3. A group that no tile sees whole (a cell larger than the overlap) is assembled from pieces: each tile
   contributes the pixels of its view that lie in its own core. Cores partition the slide, so the pieces
   neither overlap nor leave holes, and the chain of matches gives them one label.
4. Where views disagree and two objects claim a pixel, the tile that owns the pixel (its core) wins; outside
   any claimant's core, the first object painted (tile order) keeps it.
5. Labels are renumbered 1..N (uint32) in tile order.

With a perfect segmenter (each tile mask a crop of one ground truth) the result equals the ground truth up to
renumbering for any tile size and overlap, cells larger than the overlap included (see tests). With a model,
an overlap of at least twice the cell diameter gives every cell a tile that sees it whole with context.

Memory: tiles are read one at a time (twice: analysis, then painting); the seam strips kept between tile rows
are compressed; the label image is painted tile by tile into a sparse temporary file next to the output (the
*canvas*, H x W x 4 bytes of disk), then written as a tiled pyramidal OME-TIFF block by block. Nothing held
in memory has the slide's width or height: peak memory follows the tile size and the number of objects.
Free disk space is checked before any work, and the canvas is removed on every exit. Every tile is
validated before anything is written.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path, check_writable, read_labels
from csrefiner.io.atomic import scratch
from csrefiner.io.frames import check_pixel_size
from csrefiner.io.pairing import index_by_key, list_images, parse_coords, role
from csrefiner.progress import track
from csrefiner.wsi.manifest import Manifest
from csrefiner.wsi.objects import TileObjects, compact, describe
from csrefiner.wsi.seams import strip_links
from csrefiner.wsi.tiling import Tile, grid_size
from csrefiner.wsi.writer import TILE, ScratchCanvas, pyramid_steps, write_pyramid


@dataclass(frozen=True)
class StitchReport:
    path: Path
    tiles: int
    objects: int  # labels in the output (1..objects)
    matched: int  # objects seen by several tiles and matched across seams
    assembled: int  # objects that no tile saw whole, assembled from core pieces
    dropped: int  # whole views dropped because the owning tile did not match them


def write_stitch_report(report: StitchReport, path: str | os.PathLike, force: bool = False) -> Path:
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(
            json.dumps({k: str(v) if k == "path" else v for k, v in asdict(report).items()}, indent=2) + "\n"
        )
    return Path(path)


def find_tile_masks(manifest: Manifest, tiles_dir: str | os.PathLike) -> list[Path]:
    """The mask of every tile, by sample key: `<key>-mask.tif`, `<key>.tif`, `<key>_cp_masks.tif`, ..."""
    tiles_dir = Path(tiles_dir)
    masks = index_by_key([p for p in list_images(tiles_dir) if role(p) != "img"], str(tiles_dir))
    tiles = manifest.tiles
    keys = {manifest.key(t) for t in tiles}
    missing = [manifest.key(t) for t in tiles if manifest.key(t) not in masks]
    if missing:
        others = [k for k in masks if k not in keys and (c := parse_coords(k)) and c.slide == manifest.slide]
        hint = (
            f"; {len(others)} mask(s) of slide '{manifest.slide}' have other coordinates (another tile grid?)"
            if others
            else ""
        )
        raise CsrefinerError(
            f"{tiles_dir}: no mask for {len(missing)} of {len(tiles)} tiles in the manifest, e.g. "
            f"{missing[0]}-mask.tif{hint}; segment every tile listed in the manifest into this folder"
        )
    return [masks[manifest.key(t)] for t in tiles]


def read_tile_mask(path: Path, tile: Tile) -> np.ndarray:
    labels = read_labels(path)
    if labels.shape != (tile.h, tile.w):
        raise CsrefinerError(
            f"{path}: mask is {labels.shape[0]}x{labels.shape[1]} but its tile is {tile.h}x{tile.w} "
            f"(x={tile.x}, y={tile.y}); masks must keep their tile's size: segment the tile again"
        )
    return labels


@dataclass
class Analysis:
    tiles: list[Tile]
    offsets: np.ndarray  # node id of tile t's local label l is offsets[t] + l
    tile_of: np.ndarray  # per node (index 0 unused)
    objects: TileObjects  # per node (index 0 unused)
    links: np.ndarray  # (k, 2) matched node pairs


def _local_nodes(path: Path, tile: Tile, offset: int) -> tuple[np.ndarray, int, np.ndarray]:
    local, n = compact(read_tile_mask(path, tile))
    nodes = np.where(local > 0, local.astype(np.int64) + offset, 0)
    return local, n, nodes


def analyse(manifest: Manifest, paths: list[Path], min_iou: float) -> Analysis:
    """Pass 1: validate every tile, describe its objects, match them across seams."""
    tiles = manifest.tiles
    offsets = np.zeros(len(tiles) + 1, dtype=np.int64)
    parts: list[TileObjects] = []
    tile_of, links = [], []
    grid = grid_size(tiles)
    right_strip: np.ndarray | None = None
    bottom_strips: dict[int, _Packed] = {}  # one per column: together they span the slide's width
    for tile, path in track(list(zip(tiles, paths)), "stitch: matching seams", unit="tiles"):
        local, n, nodes = _local_nodes(path, tile, int(offsets[tile.id]))
        offsets[tile.id + 1] = offsets[tile.id] + n
        parts.append(describe(local, n, tile))
        tile_of.append(np.full(n, tile.id, dtype=np.int64))
        if tile.edges[2] and right_strip is not None:  # left neighbour's right strip
            links.append(strip_links(right_strip, nodes[:, : right_strip.shape[1]], min_iou))
        if tile.edges[0]:  # upper neighbour's bottom strip
            above = bottom_strips[tile.col].unpack()
            links.append(strip_links(above, nodes[: above.shape[0]], min_iou))
        right_strip = _strip_towards(tiles, grid, tile, nodes, "right")
        bottom_strips[tile.col] = _Packed.of(_strip_towards(tiles, grid, tile, nodes, "down"))
    stack = lambda field, pad: np.concatenate([np.array([pad])] + [getattr(p, field) for p in parts])  # noqa: E731
    objects = TileObjects(stack("whole", False), stack("anchor_y", 0), stack("anchor_x", 0), stack("margin", 0))
    return Analysis(
        tiles,
        offsets,
        np.concatenate([[-1]] + tile_of),
        objects,
        np.concatenate(links) if links else np.empty((0, 2), dtype=np.int64),
    )


@dataclass(frozen=True)
class _Packed:
    """A seam strip kept until the tile below is read, zlib-compressed (labels compress ~10-50x)."""

    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def of(cls, strip: np.ndarray | None) -> _Packed | None:
        return None if strip is None else cls(strip.shape, zlib.compress(strip.astype(np.int64).tobytes(), 1))

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), dtype=np.int64).reshape(self.shape)


def _strip_towards(tiles: list[Tile], grid: tuple[int, int], tile: Tile, nodes: np.ndarray, side: str):
    """The part of this tile that the next tile to the right / below also covers (None at the slide edge)."""
    rows, cols = grid
    if side == "right" and tile.col + 1 < cols:
        nxt = tiles[tile.id + 1]
        return nodes[:, nxt.x - tile.x :].copy()
    if side == "down" and tile.row + 1 < rows:
        nxt = tiles[tile.id + cols]
        return nodes[nxt.y - tile.y :].copy()
    return None


def _owner_tiles(tiles: list[Tile], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Id of the tile whose core contains each slide point."""
    rows, cols = grid_size(tiles)
    row_starts = np.array([tiles[r * cols].core[0] for r in range(rows)])
    col_starts = np.array([tiles[c].core[2] for c in range(cols)])
    return (np.searchsorted(row_starts, y, side="right") - 1) * cols + np.searchsorted(col_starts, x, side="right") - 1


@dataclass
class Plan:
    paint_whole: np.ndarray  # per node: output label if this view is painted whole, else 0
    paint_core: np.ndarray  # per node: output label if this view contributes its core piece, else 0
    n_labels: int
    matched: int
    assembled: int
    dropped: int


def resolve(analysis: Analysis) -> Plan:
    """Group matched views and choose how each group is painted (the ownership rule above)."""
    n = len(analysis.tile_of)
    e = analysis.links
    graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    n_groups, group = connected_components(graph, directed=False)
    nodes = np.arange(1, n)
    g, tile = group[nodes], analysis.tile_of[nodes]
    obj = analysis.objects
    whole, margin = obj.whole[nodes], obj.margin[nodes]
    owner = _owner_tiles(analysis.tiles, obj.anchor_y[nodes], obj.anchor_x[nodes])
    n_tiles = len(analysis.tiles)
    members = np.unique(g * n_tiles + tile)
    in_core = owner == tile
    eligible = whole & (in_core | np.isin(g * n_tiles + owner, members))

    order = np.lexsort((nodes, -margin, ~in_core, ~eligible, g))
    first = order[np.r_[True, g[order][1:] != g[order][:-1]]] if len(order) else order
    size = np.bincount(g, minlength=n_groups)
    seen_whole = np.zeros(n_groups, dtype=bool)
    seen_whole[g[whole]] = True
    whole_groups = g[first][eligible[first]]
    piece_groups = np.flatnonzero(~seen_whole & (size > 0))

    painted = np.zeros(n_groups, dtype=bool)
    painted[whole_groups] = True
    painted[piece_groups] = True
    first_node = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(first_node, g, nodes)
    label = np.zeros(n_groups, dtype=np.uint32)
    ranked = np.flatnonzero(painted)[np.argsort(first_node[painted], kind="stable")]
    label[ranked] = np.arange(1, len(ranked) + 1, dtype=np.uint32)

    paint_whole = np.zeros(n, dtype=np.uint32)
    reps = nodes[first][eligible[first]]
    paint_whole[reps] = label[group[reps]]
    paint_core = np.zeros(n, dtype=np.uint32)
    pieces = nodes[np.isin(g, piece_groups)]
    paint_core[pieces] = label[group[pieces]]
    dropped = int(np.count_nonzero(seen_whole & ~painted & (size > 0)))
    return Plan(
        paint_whole,
        paint_core,
        len(ranked),
        int(np.count_nonzero(painted & (size > 1))),
        int(np.count_nonzero(size[piece_groups] > 1)),
        dropped,
    )


def paint(manifest: Manifest, paths: list[Path], analysis: Analysis, plan: Plan, canvas: ScratchCanvas) -> None:
    """Pass 2: paint chosen views into the canvas, one tile at a time (read its region, paint, write back)."""
    for tile in track(analysis.tiles, "stitch: painting", unit="tiles"):
        _, _, nodes = _local_nodes(paths[tile.id], tile, int(analysis.offsets[tile.id]))
        region = canvas.read(tile.y, tile.y + tile.h, tile.x, tile.x + tile.w)
        _paint_tile(region, tile, plan.paint_whole[nodes], plan.paint_core[nodes])
        canvas.write(tile.y, tile.x, region)


def _paint_tile(region: np.ndarray, tile: Tile, whole: np.ndarray, piece: np.ndarray) -> None:
    in_core = np.zeros(region.shape, dtype=bool)
    in_core[tile.local_core] = True
    override = (whole > 0) & in_core  # the owner of a pixel wins it
    region[override] = whole[override]
    fill = (whole > 0) & ~in_core & (region == 0)
    region[fill] = whole[fill]
    fill = (piece > 0) & in_core & (region == 0)
    region[fill] = piece[fill]


def _compaction(canvas: ScratchCanvas, n_labels: int) -> tuple[np.ndarray | None, int]:
    """Labels that lost every pixel to a neighbour leave gaps: map the survivors to 1..N (None if no gaps)."""
    present = np.zeros(n_labels + 1, dtype=bool)
    for block in canvas.blocks():
        present[block.ravel()] = True
    present[0] = False
    n = int(present.sum())
    if n == n_labels:
        return None, n
    return (np.cumsum(present, dtype=np.uint32) * present).astype(np.uint32), n


def stitch_tiles(
    manifest_path: str | os.PathLike,
    tiles_dir: str | os.PathLike,
    out: str | os.PathLike,
    force: bool = False,
    min_iou: float = 0.5,
    pixel_size_um: float | None = None,
) -> StitchReport:
    """Merge the tiles' instance masks into one uint32 OME-TIFF at `out` (atomically); see module docstring.

    The output's PhysicalSize is `pixel_size_um`, else the manifest's (the slide's)."""
    out = check_writable(out, force)
    if not 0.5 <= min_iou < 1.0:
        raise CsrefinerError(f"--min-iou {min_iou}: use a value in [0.5, 1) so each object matches at most once")
    manifest = Manifest.load(manifest_path)
    um = check_pixel_size(pixel_size_um) or manifest.pixel_size_um
    paths = find_tile_masks(manifest, tiles_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_disk(out.parent, manifest.shape)
    analysis = analyse(manifest, paths, min_iou)
    plan = resolve(analysis)
    try:
        with scratch(out.with_name(out.name + ".canvas")) as canvas_path:
            canvas = ScratchCanvas(canvas_path, manifest.shape)
            try:
                paint(manifest, paths, analysis, plan, canvas)
                lut, n = _compaction(canvas, plan.n_labels)
                write_pyramid(
                    out, manifest.shape, np.uint32, None, force=force, tiles=_writing(canvas, lut), pixel_size_um=um
                )
            finally:
                canvas.remove()
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise CsrefinerError(
            f"{out.parent}: disk full while stitching ({exc.strerror}); {_disk_hint(out.parent, manifest.shape)}"
        ) from exc
    return StitchReport(out, len(analysis.tiles), n, plan.matched, plan.assembled, plan.dropped)


def _writing(canvas: ScratchCanvas, lut: np.ndarray | None):
    """The pyramid writer's tile source, with progress per level."""

    def tiles(step: int):
        n = -(-canvas.shape[0] // (step * TILE)) * -(-canvas.shape[1] // (step * TILE))
        level = pyramid_steps(canvas.shape).index(step)
        return track(canvas.tiles(step, TILE, lut), f"stitch: writing level {level}", total=n, unit="tiles")

    return tiles


def disk_need(shape: tuple[int, int]) -> int:
    """Bytes of disk `stitch` needs next to its output: the H x W x 4 B canvas, plus room for the output.

    The compressed pyramid of a label image is a few percent of the canvas; an eighth is a safe allowance.
    """
    canvas = int(shape[0]) * int(shape[1]) * 4
    return canvas + canvas // 8


def _disk_hint(folder: Path, shape: tuple[int, int]) -> str:
    free = shutil.disk_usage(folder).free
    return (
        f"stitching a {shape[0]}x{shape[1]} slide needs {disk_need(shape) / 2**30:.1f} GiB of temporary disk "
        f"there (a {shape[0] * shape[1] * 4 / 2**30:.1f} GiB canvas + the output) and {free / 2**30:.1f} GiB "
        "is free; free space or write --out to a larger disk"
    )


def check_disk(folder: Path, shape: tuple[int, int]) -> None:
    """Refuse to start a stitch that cannot finish for lack of disk (the canvas fills as tiles are painted)."""
    if shutil.disk_usage(folder).free < disk_need(shape):
        raise CsrefinerError(
            f"{folder}: not enough free disk (no space left for the canvas); {_disk_hint(folder, shape)}"
        )
