"""Pictures of consensus and suggestions (PNG), for people to look at before annotating."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def display(image: np.ndarray) -> np.ndarray:
    """Float image in 0..1 for display (1st-99.8th percentile stretch)."""
    img = image.astype(np.float32)
    lo, hi = np.percentile(img, [1, 99.8])
    return np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def overlay(image: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """RGB picture with each mask's object outlines in its own colour (tab10 order)."""
    from skimage.color import gray2rgb
    from skimage.segmentation import find_boundaries

    rgb = display(image)
    rgb = gray2rgb(rgb) if rgb.ndim == 2 else rgb
    colours = _plt().get_cmap("tab10").colors
    for k, mask in enumerate(masks):
        rgb[find_boundaries(mask, mode="inner")] = colours[k % 10]
    return rgb


def suggestion_sheet(panels: list[dict], names: Sequence[str], path: Path, columns: int = 4) -> Path:
    """Grid of the top-ranked patches: image with every model's outlines; title = rank, score, name."""
    plt = _plt()
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.5 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, p in zip(axes.ravel(), panels):
        ax.imshow(overlay(p["image"], p["models"]))
        ax.set_title(f"#{p['rank']}  disagreement {p['disagreement']:.2f}\n{p['name']}", fontsize=7)
    colours = plt.get_cmap("tab10").colors
    handles = [plt.Line2D([], [], color=colours[k % 10], lw=2, label=n) for k, n in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(names), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def agreement_plot(objects: pd.DataFrame, tiles: pd.DataFrame, path: Path) -> Path:
    """Histogram of per-object agreement and per-tile disagreement."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.hist(objects["agreement"].dropna(), bins=20, range=(0, 1), color="tab:blue")
    a.set_xlabel("object agreement (votes / models x mean IoU)")
    a.set_ylabel("fused objects")
    b.hist(tiles["disagreement"], bins=20, range=(0, 1), color="tab:orange")
    b.set_xlabel("tile disagreement (1 - mean pairwise F1)")
    b.set_ylabel("tiles")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
