"""Augmentation shared by every backend: flips, 90-degree rotations and intensity jitter, seeded.

Geometric transforms act on image and labels together (labels are permuted, never interpolated); intensity
jitter (gain, offset, gamma, noise) acts on the normalised image only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    flips: bool = True
    rot90: bool = True
    gain: float = 0.2  # multiply by U(1 - gain, 1 + gain)
    offset: float = 0.1  # add U(-offset, offset)
    gamma: float = 0.2  # power U(1 - gamma, 1 + gamma) on the clipped [0, 1] part
    noise: float = 0.03  # additive Gaussian, sigma U(0, noise)

    def record(self) -> dict:
        return asdict(self)


def geometric(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, aug: Augment):
    """Random flip / transpose / rot90 of a (H, W[, C]) image and its (H, W) labels (square patches only rotate)."""
    if aug.flips and rng.random() < 0.5:
        image, labels = image[::-1], labels[::-1]
    if aug.flips and rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if aug.rot90 and labels.shape[0] == labels.shape[1]:
        k = int(rng.integers(4))
        image, labels = np.rot90(image, k, axes=(0, 1)), np.rot90(labels, k)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def intensity(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Jitter a normalised float image (about [0, 1])."""
    img = image.astype(np.float32, copy=True)
    if aug.gamma:
        g = rng.uniform(1 - aug.gamma, 1 + aug.gamma)
        pos = np.clip(img, 0, None)
        img = np.where(img > 0, np.power(np.minimum(pos, 1.0), g) + np.maximum(pos - 1.0, 0), img)
    if aug.gain:
        img *= rng.uniform(1 - aug.gain, 1 + aug.gain)
    if aug.offset:
        img += rng.uniform(-aug.offset, aug.offset)
    if aug.noise:
        img += rng.normal(0, rng.uniform(0, aug.noise), img.shape).astype(np.float32)
    return img


def augment_pair(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, aug: Augment = Augment()):
    image, labels = geometric(image, labels, rng, aug)
    return intensity(image, rng, aug), labels
