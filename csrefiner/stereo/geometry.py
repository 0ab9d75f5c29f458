"""Cell geometry from the uint32 instance mask itself (not from DNBs): compact ids, area, centre, border.

Everything works in strips of rows so a whole-chip mask (tens of thousands of pixels a side) is never copied
into int64/float64 temporaries; the mask is relabelled in place to 1..N (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csrefiner.errors import CsrefinerError

BORDER_POINTS = 32
BORDER_PAD = 32767  # int16 filler after the last border point, as gefpy writes
STRIP_PIXELS = 1 << 20  # bounds the float64 temporaries to ~8 MB each


def strips(height: int, width: int):
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def relabel_in_place(mask: np.ndarray, source: str) -> np.ndarray:
    """Turn labels into compact ids 1..N in place (order of label value); return the N original labels."""
    top = int(mask.max()) if mask.size else 0
    if top == 0:
        raise CsrefinerError(f"{source}: the mask has no cells (every pixel is 0); give the instance label mask")
    if top <= max(1 << 24, 2 * mask.size):  # a dense lookup table is cheaper than sorting the pixels
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=top + 1))
        labels = present[present > 0].astype(np.uint32)
        lut = np.zeros(top + 1, np.uint32)
        lut[labels] = np.arange(1, labels.size + 1, dtype=np.uint32)
        for r0, r1 in strips(*mask.shape):
            mask[r0:r1] = lut[mask[r0:r1]]
        return labels
    labels = np.unique(mask)
    labels = labels[labels > 0]
    for r0, r1 in strips(*mask.shape):
        part = mask[r0:r1]
        mask[r0:r1] = np.where(part > 0, np.searchsorted(labels, part) + 1, 0)
    return labels


def moments(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count and sums of x and y per cell id 1..n (index 0 of the result is cell 1)."""
    area = np.zeros(n + 1, np.int64)
    sx = np.zeros(n + 1, np.float64)
    sy = np.zeros(n + 1, np.float64)
    xs = np.arange(ids.shape[1], dtype=np.float64)
    for r0, r1 in strips(*ids.shape):
        part = ids[r0:r1]
        flat = part.ravel()
        area += np.bincount(flat, minlength=n + 1)
        sx += np.bincount(flat, weights=np.broadcast_to(xs, part.shape).ravel(), minlength=n + 1)
        ys = np.arange(r0, r1, dtype=np.float64)[:, None]
        sy += np.bincount(flat, weights=np.broadcast_to(ys, part.shape).ravel(), minlength=n + 1)
    return area[1:], sx[1:], sy[1:]


def boundary_pixels(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell id, y, x) of every cell pixel whose 4-neighbour is another cell, background or the image edge."""
    h, _ = ids.shape
    cells, ys, xs = [], [], []
    for r0, r1 in strips(*ids.shape):
        c = ids[r0:r1]
        edge = np.zeros(c.shape, bool)
        edge[1:] |= c[1:] != c[:-1]
        edge[:-1] |= c[:-1] != c[1:]
        edge[:, 1:] |= c[:, 1:] != c[:, :-1]
        edge[:, :-1] |= c[:, :-1] != c[:, 1:]
        edge[0] |= c[0] != ids[r0 - 1] if r0 > 0 else True
        edge[-1] |= c[-1] != ids[r1] if r1 < h else True
        edge[:, 0] = True
        edge[:, -1] = True
        edge &= c > 0
        y, x = np.nonzero(edge)
        cells.append(c[y, x])
        ys.append(y + r0)
        xs.append(x)
    return np.concatenate(cells), np.concatenate(ys), np.concatenate(xs)


@dataclass
class Geometry:
    """Per cell, indexed by compact id - 1: area, integer centre (mask pixels), border offsets, bounding box."""

    area: np.ndarray  # int64
    cx: np.ndarray  # int64, floor of the pixel centroid
    cy: np.ndarray
    border: np.ndarray  # (N, 32, 2) int16 offsets from (cx, cy), padded with 32767
    bbox: np.ndarray  # (N, 4) min x, min y, max x, max y


def star_border(cells, ys, xs, cx, cy, n: int) -> np.ndarray:
    """<= 32-point border per cell: the farthest boundary pixel from the centre in each 11.25 degree sector,
    in order of decreasing angle (gefpy's orientation). Exact for cells that are star-shaped around their
    centre (nuclei, most cells); a deeply concave cell gets the outline of its visible-from-centre part."""
    dx = xs.astype(np.int64) - cx[cells - 1]
    dy = ys.astype(np.int64) - cy[cells - 1]
    sector = ((np.arctan2(dy, dx) + np.pi) * (BORDER_POINTS / (2 * np.pi))).astype(np.int64)
    sector = np.clip(sector, 0, BORDER_POINTS - 1)
    group = cells.astype(np.int64) * BORDER_POINTS + (BORDER_POINTS - 1 - sector)  # cell, then angle descending
    order = np.lexsort((-(dx * dx + dy * dy), group))  # stable: ties keep the row-major pixel order
    key = group[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    pick = order[first]
    cell_of = cells[pick].astype(np.int64) - 1
    starts = np.flatnonzero(np.r_[True, cell_of[1:] != cell_of[:-1]])
    rank = np.arange(pick.size) - np.repeat(starts, np.diff(np.r_[starts, pick.size]))
    if np.abs(dx[pick]).max(initial=0) >= BORDER_PAD or np.abs(dy[pick]).max(initial=0) >= BORDER_PAD:
        raise CsrefinerError("a cell spans more than 32,766 pixels from its centre; the mask is not a cell segmentation")
    border = np.full((n, BORDER_POINTS, 2), BORDER_PAD, np.int16)
    border[cell_of, rank, 0] = dx[pick]
    border[cell_of, rank, 1] = dy[pick]
    return border


def bounding_boxes(cells, ys, xs, n: int) -> np.ndarray:
    """(min x, min y, max x, max y) per cell from its boundary pixels (every cell has at least one)."""
    box = np.zeros((n, 4), np.int64)
    order = np.argsort(cells, kind="stable")
    c = cells[order].astype(np.int64) - 1
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    idx = c[starts]
    for col, values, reduce in ((0, xs, np.minimum), (1, ys, np.minimum), (2, xs, np.maximum), (3, ys, np.maximum)):
        box[idx, col] = reduce.reduceat(values[order].astype(np.int64), starts)
    return box


def check_label_image(ids: np.ndarray, geo: Geometry, n: int, source: str) -> None:
    """Refuse masks that are not instance labels: a binary/semantic mask (few values, many separate blobs) or
    an intensity image (every value scattered over the whole image)."""
    if n <= 2:
        from scipy import ndimage

        blobs = ndimage.label(ids > 0, structure=np.ones((3, 3), bool))[1]
        if blobs > n:
            raise CsrefinerError(
                f"{source}: {blobs} separate objects share {n} label value(s): this is a binary or semantic mask, "
                "not an instance label image; give one label per cell (e.g. skimage.measure.label, or the "
                "csrefiner segmentation output)"
            )
        return
    spread = (geo.bbox[:, 2] - geo.bbox[:, 0] + 1) * (geo.bbox[:, 3] - geo.bbox[:, 1] + 1) / geo.area
    if np.median(spread) > 20:
        raise CsrefinerError(
            f"{source}: each label value is scattered (median bounding box {np.median(spread):.0f}x its pixel "
            "count): this looks like an intensity image, not an instance label mask; give the segmentation's labels"
        )


def mask_geometry(ids: np.ndarray, n: int, source: str) -> Geometry:
    area, sx, sy = moments(ids, n)
    cx = np.floor(sx / area).astype(np.int64)
    cy = np.floor(sy / area).astype(np.int64)
    cells, ys, xs = boundary_pixels(ids)
    geo = Geometry(area, cx, cy, np.empty(0), bounding_boxes(cells, ys, xs, n))
    check_label_image(ids, geo, n, source)
    geo.border = star_border(cells, ys, xs, cx, cy, n)
    return geo
