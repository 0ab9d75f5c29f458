"""Side-by-side contour overlays: the same held-out hard patches segmented before and after fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

GT_COLOUR = (0, 230, 0)  # ground truth: green
PRED_COLOUR = (255, 0, 200)  # prediction: magenta


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grey (1-99.8 percentile stretch) as RGB uint8, for drawing on."""
    img = image.astype(np.float32)
    img = img.mean(axis=-1) if img.ndim == 3 else img
    lo, hi = np.percentile(img, (1, 99.8))
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    return (np.stack([grey] * 3, axis=-1) * 255).astype(np.uint8)


def draw_contours(image: np.ndarray, labels: np.ndarray, colour, base: np.ndarray | None = None) -> np.ndarray:
    rgb = to_rgb(image) if base is None else base.copy()
    rgb[find_boundaries(labels, mode="inner")] = colour
    return rgb


def overlay_sheet(rows: list[dict], columns: list[str], out: Path, title: str) -> Path:
    """One row per patch: the image with ground truth, then each method's contours (title: its F1).

    rows: {"name", "image", "gt", "preds": {column: labels}, "f1": {column: float}}
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = 1 + len(columns)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(3.2 * n_cols, 3.3 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        ax_row[0].imshow(draw_contours(row["image"], row["gt"], GT_COLOUR))
        ax_row[0].set_title(f"{row['name']}\nground truth ({int(len(np.unique(row['gt'])) - 1)} nuclei)", fontsize=8)
        for ax, col in zip(ax_row[1:], columns):
            ax.imshow(draw_contours(row["image"], row["preds"][col], PRED_COLOUR))
            ax.set_title(f"{col}\nF1 {row['f1'][col]:.3f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{title}  (green: ground truth, magenta: prediction; F1 at IoU 0.5)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
