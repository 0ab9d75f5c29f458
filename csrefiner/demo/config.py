"""What one demo run is made of: slide geometry, patch counts, epochs, seeds (all recorded in the report).

The full demo reproduces the CSRefiner experiment in miniature on one CPU (13 min on 2 idle cores with Cellpose
and StarDist); `quick` keeps every step but shrinks the slide, the patch counts and the epochs (~1.5 min).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

AUTO = "auto"  # --models auto: every installed backend with demo knobs below (cellpose, stardist)
DEFAULT_MODELS = (AUTO,)
# Backend knobs for the demo's small networks (`finetune --option`): (architecture, training). The
# architecture knobs build the from-scratch baseline; fine-tuning keeps its base model's architecture, so it
# gets the training knobs only.
BACKEND_OPTIONS = {
    # a light CPnet (cellpose 3 needs the last width 256). A model diameter of 17 px (the generated nuclei's)
    # did not train in 40 steps here; the default 30 did in the backend's own tests, so it stays.
    "cellpose": ({"nbase": "2,16,32,64,256"}, {}),
    # 16 rays, 16 base filters; 8 random 64 px crops per patch and epoch (as tests/test_stardist_backend.py)
    "stardist": ({"n_rays": "16", "unet_n_filter_base": "16"}, {"patch_size": "64", "repeats": "8"}),
}


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    # baseline: a pretrained name from the local cache, "scratch" (train one on the easy block), or None: the
    # backend's default pretrained model when it is cached, else scratch
    pretrained: str | None = None
    patch: int = 256  # side of annotated / evaluated patches
    # slide layout, in patches: an easy (sparse, sharp) block left of a hard (dense, blurred) block; the
    # top `pool_rows` rows are what `suggest` may offer for annotation, the rows below are held out
    easy_cols: int = 4
    hard_cols: int = 6
    pool_rows: int = 4
    heldout_rows: int = 2
    patches: int = 20  # patches `suggest` picks and the simulated annotator corrects
    easy_train: int = 8  # easy-domain patches the from-scratch baseline learns from (+ 2 for validation)
    baseline_epochs: int = 15  # 8 patches, batch 2: 60 optimiser steps on easy data
    epochs: int = 15  # fine-tuning epochs (17 training patches, batch 2: 135 steps)
    eval_every: int = 5  # validation F1 (best checkpoint) every n epochs
    batch_size: int = 2  # small batches: more optimiser steps from few patches
    tile: int = 1024  # whole-slide segmentation tiles
    overlap: int = 64  # >= 2 x nuclear diameter (stitch's rule of thumb)
    gem_genes: int = 40
    threads: int = 2
    real: bool = True  # also evaluate on stardist's real annotated image (when stardist is installed)
    quick: bool = False
    options: dict = field(default_factory=lambda: dict(BACKEND_OPTIONS))

    @property
    def rows(self) -> int:
        return self.pool_rows + self.heldout_rows

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows * self.patch, (self.easy_cols + self.hard_cols) * self.patch

    @property
    def hard_x0(self) -> int:
        """First slide column of the hard region."""
        return self.easy_cols * self.patch

    def record(self) -> dict:
        out = asdict(self)
        out["models"] = list(self.models)
        out["slide_shape"] = list(self.shape)
        out["hard_x0"] = self.hard_x0
        return out


# quick (the test): 128 px patches (cellpose then trains on 128 px crops, ~3x cheaper than 224), a 768 x 768
# slide, 8 suggested patches, 6 held-out ones, fewer epochs, no real-image evaluation (spares TensorFlow's import)
QUICK = dict(
    patch=128,
    easy_cols=3,
    hard_cols=3,
    pool_rows=4,
    heldout_rows=2,
    patches=8,
    easy_train=4,
    baseline_epochs=20,
    epochs=10,
    tile=512,
    real=False,
    quick=True,
)


def make_config(quick: bool = False, **changes) -> DemoConfig:
    """The full or quick preset, with the user's options (None = keep the preset's value) on top."""
    from csrefiner.wsi.tiling import check_grid

    base = replace(DemoConfig(), **QUICK) if quick else DemoConfig()
    cfg = replace(base, **{k: v for k, v in changes.items() if v is not None})
    check_grid(cfg.tile, cfg.overlap, "--tile-size/--overlap")
    return cfg
