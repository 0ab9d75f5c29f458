"""Cell geometry from the uint32 instance mask itself (not from DNBs), streamed band by band: compact ids,
area, centre, bounding box, border. Nothing the size of the mask is held: per-cell state only.

Pass 1 collects the label values (compact id = rank of the label, 1..N); pass 2 sums area and pixel
coordinates and finds bounding boxes; pass 3 (with the aggregation) keeps, per cell and 11.25 degree sector,
the boundary pixel farthest from the final centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csrefiner.errors import CsrefinerError

BORDER_POINTS = 32
BORDER_PAD = 32767  # int16 filler after the last border point, as gefpy writes
NO_POINT = -32768  # a sector without a pick yet (picked offsets are clipped to +-BORDER_PAD)
SCORE_MAX = np.iinfo(np.uint32).max  # squared distance + 1 saturates here, as a uint32 score did
STRIP_PIXELS = 1 << 20  # bounds the float64 temporaries to ~8 MB each
DENSE_LABELS = 1 << 25  # label values up to this use lookup tables indexed by label (4 B per value)


def strips(height: int, width: int):
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


class LabelSet:
    """The label values of a mask seen band by band; then the map label -> compact id (rank + 1, 0 stays 0)."""

    def __init__(self):
        self._dense = np.zeros(1, bool)
        self._sparse: list[np.ndarray] = []

    def add(self, band: np.ndarray) -> None:
        top = int(band.max()) if band.size else 0
        if top < DENSE_LABELS:
            if top >= self._dense.size:
                grown = np.zeros(max(top + 1, 2 * self._dense.size), bool)
                grown[: self._dense.size] = self._dense
                self._dense = grown
            self._dense[band] = True
        else:
            self._sparse.append(np.unique(band))
            if len(self._sparse) > 16:
                self._sparse = [np.unique(np.concatenate(self._sparse))]

    def labels(self) -> np.ndarray:
        dense = np.flatnonzero(self._dense).astype(np.uint32)
        labels = np.unique(np.concatenate([dense, *self._sparse])).astype(np.uint32)
        self.values = labels[labels > 0]
        top = int(self.values[-1]) if self.values.size else 0
        self._lut = None
        if top < DENSE_LABELS:
            self._lut = np.zeros(top + 1, np.uint32)
            self._lut[self.values] = np.arange(1, self.values.size + 1, dtype=np.uint32)
        self._dense, self._sparse = None, []
        return self.values

    def compact(self, band: np.ndarray) -> np.ndarray:
        """Compact ids of a band of labels (uint32, same shape)."""
        if self._lut is not None:
            return self._lut[band]
        out = np.empty(band.shape, np.uint32)
        for r0, r1 in strips(*band.shape):
            part = band[r0:r1]
            out[r0:r1] = np.where(part > 0, np.searchsorted(self.values, part) + 1, 0)
        return out


def relabel_in_place(mask: np.ndarray, source: str) -> np.ndarray:
    """Turn labels into compact ids 1..N in place (order of label value); return the N original labels."""
    labels = LabelSet()
    labels.add(mask)
    values = labels.labels()
    if not values.size:
        raise CsrefinerError(f"{source}: the mask has no cells (every pixel is 0); give the instance label mask")
    mask[...] = labels.compact(mask)
    return values


def band_boundary(c: np.ndarray, r0: int, above: np.ndarray | None, below: np.ndarray | None):
    """(cell id, y, x) in row-major order of every pixel of band `c` (rows r0..) whose 4-neighbour is another
    cell, background or the image edge; `above`/`below` are the neighbouring rows (None at the image edge)."""
    cells, ys, xs = [], [], []
    h = c.shape[0]
    for s0, s1 in strips(*c.shape):
        part = c[s0:s1]
        edge = np.zeros(part.shape, bool)
        edge[1:] |= part[1:] != part[:-1]
        edge[:-1] |= part[:-1] != part[1:]
        edge[:, 1:] |= part[:, 1:] != part[:, :-1]
        edge[:, :-1] |= part[:, :-1] != part[:, 1:]
        up = c[s0 - 1] if s0 > 0 else above
        down = c[s1] if s1 < h else below
        edge[0] |= part[0] != up if up is not None else True
        edge[-1] |= part[-1] != down if down is not None else True
        edge[:, 0] = True
        edge[:, -1] = True
        edge &= part > 0
        y, x = np.nonzero(edge)
        cells.append(part[y, x])
        ys.append(y + r0 + s0)
        xs.append(x)
    return np.concatenate(cells), np.concatenate(ys), np.concatenate(xs)


def with_neighbour_rows(bands, compact):
    """Compact bands with the row above and below each (one band of look-ahead)."""
    pending, above = None, None
    for r0, _, band in bands:
        c = compact(band)
        del band  # only the compact ids are held while the band is used
        if pending is not None:
            yield pending[0], pending[1], above, c[0]
            above = pending[1][-1].copy()
        pending = (r0, c)
    if pending is not None:
        yield pending[0], pending[1], above, None


@dataclass
class Geometry:
    """Per cell, indexed by compact id - 1: area, integer centre (mask pixels), border offsets, bounding box."""

    area: np.ndarray  # int64
    cx: np.ndarray  # int64, floor of the pixel centroid
    cy: np.ndarray
    border: np.ndarray  # (N, 32, 2) int16 offsets from (cx, cy), padded with 32767
    bbox: np.ndarray  # (N, 4) min x, min y, max x, max y


class Moments:
    """Pass 2: pixel count, sums of x and y (exact: integer-valued float64 sums) and bounding box per cell."""

    def __init__(self, n: int):
        self.n = n
        self.area = np.zeros(n + 1, np.int64)
        self.sx = np.zeros(n + 1, np.float64)
        self.sy = np.zeros(n + 1, np.float64)
        self.box = np.empty((n + 1, 4), np.int64)
        self.box[:, :2], self.box[:, 2:] = np.iinfo(np.int64).max, -1

    def add(self, c: np.ndarray, r0: int, above, below) -> None:
        w = c.shape[1]
        for s0, s1 in strips(*c.shape):
            flat = c[s0:s1].reshape(-1)
            at = np.flatnonzero(flat)  # cell pixels only: background is most of a chip
            cells = flat[at]
            self.area += np.bincount(cells, minlength=self.n + 1)
            self.sx += np.bincount(cells, weights=at % w, minlength=self.n + 1)
            self.sy += np.bincount(cells, weights=at // w + (r0 + s0), minlength=self.n + 1)
        cells, ys, xs = band_boundary(c, r0, above, below)  # extremes of a cell are on its boundary
        np.minimum.at(self.box[:, 0], cells, xs)
        np.minimum.at(self.box[:, 1], cells, ys)
        np.maximum.at(self.box[:, 2], cells, xs)
        np.maximum.at(self.box[:, 3], cells, ys)

    def geometry(self) -> Geometry:
        area = self.area[1:]
        cx = np.floor(self.sx[1:] / area).astype(np.int64)
        cy = np.floor(self.sy[1:] / area).astype(np.int64)
        return Geometry(area, cx, cy, np.empty(0), self.box[1:])


class StarBorder:
    """Pass 3: <= 32-point border per cell, the farthest boundary pixel from the centre in each 11.25 degree
    sector, in order of decreasing angle (gefpy's orientation); ties go to the first pixel in row-major order.
    Exact for cells that are star-shaped around their centre (nuclei, most cells); a deeply concave cell gets
    the outline of its visible-from-centre part. State: the picked offsets only (int16 per cell and sector,
    NO_POINT where none; 128 B per cell): a pick's distance is recomputed from its offsets. An offset that does
    not fit int16 is stored saturated (an error at the end unless a farther pick replaces it) and its true
    squared distance kept aside, so the picks are those of exact distances."""

    def __init__(self, cx: np.ndarray, cy: np.ndarray):
        n = cx.size
        self.cx, self.cy = cx, cy
        self.border = np.full((n, BORDER_POINTS, 2), NO_POINT, np.int16)
        self._far: dict[int, int] = {}  # (cell, sector) -> score of a saturated pick

    def add(self, cells: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> None:
        if not cells.size:
            return
        dx = xs.astype(np.int64) - self.cx[cells - 1]
        dy = ys.astype(np.int64) - self.cy[cells - 1]
        sector = ((np.arctan2(dy, dx) + np.pi) * (BORDER_POINTS / (2 * np.pi))).astype(np.int64)
        sector = np.clip(sector, 0, BORDER_POINTS - 1)
        group = (cells.astype(np.int64) - 1) * BORDER_POINTS + (BORDER_POINTS - 1 - sector)
        d2 = dx * dx + dy * dy
        order = np.lexsort((-d2, group))  # stable: ties keep the row-major pixel order
        key = group[order]
        pick = order[np.flatnonzero(np.r_[True, key[1:] != key[:-1]])]
        g = group[pick]
        score = np.minimum(d2[pick] + 1, SCORE_MAX)
        better = score > self._scores(g)  # strictly: an earlier band keeps a tie
        g, pick, score = g[better], pick[better], score[better]
        flat = self.border.reshape(-1, 2)
        flat[g, 0] = np.clip(dx[pick], -BORDER_PAD, BORDER_PAD)
        flat[g, 1] = np.clip(dy[pick], -BORDER_PAD, BORDER_PAD)
        self._keep_far(g, score, (np.abs(dx[pick]) > BORDER_PAD) | (np.abs(dy[pick]) > BORDER_PAD))

    def _scores(self, g: np.ndarray) -> np.ndarray:
        """Squared distance + 1 of the current pick of each (cell, sector) group, 0 where there is none."""
        old = self.border.reshape(-1, 2)[g].astype(np.int64)
        scores = np.where(old[:, 0] == NO_POINT, 0, old[:, 0] ** 2 + old[:, 1] ** 2 + 1)
        if self._far:
            for i in np.flatnonzero(np.isin(g, np.fromiter(self._far, np.int64))):
                scores[i] = self._far[int(g[i])]
        return scores

    def _keep_far(self, g: np.ndarray, score: np.ndarray, saturated: np.ndarray) -> None:
        if self._far:
            for i in g[~saturated].tolist():
                self._far.pop(i, None)
        for i, s in zip(g[saturated].tolist(), score[saturated].tolist()):
            self._far[i] = s

    def result(self) -> np.ndarray:
        """(N, 32, 2) int16: the picked points packed to the front in sector order, padded with 32767."""
        border = self.border
        for c0 in range(0, border.shape[0], 1 << 16):
            part = border[c0 : c0 + (1 << 16)]
            present = part[..., 0] != NO_POINT
            if np.abs(part[present].astype(np.int64)).max(initial=0) >= BORDER_PAD:
                raise CsrefinerError(
                    "a cell spans more than 32,766 pixels from its centre; the mask is not a cell segmentation"
                )
            rows, cols = np.nonzero(present)
            rank = np.cumsum(present, axis=1)[rows, cols] - 1
            values = part[rows, cols]
            part[...] = BORDER_PAD
            part[rows, rank] = values
        self._far = {}
        return border


def count_blobs(bands) -> int:
    """8-connected foreground components of a mask seen in bands (components joined across band edges)."""
    from scipy import ndimage

    parent = [0]  # union-find over component ids 1..; slot 0 is background

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev_last, components = None, 0
    for _, _, band in bands:
        lab, k = ndimage.label(band > 0, structure=np.ones((3, 3), bool))
        lab = np.where(lab > 0, lab + (len(parent) - 1), 0)
        parent.extend(range(len(parent), len(parent) + k))
        components += k
        if prev_last is not None:
            first = lab[0]
            for shift in (-1, 0, 1):  # 8-neighbours across the band edge
                a = prev_last[max(0, shift) : prev_last.size + min(0, shift)]
                b = first[max(0, -shift) : first.size + min(0, -shift)]
                both = (a > 0) & (b > 0)
                for i, j in set(zip(a[both].tolist(), b[both].tolist())):
                    ri, rj = find(i), find(j)
                    if ri != rj:
                        parent[ri] = rj
                        components -= 1
        prev_last = lab[-1].copy()
    return components


def check_label_image(geo: Geometry, n: int, source: str, blobs=None) -> None:
    """Refuse masks that are not instance labels: a binary/semantic mask (few values, many separate blobs) or
    an intensity image (every value scattered over the whole image). `blobs` counts components (n <= 2)."""
    if n <= 2:
        count = blobs()
        if count > n:
            raise CsrefinerError(
                f"{source}: {count} separate objects share {n} label value(s): this is a binary or semantic mask, "
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
