"""Classical nuclei segmenters: no training, no weights. Baselines for the demo and references in tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label
from skimage.segmentation import watershed


def _grey(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32)
    return img.mean(axis=-1) if img.ndim == 3 else img


def foreground(image: np.ndarray, sigma: float = 1.0, threshold: float | None = None, min_area: int = 16) -> np.ndarray:
    """Smoothed image above Otsu's (or a fixed) threshold, without specks smaller than `min_area`."""
    smooth = gaussian(_grey(image), sigma, preserve_range=True)
    t = threshold_otsu(smooth) if threshold is None else threshold
    mask = smooth > t
    parts = label(mask)
    return (np.bincount(parts.ravel())[parts] >= min_area) & mask


def threshold_components(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Otsu foreground, 8-connected components: touching nuclei merge (the naive baseline)."""
    return label(foreground(image, sigma), connectivity=2).astype(np.uint32)


def watershed_nuclei(
    image: np.ndarray, sigma: float = 1.0, min_distance: int = 4, threshold: float | None = None
) -> np.ndarray:
    """Distance-transform seeds + watershed: splits touching nuclei.

    A fixed `threshold` (instead of Otsu per image) makes the result independent of the crop, which is
    what tiled whole-slide segmentation needs.
    """
    fg = foreground(image, sigma, threshold)
    dist = ndi.distance_transform_edt(fg)
    dist = gaussian(dist, 1.0, preserve_range=True)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=label(fg), exclude_border=False)
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg).astype(np.uint32)
