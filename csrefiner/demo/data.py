"""The demo's data, generated on the spot with exact ground truth (nothing is downloaded).

- A "slide": a sparse, sharp easy block (EASY style) left of a dense, blurred hard block of touching nuclei
  (HARD style, like the hippocampus where pretrained models fail on Stereo-seq ssDNA), with its uint32 labels.
- Patch sets cut from it: easy-domain patches (the from-scratch baseline's training data), the annotation
  pool (the top rows, where `suggest` looks) and held-out hard patches (the rows below, never annotated).
- stardist's shipped real annotated nuclei image, cut into patches: a real-data check of both models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.segmentation import relabel_sequential

from csrefiner.demo import layout as L
from csrefiner.demo.config import DemoConfig
from csrefiner.demo.gem import write_gem
from csrefiner.demo.steps import backend_options, step_options
from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_dir, check_writable, patch_name, write_image, write_labels
from csrefiner.synth import EASY, HARD, nuclei_labels, render

SLIDE = L.SLIDE


@dataclass(frozen=True)
class Box:
    y: int
    x: int
    h: int
    w: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


def make_slide(cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, uint32 labels) of the slide; each block is drawn and imaged in its own style."""
    h, w = cfg.shape
    easy_lab, easy_shade = nuclei_labels((h, cfg.hard_x0), EASY, cfg.seed)
    hard_lab, hard_shade = nuclei_labels((h, w - cfg.hard_x0), HARD, cfg.seed + 1, first_label=int(easy_lab.max()) + 1)
    image = np.concatenate([render(easy_shade, EASY, cfg.seed), render(hard_shade, HARD, cfg.seed + 1)], axis=1)
    labels = np.concatenate([easy_lab, hard_lab], axis=1).astype(np.uint32)
    return image, labels


def grid_boxes(cfg: DemoConfig, rows: range, cols: range) -> list[Box]:
    p = cfg.patch
    return [Box(r * p, c * p, p, p) for r in rows for c in cols]


def easy_boxes(cfg: DemoConfig) -> list[Box]:
    """Easy-domain patches in the pool rows (the baseline's training + validation data)."""
    return grid_boxes(cfg, range(cfg.pool_rows), range(cfg.easy_cols))


def heldout_boxes(cfg: DemoConfig) -> list[Box]:
    """Hard-region patches below the annotation pool: only ever used to evaluate."""
    return grid_boxes(cfg, range(cfg.pool_rows, cfg.rows), range(cfg.easy_cols, cfg.easy_cols + cfg.hard_cols))


def write_patches(
    folder: Path, image: np.ndarray, labels: np.ndarray, boxes: list[Box], slide: str = SLIDE
) -> list[str]:
    """`<slide>-x.._y.._w.._h..-img.tif` + `-mask.tif` (labels renumbered 1..n inside the patch)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for b in boxes:
        key = patch_name(slide, b.x, b.y, b.w, b.h)
        write_image(folder / f"{key}-img.tif", image[b.slices])
        write_labels(folder / f"{key}-mask.tif", relabel_sequential(labels[b.slices])[0].astype(np.uint32))
        keys.append(key)
    return keys


def real_nuclei(patch: int) -> tuple[np.ndarray, np.ndarray, list[Box]] | None:
    """stardist's real annotated nuclei image (uint16 image, uint32 mask) and its patch grid, or None."""
    try:
        from stardist.data import test_image_nuclei_2d
    except ImportError:
        return None
    img, mask = test_image_nuclei_2d(return_mask=True)
    h, w = img.shape[:2]
    side = min(patch, h, w)
    boxes = [Box(y, x, side, side) for y in range(0, h - side + 1, side) for x in range(0, w - side + 1, side)]
    return img, mask.astype(np.uint32), boxes


def write_demo_data(out: Path, cfg: DemoConfig, force: bool = False) -> dict:
    """Write the run's data/ folder (layout.py names) and data/demo.json; returns demo.json's content."""
    out = check_writable(Path(out), force)
    image, labels = make_slide(cfg)
    easy = easy_boxes(cfg)
    if len(easy) < cfg.easy_train + 2:
        raise CsrefinerError(f"demo: {len(easy)} easy patches, need {cfg.easy_train + 2}; enlarge the easy block")
    real = real_nuclei(256) if cfg.real else None  # 4 patches of the 512 px image
    with atomic_dir(out, force=force) as d:
        write_image(d / "slide.tif", image)
        write_labels(d / "slide-gt-mask.tif", labels)
        write_image(d / "pool.tif", image[: cfg.pool_rows * cfg.patch])
        write_patches(d / "easy_train", image, labels, easy[: cfg.easy_train])
        write_patches(d / "easy_val", image, labels, easy[cfg.easy_train : cfg.easy_train + 2])
        heldout = write_patches(d / "heldout_hard", image, labels, heldout_boxes(cfg))
        if real is not None:
            write_patches(d / "real", real[0], real[1], real[2], slide="stardist_real")
        gem = write_gem(d / "slide.gem.gz", labels, cfg.hard_x0, cfg.gem_genes, cfg.seed)
        spec = {
            "config": cfg.record(),
            "data": {
                "slide_shape": list(image.shape),
                "nuclei": int(labels.max()),
                "easy_nuclei": int(np.unique(labels[:, : cfg.hard_x0]).size - 1),
                "hard_nuclei": int(np.unique(labels[:, cfg.hard_x0 :]).size - 1),
                "easy_train_patches": cfg.easy_train,
                "easy_val_patches": 2,
                "heldout_hard_patches": len(heldout),
                "pool_shape": [cfg.pool_rows * cfg.patch, image.shape[1]],
                "real_patches": len(real[2]) if real is not None else 0,
                "real_source": "stardist.data.test_image_nuclei_2d"
                if real is not None
                else "not used (--quick)"
                if not cfg.real
                else "stardist not installed",
                "gem": gem,
            },
            "options": step_options(cfg),
            "backend_options": backend_options(cfg),
        }
        (d / Path(L.DEMO_JSON).name).write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def read_spec(data_dir: Path) -> dict:
    """demo.json of a folder written by `demo data`, or a clear error."""
    path = Path(data_dir) / Path(L.DEMO_JSON).name
    if not path.is_file():
        raise CsrefinerError(f"{path}: missing; give the folder `csrefiner demo data --out` wrote")
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CsrefinerError(f"{path}: unreadable ({exc}); run `csrefiner demo data` again") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise CsrefinerError(f"{path}: no 'config' entry, so not written by `csrefiner demo data`; run it again")
    return spec
