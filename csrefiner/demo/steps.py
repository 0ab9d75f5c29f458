"""The csrefiner options of every demo step, written into data/demo.json.

`csrefiner demo run` executes the steps in-process and the pipeline (-profile test, workflows/demo.nf) as
tasks; both take their options from demo.json, so the two are one flow with one set of numbers.
"""

from __future__ import annotations

from csrefiner.demo import layout as L
from csrefiner.demo.config import DemoConfig

VAL_FRACTION = 0.15  # of the annotated patches, for the best checkpoint while fine-tuning
PATIENCE = 1000  # no early stop: a short demo run should spend its planned epochs


def step_options(cfg: DemoConfig) -> dict[str, str]:
    """Step -> options of its csrefiner command (the inputs and outputs are the caller's)."""
    train = f"--seed {cfg.seed} --eval-every {cfg.eval_every} --patience {PATIENCE} --batch-size {cfg.batch_size}"
    return {
        "baseline": f"--epochs {cfg.baseline_epochs} {train}",  # finetune ... --pretrained scratch
        "finetune": f"--epochs {cfg.epochs} --val-fraction {VAL_FRACTION} {train}",
        # tiles of 2 x 2 patches, no overlap: suggest's windows then fall on the patch grid
        "pool_tile": f"--tile-size {2 * cfg.patch} --overlap 0 --name {L.SLIDE}",
        "suggest": f"--patch-size {cfg.patch} --iou {L.IOU}",  # --top: config.patches (SUGGEST's `top` input)
        "evaluate": f"--iou {L.IOU}",
        "slide_tile": f"--tile-size {cfg.tile} --overlap {cfg.overlap}",  # the pipeline: --tile_size, --tile_overlap
    }


def backend_options(cfg: DemoConfig) -> dict[str, dict[str, str]]:
    """Step (baseline, finetune) -> backend -> its `finetune --option KEY=VALUE` knobs."""

    def flags(opts: dict) -> str:
        return " ".join(f"--option {k}={v}" for k, v in opts.items())

    return {
        "baseline": {b: flags({**arch, **train}) for b, (arch, train) in cfg.options.items()},
        "finetune": {b: flags(train) for b, (_arch, train) in cfg.options.items()},
    }
