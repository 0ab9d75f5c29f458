"""Class-weighted sampling of corrected ("hard") and pseudo-labelled ("easy") patches for fine-tuning.

As in the human-in-the-loop kidney study (seed 2, after CellViT's sampler): with N patches of which n_c belong
to class c,

    w_c = N / (gamma * n_c + (1 - gamma) * N)

gamma = 0 samples every patch equally often; gamma = 1 gives every class the same total weight (N / n_c);
the default 0.85 leans towards balance, so a few corrected hard patches are not drowned by many easy ones.
Patches are then drawn with replacement with probability proportional to their class weight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from csrefiner.errors import CsrefinerError

DEFAULT_GAMMA = 0.85


def _check_gamma(gamma: float) -> float:
    if not 0.0 <= float(gamma) <= 1.0:
        raise CsrefinerError(f"sampling gamma {gamma} is outside [0, 1]; 0 = uniform, 1 = balanced classes")
    return float(gamma)


def class_weights(counts: Mapping[str, int], gamma: float = DEFAULT_GAMMA) -> dict[str, float]:
    """w_c = N / (gamma * n_c + (1 - gamma) * N) for every class with n_c > 0."""
    gamma = _check_gamma(gamma)
    total = sum(counts.values())
    if total == 0:
        raise CsrefinerError("no training patches to weight: give at least one hard or easy patch")
    return {c: total / (gamma * n + (1 - gamma) * total) for c, n in counts.items() if n > 0}


def sample_weights(groups: Sequence[str], gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """Per-sample weights (float64, one per entry of `groups`, e.g. ["hard", "easy", "easy", ...])."""
    weights = class_weights(Counter(groups), gamma)
    return np.array([weights[g] for g in groups], dtype=np.float64)


def weighted_order(weights: Sequence[float] | np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` sample indices drawn with replacement with probability proportional to `weights` (seeded)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise CsrefinerError("sampling weights must be a non-empty list of finite, non-negative numbers")
    return np.random.default_rng(seed).choice(w.size, size=int(n), replace=True, p=w / w.sum())


def sampling_record(groups: Sequence[str], gamma: float = DEFAULT_GAMMA) -> dict:
    """What a model card records about the sampling: scheme, gamma, class counts, weights, expected shares."""
    counts = dict(sorted(Counter(groups).items()))
    weights = class_weights(counts, gamma)
    mass = {c: counts[c] * w for c, w in weights.items()}
    total = sum(mass.values())
    return {
        "scheme": "class-weighted sampling with replacement, w_c = N / (gamma * n_c + (1 - gamma) * N)",
        "gamma": float(gamma),
        "counts": counts,
        "class_weights": weights,
        "expected_share": {c: m / total for c, m in mass.items()},
    }
