"""Generated fluorescence-like nuclei images with exact instance ground truth.

Tests, benchmarks, the demo and the pipeline's test profile all run on data made here (no downloads).
`NucleiStyle` describes a domain: sparse and sharp ("easy"), or dense, touching and blurred ("hard", like the
hippocampus regions where pretrained models fail on Stereo-seq ssDNA).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse


@dataclass(frozen=True)
class NucleiStyle:
    radius: tuple[float, float] = (6.0, 10.0)  # semi-axis range, pixels
    spacing: float = 1.6  # centre distance / mean diameter: < 1 gives touching nuclei
    fill: float = 0.8  # share of grid sites that hold a nucleus
    blur: float = 1.0  # Gaussian sigma of the optics, pixels
    noise: float = 0.04  # additive Gaussian noise (image range 0..1)
    background: float = 0.08
    brightness: tuple[float, float] = (0.45, 0.95)


EASY = NucleiStyle()
HARD = NucleiStyle(radius=(5.0, 9.0), spacing=1.05, fill=0.85, blur=2.0, noise=0.06, brightness=(0.3, 0.8))


def mix(style: NucleiStyle, **changes) -> NucleiStyle:
    return replace(style, **changes)


def nuclei_labels(shape: tuple[int, int], style: NucleiStyle = EASY, seed: int = 0, first_label: int = 1):
    """Instance labels (uint32) and a shading image of randomly placed elliptical nuclei.

    Centres sit on a jittered grid; where nuclei overlap, the one placed first keeps the pixels, so
    touching nuclei have straight shared borders like real crowded nuclei.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    r_mean = float(np.mean(style.radius))
    step = max(2.0 * r_mean * style.spacing, 2.0)
    cy, cx = np.meshgrid(np.arange(step / 2, h, step), np.arange(step / 2, w, step), indexing="ij")
    cy = cy.ravel() + rng.uniform(-0.3, 0.3, cy.size) * step
    cx = cx.ravel() + rng.uniform(-0.3, 0.3, cx.size) * step
    keep = rng.random(cy.size) < style.fill
    cy, cx = cy[keep], cx[keep]
    order = rng.permutation(cy.size)
    labels = np.zeros(shape, dtype=np.uint32)
    shading = np.zeros(shape, dtype=np.float32)
    label = first_label
    for i in order:
        a, b = rng.uniform(*style.radius, size=2)
        theta = rng.uniform(0, np.pi)
        rr, cc = ellipse(cy[i], cx[i], a, b, shape=shape, rotation=theta)
        free = labels[rr, cc] == 0
        if free.sum() < 0.35 * np.pi * a * b:  # mostly hidden behind neighbours: skip rather than leave a sliver
            continue
        rr, cc = rr[free], cc[free]
        # brighter centre, darker rim, plus chromatin texture
        d2 = ((rr - cy[i]) / a) ** 2 + ((cc - cx[i]) / b) ** 2
        value = rng.uniform(*style.brightness) * (1.0 - 0.35 * np.clip(d2, 0, 1))
        value *= 1.0 + 0.15 * rng.standard_normal(rr.size)
        labels[rr, cc] = label
        shading[rr, cc] = value
        label += 1
    return labels, shading


def render(shading: np.ndarray, style: NucleiStyle = EASY, seed: int = 0) -> np.ndarray:
    """Optics and camera: blur, background, noise; returns uint8."""
    rng = np.random.default_rng(seed + 1)
    img = ndi.gaussian_filter(shading, style.blur) if style.blur > 0 else shading
    img = img + style.background + style.noise * rng.standard_normal(img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def nuclei_image(shape: tuple[int, int] = (256, 256), style: NucleiStyle = EASY, seed: int = 0):
    """(uint8 image, uint32 labels) of one generated field of nuclei."""
    labels, shading = nuclei_labels(shape, style, seed)
    return render(shading, style, seed), labels
