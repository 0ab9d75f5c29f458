"""Training data for every backend: annotated patches read, checked and split the same way.

A training folder holds CSRefiner-named pairs `<name>-img.tif` / `<name>-mask.tif`. Every problem that would
make training meaningless is found here, before any model is built: masks that are not instance labels
(binary or semantic masks), too few objects, image/mask size mismatch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from csrefiner.errors import CsrefinerError
from csrefiner.io import image_mask_pairs, read_image, read_labels

MIN_OBJECTS = 5  # in all training patches together; fewer cannot teach an instance model anything


@dataclass
class Sample:
    key: str
    image: np.ndarray  # as read: 2D grey or RGB, own dtype
    labels: np.ndarray  # uint32 instances
    group: str = "hard"  # "hard" (annotated/corrected) or "easy" (pseudo-label), for weighted sampling
    sha256: str = ""
    source: str = ""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_instance_mask(labels: np.ndarray, source: str) -> None:
    """A binary or semantic mask (one value painted over several separate blobs) is not an instance mask."""
    values = np.unique(labels)
    values = values[values > 0]
    if values.size == 0:
        return
    if values.size <= 2:
        _, n_parts = ndi.label(labels > 0)
        if n_parts > values.size and n_parts >= 3:
            raise CsrefinerError(
                f"{source}: {n_parts} separate objects share {values.size} label value(s) - this is a binary/semantic "
                "mask, not instance labels; give every object its own label (e.g. skimage.measure.label)"
            )


def read_folder(folder: Path, group: str = "hard") -> list[Sample]:
    samples = []
    for key, img_path, mask_path in image_mask_pairs(folder):
        image, labels = read_image(img_path), read_labels(mask_path)
        if image.shape[:2] != labels.shape:
            raise CsrefinerError(
                f"{img_path.name} is {image.shape[:2]} but {mask_path.name} is {labels.shape}: "
                "image and mask must have the same height and width"
            )
        check_instance_mask(labels, str(mask_path))
        samples.append(Sample(key, image, labels, group, sha256(img_path) + ":" + sha256(mask_path), str(folder)))
    return samples


def n_objects(samples: list[Sample]) -> int:
    return sum(int(np.count_nonzero(np.unique(s.labels))) for s in samples)


def check_training_set(samples: list[Sample], what: str) -> None:
    n = n_objects(samples)
    if n < MIN_OBJECTS:
        raise CsrefinerError(
            f"{what}: only {n} annotated object(s) in {len(samples)} patch(es); annotate at least {MIN_OBJECTS} "
            "objects (about 20 patches of 256 x 256 is the usual start)"
        )
    channels = {s.image.ndim for s in samples}
    if len(channels) > 1:
        raise CsrefinerError(f"{what}: mixes grey and RGB patches; export all patches the same way")


def split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded random split by patch (at least one patch on each side)."""
    if len(samples) < 2:
        raise CsrefinerError(f"need at least 2 annotated patches to train and validate, found {len(samples)}")
    if not 0.0 < val_fraction < 1.0:
        raise CsrefinerError(f"--val-fraction {val_fraction} must be between 0 and 1 (e.g. 0.1)")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = min(len(samples) - 1, max(1, round(val_fraction * len(samples))))
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def grey(image: np.ndarray, stain: str = "ss") -> np.ndarray:
    """One float32 channel with bright nuclei: ssDNA/DAPI as is (RGB averaged); H&E -> hematoxylin density."""
    img = np.asarray(image)
    if img.ndim == 3 and stain == "he":
        from skimage.color import rgb2hed

        return rgb2hed(img[..., :3]).astype(np.float32)[..., 0]
    img = img.astype(np.float32)
    return img.mean(axis=-1) if img.ndim == 3 else img


def percentile_normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Per-image percentile scaling to about [0, 1] (the scaling StarDist and Cellpose use); flat images -> 0."""
    img = image.astype(np.float32)
    lo, hi = np.percentile(img, (low, high))
    if hi - lo < 1e-6:
        return np.zeros_like(img)
    return (img - lo) / (hi - lo)
