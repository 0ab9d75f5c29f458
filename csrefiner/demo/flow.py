"""`csrefiner demo run`: the CSRefiner experiment in miniature, as the sequence of csrefiner commands that the
pipeline's test profile (workflows/demo.nf) runs as tasks, with the options of data/demo.json.

data -> baseline (trained on the easy domain, or a cached pretrained model) -> tile the annotation pool ->
segment it with the baseline and watershed -> `suggest` -> the simulated annotator corrects the top N ->
`finetune` -> segment + `evaluate` the held-out hard patches (and stardist's real image) before/after ->
`tile` / `segment` / `stitch` the whole slide with the best fine-tuned model -> `cgef` (+ h5ad) ->
`demo report`. Every step is timed (wall and CPU).
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from csrefiner.demo import layout as L
from csrefiner.demo.config import AUTO, DemoConfig
from csrefiner.demo.timing import StepTimes
from csrefiner.errors import CsrefinerError
from csrefiner.io import check_writable
from csrefiner.models import get_backend

RUN_JSON = "run.json"  # what only `demo run` knows: step times, skipped models, the machine
WATERSHED_ARGS = ["--model", "watershed"]


def backend_problem(name: str) -> str | None:
    """Why backend `name` cannot be fine-tuned here (unknown, classical, not installed), or None."""
    if name == L.WATERSHED:
        return "watershed has nothing to fine-tune (it is the demo's second opinion and reference)"
    try:
        get_backend(name).check_installed()
    except CsrefinerError as exc:
        return str(exc)
    except ImportError as exc:  # a backend file whose own imports fail
        return f"backend '{name}' cannot be imported here ({exc})"
    return None


def pretrained_for(spec: str | None, model: str) -> str | None:
    """The baseline of `model`: a pretrained name, "scratch" (train one on the easy block) or None (auto).

    --pretrained is one name for every model, or BACKEND:NAME items (models not listed: auto)."""
    for item in [s.strip() for s in (spec or "").split(",") if s.strip()]:
        backend, sep, name = item.partition(":")
        if not sep:
            return item
        if backend == model:
            return name
    return None


def cached_default(model: str) -> str | None:
    """The backend's default pretrained model when the local cache has it (never downloaded), else None."""
    backend = get_backend(model)
    try:
        return backend.default_pretrained if backend.resolve(backend.default_pretrained).path else None
    except CsrefinerError:
        return None


def csrefiner(*args) -> None:
    """One csrefiner command, in this process (what a pipeline task runs in its container)."""
    import typer.main

    from csrefiner.cli import app

    typer.main.get_command(app).main(args=[str(a) for a in args], standalone_mode=False)


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

    def opts(self, step: str) -> list[str]:
        return shlex.split(self.spec["options"][step])

    def train_opts(self, step: str, model: str) -> list[str]:
        knobs = self.spec["backend_options"][step].get(model, "")
        return self.opts(step) + shlex.split(knobs) + ["--device", "cpu"]

    # -- data and models -------------------------------------------------------------------------------------
    def make_data(self) -> None:
        from csrefiner.demo.data import write_demo_data

        self.spec = write_demo_data(self.path(L.DATA), self.cfg)

    def check_models(self) -> None:
        names = [n for n in self.cfg.models if n != AUTO]
        # auto: the backends the demo has small-network knobs for, those installed (no note for the others)
        auto = [b for b in self.cfg.options if b not in names] if AUTO in self.cfg.models else []
        for name in names + auto:
            problem = backend_problem(name)
            if problem and name in auto:
                continue
            if problem:
                self.skipped[name] = problem
                self.say(f"[demo] skipping model '{name}': {problem}")
            else:
                self.models.append(name)
        if not self.models:
            raise CsrefinerError(
                f"demo: none of the models {', '.join(self.cfg.models)} can run here: "
                + "; ".join(self.skipped.values())
            )

    def train_baselines(self) -> None:
        for m in self.models:
            name = pretrained_for(self.cfg.pretrained, m)
            name = cached_default(m) if name is None else name
            if name and name != "scratch":
                get_backend(m).resolve(name)  # a clear error when it is not in the local cache
                self.cached[m] = name
                self.say(f"[demo] {m} baseline: pretrained {name} from the local cache")
                continue
            folder = self.path(L.model_dir(m, L.BASELINE))
            csrefiner(
                "finetune",
                "--model",
                m,
                "--train",
                self.path(L.EASY_TRAIN),
                "--val",
                self.path(L.EASY_VAL),
                "--pretrained",
                "scratch",
                "--out",
                folder,
                *self.train_opts("baseline", m),
            )

    def baseline(self, m: str) -> list[str]:
        """`segment` arguments of model m's baseline."""
        if m in self.cached:
            return ["--model", f"{m}:{self.cached[m]}"]
        return ["--model-dir", self.path(L.model_dir(m, L.BASELINE))]

    def tuned(self, m: str) -> list[str]:
        return ["--model-dir", self.path(L.model_dir(m, L.FINETUNED))]

    def segment_all(self, runs: dict[str, list[str]], images: Path, tag: str) -> list:
        """Segment `images` with every run (name -> `segment` model arguments) into predictions/<tag>/<name>;
        the `--pred` arguments, in name order (each opinion's name is its folder's, as in the pipeline)."""
        preds = []
        for name in sorted(runs):
            out = self.path(L.predictions(tag, name))
            csrefiner("segment", *runs[name], "--input", images, "--out", out, "--device", "cpu")
            preds += ["--pred", out]
        return preds

    # -- suggest + annotate ----------------------------------------------------------------------------------
    def suggest_patches(self) -> None:
        tiles = self.path(L.POOL_TILES)
        csrefiner("tile", "--image", self.path(L.POOL), "--out", tiles, *self.opts("pool_tile"))
        opinions = {L.method(m, L.BASELINE): self.baseline(m) for m in self.models}
        opinions[L.WATERSHED] = WATERSHED_ARGS  # the second opinion (with one model, the only one)
        preds = self.segment_all(opinions, tiles, "pool")
        csrefiner(
            "suggest",
            *preds,
            "--image-dir",
            tiles,
            "--top",
            self.cfg.patches,
            "--out",
            self.path(L.SUGGEST),
            *self.opts("suggest"),
        )
        csrefiner(
            "demo",
            "annotate",
            "--suggested",
            self.path(L.SUGGEST),
            "--data",
            self.path(L.DATA),
            "--out",
            self.path(L.ANNOTATED),
        )

    def fine_tune(self) -> None:
        for m in self.models:
            base = self.cached.get(m) or self.path(L.model_dir(m, L.BASELINE))
            csrefiner(
                "finetune",
                "--model",
                m,
                "--train",
                self.path(L.ANNOTATED),
                "--pretrained",
                base,
                "--out",
                self.path(L.model_dir(m, L.FINETUNED)),
                *self.train_opts("finetune", m),
            )

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self) -> None:
        """Baseline and fine-tuned models (and watershed) on each patch set; paired tests between them."""
        for tag, gt in L.eval_sets(self.out).items():
            runs = {L.WATERSHED: WATERSHED_ARGS}
            for m in self.models:
                runs[L.method(m, L.BASELINE)] = self.baseline(m)
                runs[L.method(m, L.FINETUNED)] = self.tuned(m)
            preds = self.segment_all(runs, gt, tag)
            csrefiner("evaluate", "--gt", gt, *preds, "--out", self.path(L.evaluation(tag)), *self.opts("evaluate"))

    # -- whole slide + matrix --------------------------------------------------------------------------------
    def whole_slide(self) -> None:
        from csrefiner.demo.summary import best_model

        hard = json.loads((self.path(L.evaluation("heldout_hard")) / "summary.json").read_text())
        m = best_model(hard, self.models)
        tiles = self.path(L.SLIDE_TILES)
        csrefiner("tile", "--image", self.path(L.SLIDE_IMAGE), "--out", tiles, *self.opts("slide_tile"))
        _, masks = self.segment_all({L.method(m, L.FINETUNED): self.tuned(m)}, tiles, "slide")
        csrefiner(
            "stitch",
            "--manifest",
            tiles / "manifest.json",
            "--tiles",
            masks,
            "--out",
            self.path(L.SLIDE_MASK),
            "--report",
            self.path(L.STITCH_REPORT),
            "--preview",
            self.path(L.PREVIEW),
        )

    def cell_bin(self) -> None:
        csrefiner(
            "cgef",
            "--matrix",
            self.path(L.GEM),
            "--mask",
            self.path(L.SLIDE_MASK),
            "--out",
            self.path(L.GEF),
            "--h5ad",
            self.path(L.H5AD),
        )

    def write_run_record(self) -> None:
        from csrefiner.demo.summary import machine

        record = {
            "runner": "csrefiner demo run",
            "timings": self.times.steps,
            "total": self.times.total(),
            "skipped_models": self.skipped,
            "machine": machine(),
        }
        (self.out / RUN_JSON).write_text(json.dumps(record, indent=2) + "\n")

    # -- the whole run ---------------------------------------------------------------------------------------
    def run(self) -> None:
        steps = [
            ("check model backends", self.check_models),  # first: an unusable --models fails before any work
            ("generate data (slide, patches, GEM)", self.make_data),
            ("baseline model(s)", self.train_baselines),
            ("suggest patches to annotate", self.suggest_patches),
            ("fine-tune on the annotated patches", self.fine_tune),
            ("evaluate before / after", self.evaluate),
            ("segment the whole slide tile by tile + stitch", self.whole_slide),
            ("cell-bin matrix (cgef + h5ad)", self.cell_bin),
        ]
        if self.budgets:
            from csrefiner.demo.curve import budget_sweep

            steps.append(("budget sweep (learning curve)", lambda: budget_sweep(self, list(self.budgets))))
        for name, fn in steps:
            with self.times.step(name):
                fn()
        self.write_run_record()


def prepare_out(out: Path, force: bool) -> Path:
    """A clean output folder (the report is written last: its presence means the run completed)."""
    out = check_writable(Path(out), force)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)
    return out
