"""QuPath GeoJSON <-> uint32 instance masks, so predictions can be corrected in QuPath and come back as labels.

Written files follow what QuPath (>= 0.4) writes with "Export as GeoJSON": a FeatureCollection of
{"type": "Feature", "id": <uuid>, "geometry": Polygon | MultiPolygon,
 "properties": {"objectType": "annotation" | "detection", "classification": {"name", "color": [r, g, b]},
                "measurements": {"label": <id in the mask>}}}.
Read files may be a FeatureCollection, one Feature or a list of Features (older QuPath exports); the legacy
keys `object_type` and `classification.colorRGB` are understood.

Reading never drops anything silently: every feature that is skipped, clipped, repaired or overwritten
yields a message naming it (file, feature index, id, name). Invalid geometry (crossing edges, misplaced
holes, unreadable coordinates) and features wholly outside the image are errors unless `lenient`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from csrefiner.errors import CsrefinerError
from csrefiner.hitl.polygons import (
    GeometryError,
    NotAnArea,
    area,
    bounds,
    first_crossing,
    parse_geometry,
    pixel_window,
    rasterise,
)
from csrefiner.hitl.tracing import object_polygons
from csrefiner.metrics.overlap import sequential
from csrefiner.progress import track

DEFAULT_CLASS = "Nucleus"
DEFAULT_COLOR = (0, 200, 255)
FIX = "; fix it in QuPath or pass --lenient to fill it by the even-odd rule"
_NAMESPACE = uuid.UUID("6f1c0a52-6c39-4d7e-9a57-3f0d5b8f2c11")  # stable ids: same mask, same feature ids


@dataclass(frozen=True)
class Feature:
    source: str
    index: int  # position in its file, from 0
    data: dict

    @property
    def properties(self) -> dict:
        props = self.data.get("properties")
        return props if isinstance(props, dict) else {}

    @property
    def object_type(self) -> str:
        p = self.properties
        return str(p.get("objectType", p.get("object_type", p.get("type", "annotation"))))

    @property
    def class_name(self) -> str | None:
        cls = self.properties.get("classification")
        return cls.get("name") if isinstance(cls, dict) else None

    def describe(self) -> str:
        parts = [f"{self.source} feature #{self.index}"]
        if self.data.get("id") is not None:
            parts.append(f"id {self.data['id']}")
        if self.properties.get("name") is not None:
            parts.append(f"name {self.properties['name']!r}")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- reading


def read_features(path: str | os.PathLike) -> list[Feature]:
    path = Path(path)
    if not path.is_file():
        raise CsrefinerError(f"{path}: no such GeoJSON file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CsrefinerError(f"{path}: not a JSON file ({exc}); export the objects from QuPath as GeoJSON") from exc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        items = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise CsrefinerError(f"{path}: top-level {kind!r} is not a FeatureCollection, Feature or list of Features")
    if not isinstance(items, list):
        raise CsrefinerError(f"{path}: 'features' is not a list")
    bad = [i for i, f in enumerate(items) if not (isinstance(f, dict) and f.get("type") == "Feature")]
    if bad:
        raise CsrefinerError(f'{path}: entries {bad[:5]} are not GeoJSON Features (need "type": "Feature")')
    return [Feature(str(path), i, f) for i, f in enumerate(items)]


def select(features: Iterable[Feature], object_types=None, classes=None) -> tuple[list[Feature], list[str]]:
    """Features of the wanted object types / classes, and one line counting what was left out and why."""
    kept, left = [], Counter()
    for f in features:
        if object_types and f.object_type not in object_types:
            left[f"objectType {f.object_type!r}"] += 1
        elif classes and f.class_name not in classes:
            left[f"class {f.class_name!r}"] += 1
        else:
            kept.append(f)
    notes = [f"left out {n} feature(s) with {why} (not selected)" for why, n in sorted(left.items())]
    return kept, notes


def _geometry(f: Feature, use_nucleus: bool, notes: list[str]):
    if use_nucleus:
        if f.data.get("nucleusGeometry") is not None:
            return f.data["nucleusGeometry"]
        notes.append(f"{f.describe()}: no nucleusGeometry; used its geometry")
    return f.data.get("geometry")


def _parse(f: Feature, offset, lenient, use_nucleus, errors, notes):
    """(validated shape in image coordinates, fill by even-odd only?) of one feature, or None."""
    name = f.describe()
    try:
        shape = parse_geometry(_geometry(f, use_nucleus, notes))
    except NotAnArea as exc:
        notes.append(f"{name}: {exc}; skipped")
        return None
    except GeometryError as exc:
        (notes if lenient else errors).append(f"{name}: {exc}" + ("; skipped" if lenient else ""))
        return None
    notes += [f"{name}: {n}" for n in shape.notes]
    for poly in shape.polygons:
        for ring in poly:
            ring -= offset
    even_odd = False
    for poly in shape.polygons:
        hit = first_crossing(poly)
        if hit is not None:
            msg = f"{name}: self-intersecting polygon (edges cross near x={hit[0]:.1f}, y={hit[1]:.1f})"
            if not lenient:
                errors.append(msg + FIX)
                return None
            notes.append(msg + "; filled by the even-odd rule")
            even_odd = True
    return shape, even_odd


def _pixels(f: Feature, shape, even_odd, image_shape, lenient, errors, notes):
    """(window, mask) of a feature's pixels inside the image, or None; names whatever falls outside."""
    name = f.describe()
    x0, y0, x1, y1 = bounds(shape)
    h, w = image_shape
    window = pixel_window(shape, image_shape)
    mask = None
    if window[2] and window[3]:
        try:
            mask = rasterise(shape, window, even_odd)
        except GeometryError as exc:
            if not lenient:
                errors.append(f"{name}: {exc}" + FIX)
                return None
            notes.append(f"{name}: {exc}; filled by the even-odd rule")
            mask = rasterise(shape, window, even_odd_only=True)
    inside = int(mask.sum()) if mask is not None else 0
    beyond = x0 < 0 or y0 < 0 or x1 > w or y1 > h
    if inside == 0:
        if beyond:
            msg = f"{name}: lies entirely outside the {w} x {h} image (x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f})"
            (notes if lenient else errors).append(
                msg + ("; skipped" if lenient else "; check --origin, or pass --lenient to skip it")
            )
        else:
            notes.append(f"{name}: covers no pixel centre (smaller than a pixel); no object")
        return None
    if beyond:
        lost = max(0, round(area(shape)) - inside)
        notes.append(f"{name}: reaches outside the {w} x {h} image; clipped (about {lost} pixel(s) cut off)")
    return window, mask


def features_to_labels(
    features: Sequence[Feature],
    shape: tuple[int, int],
    offset: tuple[float, float] = (0.0, 0.0),
    lenient: bool = False,
    use_nucleus: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """uint32 instance mask (objects 1..n in feature order) and the messages about individual features.

    Where features overlap, the later one keeps the pixels (and the earlier one is named in a message).
    Raises CsrefinerError listing every invalid feature unless `lenient`.
    """
    labels = np.zeros(shape, dtype=np.uint32)
    errors: list[str] = []
    notes: list[str] = []
    placed: list[tuple[Feature, int, int]] = []  # feature, label, pixels drawn
    offset = np.asarray(offset, dtype=np.float64)
    for f in track(features, "rasterise features"):
        parsed = _parse(f, offset, lenient, use_nucleus, errors, notes)
        got = _pixels(f, *parsed, shape, lenient, errors, notes) if parsed else None
        if got is None:
            continue
        (r0, c0, h, w), mask = got
        label = len(placed) + 1
        labels[r0 : r0 + h, c0 : c0 + w][mask] = label
        placed.append((f, label, int(mask.sum())))
    if errors:
        shown = "; ".join(errors[:5]) + (f"; ... and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise CsrefinerError(f"{len(errors)} invalid feature(s): {shown}")
    if placed:
        kept = np.bincount(labels.ravel(), minlength=len(placed) + 1)
        for f, label, drawn in placed:
            lost = drawn - int(kept[label])
            if lost:
                whole = " (all of it; no object left)" if lost == drawn else ""
                notes.append(f"{f.describe()}: {lost} of {drawn} pixel(s) covered by later features{whole}")
        labels = _renumber(labels)
    return labels, notes


def _renumber(labels: np.ndarray) -> np.ndarray:
    seq, _ = sequential(labels)
    return seq.reshape(labels.shape).astype(np.uint32)


# ---------------------------------------------------------------------------------------------- writing


def _geometry_json(polygons: list[list[np.ndarray]], offset) -> dict:
    coords = [[(ring + offset).tolist() for ring in poly] for poly in polygons]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


def labels_to_features(
    labels: np.ndarray,
    object_type: str = "annotation",
    class_name: str = DEFAULT_CLASS,
    color: Sequence[int] = DEFAULT_COLOR,
    offset: tuple[int, int] = (0, 0),
    key: str = "",
) -> dict:
    """A QuPath-style FeatureCollection with one feature per object of a label mask (label order)."""
    seq, ids = sequential(labels)
    seq = seq.reshape(labels.shape)
    boxes = ndi.find_objects(seq)
    feats = []
    for k, (label, box) in track(list(enumerate(zip(ids, boxes), start=1)), "trace outlines"):
        polygons = object_polygons(seq[box] == k)
        corner = np.array([box[1].start + offset[0], box[0].start + offset[1]])
        feats.append(object_feature(int(label), polygons, corner, object_type, class_name, color, key))
    return {"type": "FeatureCollection", "features": feats}


def object_feature(
    label: int,
    polygons,
    corner,
    object_type: str = "annotation",
    class_name: str = DEFAULT_CLASS,
    color: Sequence[int] = DEFAULT_COLOR,
    key: str = "",
) -> dict:
    """One QuPath feature: the object's traced polygons shifted by `corner` (x, y), its mask label kept."""
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(_NAMESPACE, f"{key}:{int(label)}")),
        "geometry": _geometry_json(polygons, corner),
        "properties": {
            "objectType": object_type,
            "classification": {"name": class_name, "color": [int(c) for c in color]},
            "measurements": {"label": int(label)},
        },
    }
