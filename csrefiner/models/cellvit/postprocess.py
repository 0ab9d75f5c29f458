"""HoVer-Net-style instances from the nucleus probability and HV maps (as CellViT post-processes).

1. nucleus mask: probability >= `prob_threshold`, specks under `min_size` pixels removed;
2. edges: the x-gradient of the horizontal map and the y-gradient of the vertical map (Sobel filters of size
   `ksize`) are strongly negative where two nuclei meet (+1 -> -1); scaled to [0, 1] and inverted, their
   maximum is an edge map (1 on borders);
3. markers: mask minus edges >= `marker_threshold`, holes filled, opened, specks removed;
4. marker-controlled watershed of the smoothed inverted edge map inside the mask -> uint32 instances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import comb

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk
from skimage.segmentation import relabel_sequential, watershed


@dataclass(frozen=True)
class PostProcess:
    prob_threshold: float = 0.5
    marker_threshold: float = 0.4
    ksize: int = 11  # HoVer-Net uses 21 for 40x H&E (nuclei ~2x larger than in 0.5 um ssDNA)
    min_size: int = 10

    def record(self) -> dict:
        return asdict(self)


def sobel_kernels(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(d/dx, d/dy) Sobel kernels of odd `size`: binomial smoothing times a binomial-smoothed central difference."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"Sobel size {size} must be odd and >= 3")
    smooth = np.array([comb(size - 1, k) for k in range(size)], dtype=np.float64)
    inner = np.array([comb(size - 3, k) for k in range(size - 2)], dtype=np.float64)
    diff = np.convolve(inner, [1.0, 0.0, -1.0])[::-1]  # increasing weights to the right: d/dx > 0 on a rising ramp
    kx = np.outer(smooth, diff)
    kx /= np.abs(kx).sum() / 2
    return kx, kx.T.copy()


def drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero the components with fewer than `min_size` pixels."""
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    return np.where(small[labels], 0, labels)


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def instances(prob: np.ndarray, hv: np.ndarray, pp: PostProcess = PostProcess()) -> np.ndarray:
    """(H, W) nucleus probability and (2, H, W) HV maps -> (H, W) uint32 labels 1..n."""
    mask = prob >= pp.prob_threshold
    mask = drop_small(ndi.label(mask)[0], pp.min_size) > 0
    if not mask.any():
        return np.zeros(prob.shape, dtype=np.uint32)
    kx, ky = sobel_kernels(pp.ksize)
    gx = ndi.correlate(_unit(hv[0].astype(np.float64)), kx, mode="nearest")
    gy = ndi.correlate(_unit(hv[1].astype(np.float64)), ky, mode="nearest")
    edges = np.maximum(1.0 - _unit(gx), 1.0 - _unit(gy))
    edges = np.clip(edges - (~mask), 0, None)
    energy = -ndi.gaussian_filter((1.0 - edges) * mask, 0.8)
    markers = mask & (edges < pp.marker_threshold)
    markers = ndi.binary_fill_holes(markers)
    markers = ndi.binary_opening(markers, structure=disk(2))
    markers = drop_small(ndi.label(markers)[0], pp.min_size)
    labels = watershed(energy, markers=markers, mask=mask)
    return relabel_sequential(labels)[0].astype(np.uint32)
