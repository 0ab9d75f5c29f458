"""The demo's steps, defined once: their order, each one's pipeline process and csrefiner command, and the
options written into data/demo.json.

`csrefiner demo run` runs these steps in this order (flow.py, one runner per step, calling the library functions
of the commands with demo.json's options); the pipeline (-profile test, workflows/demo.nf) runs the same steps as
tasks, passing the same options (meta.args). tests/test_pipeline_flow.py checks that workflows/demo.nf, demo.json
and the runner list exactly these steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from csrefiner.demo import layout as L
from csrefiner.demo.config import DemoConfig

VAL_FRACTION = 0.15  # of the annotated patches, for the best checkpoint while fine-tuning
PATIENCE = 1000  # no early stop: a short demo run should spend its planned epochs


@dataclass(frozen=True)
class Step:
    name: str  # the runner's step (flow.RUNNERS); its key in demo.json's "options" when `options`
    process: str  # the process (or subworkflow) that runs it in workflows/demo.nf
    command: str  # the csrefiner command that process runs (SEGMENT_SLIDE: tile, then segment, stitch)
    title: str  # its row in the run's timings
    options: bool = False  # demo.json holds its options


STEPS = (
    Step("data", "DEMO_DATA", "demo data", "generate data (slide, patches, GEM)"),
    Step("baseline", "FINETUNE_BASELINE", "finetune", "baseline model(s)", options=True),
    Step("pool_tile", "TILE_POOL", "tile", "tile the annotation pool", options=True),
    Step("pool_segment", "SEGMENT_POOL", "segment", "segment the pool (baselines + watershed)"),
    Step("suggest", "SUGGEST_POOL", "suggest", "suggest patches to annotate", options=True),
    Step("annotate", "DEMO_ANNOTATE", "demo annotate", "simulated annotator"),
    Step("finetune", "FINETUNE_ANNOTATED", "finetune", "fine-tune on the annotated patches", options=True),
    Step("eval_segment", "SEGMENT_EVAL", "segment", "segment the patch sets before / after"),
    Step("evaluate", "EVALUATE", "evaluate", "evaluate before / after", options=True),
    Step("slide_tile", "SEGMENT_SLIDE", "tile", "segment the whole slide tile by tile + stitch", options=True),
    Step("cgef", "CGEF", "cgef", "cell-bin matrix (cgef + h5ad)"),
    Step("report", "DEMO_REPORT", "demo report", "report"),
)


def step_options(cfg: DemoConfig) -> dict[str, str]:
    """Step -> options of its csrefiner command (the inputs and outputs are the caller's)."""
    train = f"--seed {cfg.seed} --eval-every {cfg.eval_every} --patience {PATIENCE} --batch-size {cfg.batch_size}"
    options = {
        "baseline": f"--epochs {cfg.baseline_epochs} {train}",  # finetune ... --pretrained scratch
        "finetune": f"--epochs {cfg.epochs} --val-fraction {VAL_FRACTION} {train}",
        # tiles of 2 x 2 patches, no overlap: suggest's windows then fall on the patch grid
        "pool_tile": f"--tile-size {2 * cfg.patch} --overlap 0 --name {L.SLIDE}",
        "suggest": f"--patch-size {cfg.patch} --iou {L.IOU}",  # --top: config.patches (SUGGEST's `top` input)
        "evaluate": f"--iou {L.IOU}",
        "slide_tile": f"--tile-size {cfg.tile} --overlap {cfg.overlap}",  # the pipeline: --tile_size, --tile_overlap
    }
    return {s.name: options[s.name] for s in STEPS if s.options}


def backend_options(cfg: DemoConfig) -> dict[str, dict[str, str]]:
    """Step (baseline, finetune) -> backend -> its `finetune --option KEY=VALUE` knobs."""

    def flags(opts: dict) -> str:
        return " ".join(f"--option {k}={v}" for k, v in opts.items())

    return {
        "baseline": {b: flags({**arch, **train}) for b, (arch, train) in cfg.options.items()},
        "finetune": {b: flags(train) for b, (_arch, train) in cfg.options.items()},
    }
