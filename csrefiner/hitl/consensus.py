"""Fuse the instance masks that several models predicted for the same tile into one pseudo-label.

1. Match objects one-to-one between every pair of models at IoU >= t (csrefiner.metrics matching).
2. Matches link objects into clusters (connected components). A cluster holds at most one object per model:
   where chained matches bring in two objects of one model, the one with the larger summed IoU to the
   cluster stays and the other becomes a cluster of its own.
3. A cluster found by at least K models (its votes) becomes a fused object; its shape is the pixel vote of
   its objects: a pixel is kept where at least half of them cover it, then the largest 4-connected piece.
4. Where fused objects claim the same pixel, it goes to the object whose members cover it with the larger
   share; ties go to the object with more votes, then to the one listed first (lowest model, lowest label).
5. agreement = votes / M * mean IoU between each member and the fused shape: 1 when every model found the
   object with the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from csrefiner.hitl.disagreement import scores as disagreement_scores
from csrefiner.hitl.pairwise import Pairwise, match_models
from csrefiner.metrics.overlap import sequential

OBJECT_COLUMNS = ["label", "votes", "agreement", "mean_iou", "area", "centroid_y", "centroid_x", "members"]


@dataclass
class Consensus:
    labels: np.ndarray  # uint32 fused instance mask, objects 1..n
    objects: pd.DataFrame  # one row per fused object (OBJECT_COLUMNS)
    stats: dict = field(default_factory=dict)  # per-tile numbers


def _edges(pw: Pairwise, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = [offsets[m.a] + m.obj_a for m in pw.matches]
    v = [offsets[m.b] + m.obj_b for m in pw.matches]
    w = [m.iou.astype(np.float64) for m in pw.matches]
    return np.concatenate(u), np.concatenate(v), np.concatenate(w)


def clusters(pw: Pairwise) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id, model) of every object, objects numbered model by model; one object per model and cluster."""
    n = pw.n_objects
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    total = int(offsets[-1])
    model = np.repeat(np.arange(len(n)), n)
    u, v, w = _edges(pw, offsets)
    while True:
        graph = coo_matrix((np.ones(u.size), (u, v)), shape=(total, total))
        _, comp = connected_components(graph, directed=False)
        slots = comp.astype(np.int64) * len(n) + model
        crowded = np.flatnonzero(np.bincount(slots) > 1) if total else np.zeros(0, dtype=np.int64)
        if crowded.size == 0:
            return comp, model
        strength = np.bincount(u, w, minlength=total) + np.bincount(v, w, minlength=total)
        dropped = []
        for slot in crowded:
            nodes = np.flatnonzero(slots == slot)
            dropped += [x for x in nodes if x != nodes[np.argmax(strength[nodes])]]
        cut = np.isin(u, dropped) | np.isin(v, dropped)
        u, v, w = u[~cut], v[~cut], w[~cut]


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    return pieces == np.argmax(sizes)


def _union_box(boxes: list[tuple[slice, slice]]) -> tuple[slice, slice]:
    return (
        slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
        slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)),
    )


@dataclass
class _Candidate:
    members: list[tuple[int, int]]  # (model, 0-based object index)
    box: tuple[slice, slice]
    keep: np.ndarray  # fused shape inside box
    share: np.ndarray  # share of members covering each pixel inside box


def _candidates(seq, boxes, comp, model, offsets, min_votes) -> tuple[list[_Candidate], int]:
    order = np.argsort(comp, kind="stable")  # objects are numbered model-major: stable sort keeps that order
    starts = np.flatnonzero(np.r_[True, np.diff(comp[order]) != 0]) if comp.size else np.zeros(0, int)
    groups = np.split(order, starts[1:]) if comp.size else []
    groups.sort(key=lambda g: int(g[0]))
    out, few = [], 0
    for nodes in groups:
        if nodes.size < min_votes:
            few += 1
            continue
        members = [(int(model[x]), int(x - offsets[model[x]])) for x in nodes]
        box = _union_box([boxes[m][i] for m, i in members])
        count = sum((seq[m][box] == i + 1).astype(np.int32) for m, i in members)
        keep = _largest_piece(2 * count >= len(members))
        out.append(_Candidate(members, box, keep, count / len(members)))
    return out, few


def _paint(shape, cands: list[_Candidate]) -> tuple[np.ndarray, int]:
    """Canvas of candidate indices + 1; contested pixels go to the larger member share (then priority order)."""
    canvas = np.zeros(shape, dtype=np.int64)
    best = np.zeros(shape, dtype=np.float32)
    claimed = np.zeros(shape, dtype=np.int32)
    priority = sorted(range(len(cands)), key=lambda k: (-len(cands[k].members), k))
    for k in priority:
        c = cands[k]
        share = np.where(c.keep, c.share, 0).astype(np.float32)
        win = c.keep & (share > best[c.box])
        claimed[c.box] += c.keep
        canvas[c.box][win] = k + 1
        best[c.box][win] = share[win]
    return canvas, int((claimed > 1).sum())


def _describe(canvas, cands, seq, pw, names, n_models) -> tuple[np.ndarray, list[dict]]:
    present = np.unique(canvas)
    present = present[present > 0]
    lut = np.zeros(len(cands) + 1, dtype=np.uint32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint32)
    labels = lut[canvas]
    rows = []
    for k in present:
        c = cands[k - 1]
        final = labels[c.box] == lut[k]
        ious = []
        for m, i in c.members:
            obj = seq[m][c.box] == i + 1
            ious.append((obj & final).sum() / (obj | final).sum())
        ys, xs = np.nonzero(final)
        rows.append(
            {
                "label": int(lut[k]),
                "votes": len(c.members),
                "agreement": len(c.members) / n_models * float(np.mean(ious)),
                "mean_iou": float(np.mean(ious)),
                "area": int(final.sum()),
                "centroid_y": float(ys.mean() + c.box[0].start),
                "centroid_x": float(xs.mean() + c.box[1].start),
                "members": " ".join(f"{names[m]}:{pw.ids[m][i]}" for m, i in c.members),
            }
        )
    return labels, rows


def fuse(
    stack: Sequence[np.ndarray], min_votes: int = 2, iou: float = 0.5, names: Sequence[str] | None = None
) -> Consensus:
    """Consensus of several models' label masks of one tile (see the module docstring for the rules)."""
    n_models = len(stack)
    if n_models < 2:
        raise ValueError("consensus needs at least two label masks")
    if not 1 <= min_votes <= n_models:
        raise ValueError(f"min_votes must be within 1..{n_models}, got {min_votes}")
    names = list(names) if names is not None else [f"model{m + 1}" for m in range(n_models)]
    shape = stack[0].shape
    pw = match_models(stack, iou)
    seq = [sequential(s)[0].reshape(shape) for s in stack]
    boxes = [ndi.find_objects(s) for s in seq]
    offsets = np.concatenate([[0], np.cumsum(pw.n_objects)]).astype(np.int64)
    comp, model = clusters(pw)
    cands, few = _candidates(seq, boxes, comp, model, offsets, min_votes)
    canvas, contested = _paint(shape, cands)
    labels, rows = _describe(canvas, cands, seq, pw, names, n_models)
    objects = pd.DataFrame(rows, columns=OBJECT_COLUMNS)
    stats = {
        "n_models": n_models,
        **{f"n_objects_{name}": k for name, k in zip(names, pw.n_objects)},
        "n_clusters": len(cands) + few,
        "n_below_votes": few,
        "n_consensus": int(len(objects)),
        "contested_pixels": contested,
        "mean_agreement": float(objects.agreement.mean()) if len(objects) else float("nan"),
        **disagreement_scores(pw),
    }
    return Consensus(labels, objects, stats)
