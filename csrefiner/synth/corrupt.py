"""Imperfect copies of a ground truth, as different models would predict it: dropped, split, merged and
shifted objects plus a one-pixel boundary jitter. Used to test consensus and disagreement ranking."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from csrefiner.metrics.overlap import sequential

ERRORS = ("drop", "split", "merge", "shift")


def _neighbour(labels: np.ndarray, obj: np.ndarray, taken: set[int]) -> int | None:
    ring = ndi.binary_dilation(obj, iterations=2) & ~obj
    near = [int(v) for v in np.unique(labels[ring]) if v and int(v) not in taken]
    return near[0] if near else None


def _split(labels: np.ndarray, obj: np.ndarray, new: int, rng: np.random.Generator) -> None:
    ys, xs = np.nonzero(obj)
    angle = rng.uniform(0, np.pi)
    side = (ys - ys.mean()) * np.cos(angle) + (xs - xs.mean()) * np.sin(angle) > 0
    labels[ys[side], xs[side]] = new


def _shift(labels: np.ndarray, obj: np.ndarray, label: int, rng: np.random.Generator) -> None:
    ys, xs = np.nonzero(obj)
    radius = np.sqrt(ys.size / np.pi)
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = np.round(0.9 * radius * np.array([np.sin(angle), np.cos(angle)])).astype(int)
    labels[obj] = 0
    ys, xs = ys + dy, xs + dx
    inside = (ys >= 0) & (ys < labels.shape[0]) & (xs >= 0) & (xs < labels.shape[1])
    labels[ys[inside], xs[inside]] = label


def corrupt_labels(labels: np.ndarray, level: float, seed: int) -> np.ndarray:
    """A copy where each object is, with probability `level`, dropped, split, merged with a neighbour or
    shifted by ~0.9 radius (one of the four, uniformly); every object's boundary may also move by a pixel."""
    rng = np.random.default_rng(seed)
    out = labels.astype(np.uint32, copy=True)
    ids = sequential(labels)[1]
    next_id = int(ids.max()) + 1 if ids.size else 1
    taken: set[int] = set()
    for label in rng.permutation(ids):
        label = int(label)
        if label in taken or rng.random() >= level:
            continue
        obj = out == label
        if not obj.any():
            continue
        error = ERRORS[rng.integers(len(ERRORS))]
        if error == "drop":
            out[obj] = 0
        elif error == "split":
            _split(out, obj, next_id, rng)
            next_id += 1
        elif error == "merge" and (other := _neighbour(out, obj, taken)) is not None:
            out[out == other] = label
            taken.add(other)
        else:
            _shift(out, obj, label, rng)
        taken.add(label)
    return _jitter(out, rng)


def _jitter(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Erode a random half of the objects by one pixel, grow the other half by one pixel into background."""
    from skimage.segmentation import expand_labels, find_boundaries

    ids = sequential(labels)[1]
    grow = np.isin(labels, ids[rng.random(ids.size) < 0.5])
    inner = find_boundaries(labels, mode="inner") & ~grow
    out = labels.copy()
    out[inner] = 0
    grown = expand_labels(np.where(grow, labels, 0), 1)
    fill = (out == 0) & (grown > 0) & (labels == 0)
    out[fill] = grown[fill]
    return out
