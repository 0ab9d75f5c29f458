"""`csrefiner demo run`: the steps of steps.py in their order, in-process, each through the library functions of
its csrefiner command (calls.py) with the options of data/demo.json, into the layout of layout.py.

data -> baseline (trained on the easy domain, or a cached pretrained model) -> tile the annotation pool ->
segment it with the baseline and watershed -> suggest -> the simulated annotator corrects the top N ->
fine-tune -> segment + evaluate the held-out hard patches (and stardist's real image) before/after -> the whole
slide tile by tile with the best fine-tuned model -> cgef (+ h5ad) -> report. Every step is timed (wall and CPU).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from csrefiner.demo import calls
from csrefiner.demo import layout as L
from csrefiner.demo.backends import cached_baseline, usable_models
from csrefiner.demo.config import DemoConfig
from csrefiner.demo.steps import STEPS
from csrefiner.demo.timing import StepTimes, machine
from csrefiner.io import check_writable

Segmenter = tuple[Path | None, str | None]  # (model folder, BACKEND:NAME): the two ways to name a model
WATERSHED: Segmenter = (None, L.WATERSHED)


class Flow:
    def __init__(self, out: Path, cfg: DemoConfig, say: Callable[[str], None] = print, budgets: tuple = ()):
        self.out, self.cfg, self.say = out, cfg, say
        self.budgets = budgets  # --budget-sweep: an extra learning-curve step (csrefiner/demo/curve.py)
        self.times = StepTimes(say)
        self.models: list[str] = []
        self.skipped: dict[str, str] = {}
        self.cached: dict[str, str] = {}  # model -> its baseline's pretrained name (others: models/<m>-baseline)
        self.spec: dict = {}

    def path(self, rel: str) -> Path:
        return self.out / rel

    def opts(self, step: str) -> str:
        return self.spec["options"][step]

    def train_opts(self, step: str, model: str) -> str:
        """demo.json's options of a training step plus the backend's knobs (the pipeline's demoArgs)."""
        return f"{self.opts(step)} {self.spec['backend_options'][step].get(model, '')}".strip()

    def base(self, m: str) -> str | Path:
        """finetune --pretrained of model m: its cached pretrained name or its baseline folder."""
        return self.cached.get(m) or self.path(L.model_dir(m, L.BASELINE))

    def baseline_model(self, m: str) -> Segmenter:
        if m in self.cached:
            return None, f"{m}:{self.cached[m]}"
        return self.path(L.model_dir(m, L.BASELINE)), None

    def tuned_model(self, m: str) -> Segmenter:
        return self.path(L.model_dir(m, L.FINETUNED)), None

    def segment_into(self, tag: str, runs: dict[str, Segmenter], images: Path) -> None:
        """Segment `images` with every run (its name: its folder's) into predictions/<tag>/<name>."""
        for name in sorted(runs):
            calls.segment(*runs[name], images, self.path(L.predictions(tag, name)))

    # -- the steps, in the order of steps.STEPS --------------------------------------------------------------
    def check_models(self) -> None:
        self.models, self.skipped = usable_models(self.cfg, self.say)

    def data(self) -> None:
        from csrefiner.demo.data import write_demo_data

        self.spec = write_demo_data(self.path(L.DATA), self.cfg)

    def baseline(self) -> None:
        for m in self.models:
            name = cached_baseline(self.cfg, m)
            if name:
                self.cached[m] = name
                self.say(f"[demo] {m} baseline: pretrained {name} from the local cache")
                continue
            folder = self.path(L.model_dir(m, L.BASELINE))
            train, val = self.path(L.EASY_TRAIN), self.path(L.EASY_VAL)
            calls.finetune(m, train, folder, "scratch", self.train_opts("baseline", m), val)

    def pool_tile(self) -> None:
        calls.tile(self.path(L.POOL), self.path(L.POOL_TILES), self.opts("pool_tile"))

    def pool_opinions(self) -> dict[str, Segmenter]:
        """The baselines and watershed (the second opinion; with one model, the only one)."""
        return {L.method(m, L.BASELINE): self.baseline_model(m) for m in self.models} | {L.WATERSHED: WATERSHED}

    def pool_segment(self) -> None:
        self.segment_into("pool", self.pool_opinions(), self.path(L.POOL_TILES))

    def pool_predictions(self) -> list[Path]:
        return [self.path(L.predictions("pool", name)) for name in sorted(self.pool_opinions())]

    def suggest(self) -> None:
        preds, tiles = self.pool_predictions(), self.path(L.POOL_TILES)
        calls.suggest(preds, tiles, self.cfg.patches, self.path(L.SUGGEST), self.opts("suggest"))

    def annotate(self) -> None:
        from csrefiner.demo.annotate import annotate_from_data

        annotate_from_data(self.path(L.SUGGEST), self.path(L.DATA), self.path(L.ANNOTATED))

    def finetune(self) -> None:
        for m in self.models:
            out = self.path(L.model_dir(m, L.FINETUNED))
            calls.finetune(m, self.path(L.ANNOTATED), out, self.base(m), self.train_opts("finetune", m))

    def eval_runs(self) -> dict[str, Segmenter]:
        runs = {L.WATERSHED: WATERSHED}
        for m in self.models:
            runs[L.method(m, L.BASELINE)] = self.baseline_model(m)
            runs[L.method(m, L.FINETUNED)] = self.tuned_model(m)
        return runs

    def eval_segment(self) -> None:
        for tag, gt in L.eval_sets(self.out).items():
            self.segment_into(tag, self.eval_runs(), gt)

    def evaluate(self) -> None:
        """Baseline and fine-tuned models (and watershed) on each patch set; paired tests between them."""
        for tag, gt in L.eval_sets(self.out).items():
            preds = [self.path(L.predictions(tag, name)) for name in sorted(self.eval_runs())]
            calls.evaluate(gt, preds, self.path(L.evaluation(tag)), self.opts("evaluate"))

    def slide_tile(self) -> None:
        """The whole slide with the best fine-tuned model: tile, segment the tiles, stitch (SEGMENT_SLIDE)."""
        from csrefiner.demo.summary import best_model

        hard = json.loads((self.path(L.evaluation("heldout_hard")) / "summary.json").read_text())
        m = best_model(hard, self.models)
        tiles = self.path(L.SLIDE_TILES)
        calls.tile(self.path(L.SLIDE_IMAGE), tiles, self.opts("slide_tile"))
        masks = self.path(L.predictions("slide", L.method(m, L.FINETUNED)))
        calls.segment(*self.tuned_model(m), tiles, masks)
        calls.stitch(
            tiles / "manifest.json",
            masks,
            self.path(L.SLIDE_MASK),
            self.path(L.STITCH_REPORT),
            self.path(L.PREVIEW),
        )

    def cgef(self) -> None:
        calls.cgef(self.path(L.GEM), self.path(L.SLIDE_MASK), self.path(L.GEF), self.path(L.H5AD))

    def budget_sweep(self) -> None:
        from csrefiner.demo.curve import budget_sweep

        budget_sweep(self, list(self.budgets))

    def report(self) -> None:
        """run.json (what only this runner knows), then summary.json, figures/ and report.html."""
        from csrefiner.demo.summary import write_run_report

        record = {
            "runner": "csrefiner demo run",
            "timings": self.times.steps,
            "total": self.times.total(),
            "skipped_models": self.skipped,
            "machine": machine(),
        }
        (self.out / L.RUN_JSON).write_text(json.dumps(record, indent=2) + "\n")
        write_run_report(self.out)

    # -- the whole run ---------------------------------------------------------------------------------------
    def run(self) -> None:
        with self.times.step("check model backends"):  # first: an unusable --models fails before any work
            self.check_models()
        for step in STEPS:
            if step.name == "report":  # untimed: run.json is written first
                if self.budgets:
                    with self.times.step("budget sweep (learning curve)"):
                        self.budget_sweep()
                self.report()
                continue
            with self.times.step(step.title):
                RUNNERS[step.name](self)


# step name -> its runner; tests/test_pipeline_flow.py checks these are the steps of steps.STEPS
RUNNERS: dict[str, Callable[[Flow], None]] = {
    "data": Flow.data,
    "baseline": Flow.baseline,
    "pool_tile": Flow.pool_tile,
    "pool_segment": Flow.pool_segment,
    "suggest": Flow.suggest,
    "annotate": Flow.annotate,
    "finetune": Flow.finetune,
    "eval_segment": Flow.eval_segment,
    "evaluate": Flow.evaluate,
    "slide_tile": Flow.slide_tile,
    "cgef": Flow.cgef,
    "report": Flow.report,
}


def prepare_out(out: Path, force: bool) -> Path:
    """A clean output folder (the report is written last: its presence means the run completed)."""
    out = check_writable(Path(out), force)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)
    return out
