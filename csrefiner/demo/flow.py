"""The demo's flow: the CSRefiner experiment in miniature, made only of csrefiner's own library calls.

data -> baseline (trained on the easy domain, or a cached pretrained model) -> evaluate on held-out hard
patches -> `suggest` ranks the annotation pool by model disagreement -> the simulated annotator corrects the
top N (ground truth replaces the consensus) -> `finetune` -> evaluate again on the same held-out patches ->
`tile` / `segment` / `stitch` the whole slide -> `cgef` (+ h5ad). Every step is timed (wall and CPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from skimage.segmentation import relabel_sequential

from csrefiner.demo import data as D
from csrefiner.demo.config import DemoConfig
from csrefiner.demo.gem import write_gem
from csrefiner.demo.timing import StepTimes
from csrefiner.errors import CsrefinerError
from csrefiner.io import check_writable, parse_coords, read_image, read_labels, write_image, write_labels
from csrefiner.metrics.evaluate import evaluate_arrays, evaluate_folders
from csrefiner.metrics.report import write_evaluation
from csrefiner.models import get_backend
from csrefiner.models.base import TrainParams
from csrefiner.models.classical import watershed_nuclei
from csrefiner.models.finetune import finetune
from csrefiner.models.segment import segment

IOU = 0.5
WATERSHED = "watershed"


def backend_problem(name: str) -> str | None:
    """Why backend `name` cannot run here (not written yet, not installed), or None."""
    try:
        get_backend(name).check_installed()
    except CsrefinerError as exc:
        return str(exc)
    except ImportError as exc:  # the backend's file is not in this checkout (yet)
        return f"backend '{name}' is not available in this csrefiner ({exc})"
    return None


def pretrained_for(spec: str | None, model: str) -> str | None:
    """--pretrained: one name for every model, or BACKEND:NAME items; None = train a baseline from scratch."""
    for item in [s.strip() for s in (spec or "").split(",") if s.strip()]:
        backend, sep, name = item.partition(":")
        if not sep:
            return item
        if backend == model:
            return name
    return None


def method(model: str, stage: str) -> str:
    return f"{model} {stage}"


class Flow:
    def __init__(self, out: Path, cfg: DemoConfig, say: Callable[[str], None] = print):
        self.out, self.cfg, self.say = out, cfg, say
        self.times = StepTimes(say)
        self.models: list[str] = []
        self.skipped: dict[str, str] = {}
        self.baseline: dict[str, dict] = {}  # model -> {"model_dir" | "model": ..., "card": ...}
        self.finetuned: dict[str, dict] = {}
        self.info: dict = {}

    def params(self, model: str, epochs: int) -> TrainParams:
        return TrainParams(epochs=epochs, seed=self.cfg.seed, eval_every=self.cfg.eval_every, patience=1000,
                           batch_size=self.cfg.batch_size,
                           device="cpu", options=dict(self.cfg.options.get(model, {})))

    # -- data ------------------------------------------------------------------------------------------------
    def make_data(self) -> None:
        cfg, d = self.cfg, self.out / "data"
        image, labels = D.make_slide(cfg)
        self.image, self.labels = image, labels
        d.mkdir(parents=True)
        write_image(d / "slide.tif", image)
        write_labels(d / "slide-gt-mask.tif", labels)
        write_image(d / "pool.tif", image[: cfg.pool_rows * cfg.patch])  # where `suggest` may look
        easy = D.easy_boxes(cfg)
        if len(easy) < cfg.easy_train + 2:
            raise CsrefinerError(f"demo: {len(easy)} easy patches, need {cfg.easy_train + 2}; enlarge the easy block")
        D.write_patches(d / "easy_train", image, labels, easy[: cfg.easy_train])
        D.write_patches(d / "easy_val", image, labels, easy[cfg.easy_train: cfg.easy_train + 2])
        heldout = D.write_patches(d / "heldout_hard", image, labels, D.heldout_boxes(cfg))
        real = D.real_nuclei(256) if cfg.real else None  # 4 patches of the 512 px image
        if real is not None:
            D.write_patches(d / "real", real[0], real[1], real[2], slide="stardist_real")
        gem = write_gem(d / "slide.gem.gz", labels, cfg.hard_x0, cfg.gem_genes, cfg.seed)
        self.info["data"] = {
            "slide_shape": list(image.shape), "nuclei": int(labels.max()),
            "easy_nuclei": int(np.unique(labels[:, : cfg.hard_x0]).size - 1),
            "hard_nuclei": int(np.unique(labels[:, cfg.hard_x0:]).size - 1),
            "easy_train_patches": cfg.easy_train, "easy_val_patches": 2, "heldout_hard_patches": len(heldout),
            "pool_shape": [cfg.pool_rows * cfg.patch, image.shape[1]],
            "real_patches": len(real[2]) if real is not None else 0,
            "real_source": "stardist.data.test_image_nuclei_2d" if real is not None
            else "not used (--quick)" if not cfg.real else "stardist not installed",
            "gem": gem,
        }

    def check_models(self) -> None:
        for name in self.cfg.models:
            problem = backend_problem(name)
            if problem:
                self.skipped[name] = problem
                self.say(f"[demo] skipping model '{name}': {problem}")
            else:
                self.models.append(name)
        if not self.models:
            raise CsrefinerError(f"demo: none of the models {', '.join(self.cfg.models)} can run here: "
                                 + "; ".join(self.skipped.values()))

    # -- models ----------------------------------------------------------------------------------------------
    def train_baselines(self) -> None:
        for m in self.models:
            spec = pretrained_for(self.cfg.pretrained, m)
            if spec:
                get_backend(m).resolve(spec)  # a clear error when it is not in the local cache
                self.baseline[m] = {"model": f"{m}:{spec}", "base": spec, "source": f"pretrained {spec} (local cache)"}
                continue
            folder = self.out / "models" / f"{m}-baseline"
            card = finetune(m, self.out / "data" / "easy_train", folder, "scratch",
                            self.params(m, self.cfg.baseline_epochs), val_dir=self.out / "data" / "easy_val")
            self.baseline[m] = {"model_dir": folder, "base": str(folder), "card": card,
                                "source": "trained from scratch on the easy domain"}

    def fine_tune(self) -> None:
        for m in self.models:
            folder = self.out / "models" / f"{m}-finetuned"
            card = finetune(m, self.out / "annotated", folder, self.baseline[m]["base"],
                            self.params(m, self.cfg.epochs), val_fraction=0.15)
            self.finetuned[m] = {"model_dir": folder, "card": card, "source": f"fine-tuned from the {m} baseline"}

    def predict(self, which: dict, images: Path, out: Path, manifest: Path | None = None) -> dict:
        params = TrainParams(seed=self.cfg.seed, device="cpu")
        return segment(which.get("model_dir"), which.get("model"), images, out, params, manifest=manifest)

    # -- suggest + annotate ----------------------------------------------------------------------------------
    def suggest_patches(self) -> None:
        from csrefiner.hitl.suggest import suggest_folders
        from csrefiner.wsi.tile import MANIFEST, tile_slide

        cfg, tiles = self.cfg, self.out / "tiles" / "pool"
        # tiles of 2 x 2 patches, no overlap: suggest's windows then fall on the patch grid
        tile_slide(self.out / "data" / "pool.tif", tiles, tile_size=2 * cfg.patch, overlap=0, name=D.SLIDE)
        preds, names = [], []
        for m in self.models:
            folder = self.out / "predictions" / "pool" / f"{m}-baseline"
            self.predict(self.baseline[m], tiles, folder, manifest=tiles / MANIFEST)
            preds.append(folder)
            names.append(method(m, "baseline"))
        ws = self.out / "predictions" / "pool" / WATERSHED  # the second opinion (with one model, the only one)
        ws.mkdir(parents=True)
        for path in sorted(tiles.glob("*-img.tif")):
            write_labels(ws / path.name.replace("-img.tif", "-mask.tif"), watershed_nuclei(read_image(path)))
        preds.append(ws)
        names.append(WATERSHED)
        ranking, summary = suggest_folders(preds, tiles, self.out / "suggest", names, top=cfg.patches,
                                           patch_size=cfg.patch, iou=IOU)
        hard = self.annotate(summary["top"])
        top = ranking[ranking.selected]
        self.info["suggest"] = {
            "models": names, "ranked": int(len(ranking)), "selected": len(summary["top"]), "in_hard_region": hard,
            "mean_disagreement_selected": float(top.disagreement.mean()),
            "mean_disagreement_not_selected": float(ranking[~ranking.selected].disagreement.mean())
            if (~ranking.selected).any() else None,
        }

    def annotate(self, names: list[str]) -> int:
        """The simulated annotator: each suggested patch gets its ground truth in place of the consensus."""
        src, dst = self.out / "suggest" / "patches", self.out / "annotated"
        dst.mkdir()
        hard = 0
        for name in names:
            c = parse_coords(name)
            box = D.Box(c.y, c.x, c.h, c.w)
            shutil.copy(src / f"{name}-img.tif", dst / f"{name}-img.tif")
            write_labels(dst / f"{name}-mask.tif", relabel_sequential(self.labels[box.slices])[0].astype(np.uint32))
            hard += D.in_hard_region(self.cfg, c.x, c.w)
        return int(hard)

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate_set(self, gt: Path, tag: str) -> dict:
        """Baseline and fine-tuned models (and the watershed) on one patch set; paired tests between them."""
        preds = self.out / "predictions" / tag
        results = []
        for m in self.models:
            for stage, which in (("baseline", self.baseline[m]), ("fine-tuned", self.finetuned[m])):
                folder = preds / f"{m}-{stage}"
                self.predict(which, gt, folder)
                results += evaluate_folders(gt, folder, method(m, stage), iou=IOU)
        ws = preds / WATERSHED
        ws.mkdir(parents=True)
        for path in sorted(gt.glob("*-img.tif")):
            write_labels(ws / path.name.replace("-img.tif", "-mask.tif"), watershed_nuclei(read_image(path)))
        results += evaluate_folders(gt, ws, WATERSHED, iou=IOU)
        return write_evaluation(results, self.out / "evaluation" / tag, iou=IOU)

    def evaluate(self) -> None:
        self.info["hard"] = self.evaluate_set(self.out / "data" / "heldout_hard", "heldout_hard")
        if (self.out / "data" / "real").is_dir():
            self.info["real"] = self.evaluate_set(self.out / "data" / "real", "real")

    def best_model(self) -> str:
        scores = self.info["hard"]["methods"]
        return max(self.models, key=lambda m: scores[method(m, "fine-tuned")]["macro"]["f1"])

    # -- whole slide + matrix --------------------------------------------------------------------------------
    def whole_slide(self) -> None:
        from csrefiner.wsi.preview import write_preview
        from csrefiner.wsi.manifest import Manifest
        from csrefiner.wsi.stitch import stitch_tiles
        from csrefiner.wsi.tile import MANIFEST, tile_slide

        cfg, m = self.cfg, self.best_model()
        tiles, masks, wsi = self.out / "tiles" / "slide", self.out / "predictions" / "slide_tiles", self.out / "wsi"
        tile_slide(self.out / "data" / "slide.tif", tiles, tile_size=cfg.tile, overlap=cfg.overlap, name=D.SLIDE)
        self.predict(self.finetuned[m], tiles, masks, manifest=tiles / MANIFEST)
        wsi.mkdir()
        rep = stitch_tiles(tiles / MANIFEST, masks, wsi / "slide-mask.ome.tif")
        write_preview(rep.path, Manifest.load(tiles / MANIFEST), wsi / "preview.png")
        stitched = read_labels(rep.path)
        self.info["slide"] = {
            "model": method(m, "fine-tuned"), "tile_size": cfg.tile, "overlap": cfg.overlap, "tiles": rep.tiles,
            "objects": rep.objects, "matched_across_seams": rep.matched, "assembled": rep.assembled,
            "dropped": rep.dropped, "dtype": str(stitched.dtype), "f1_by_region": self.region_f1(stitched),
        }

    def region_f1(self, stitched: np.ndarray) -> dict:
        """F1 of the stitched slide against ground truth, per region (held-out rows: never annotated)."""
        cfg, p = self.cfg, self.cfg.patch
        regions = {
            "easy block": (slice(None), slice(0, cfg.hard_x0)),
            "hard block, annotation pool": (slice(0, cfg.pool_rows * p), slice(cfg.hard_x0, None)),
            "hard block, held-out rows": (slice(cfg.pool_rows * p, None), slice(cfg.hard_x0, None)),
        }
        out = {}
        for name, box in regions.items():
            r = evaluate_arrays(relabel_sequential(self.labels[box])[0], relabel_sequential(stitched[box])[0], [IOU])
            out[name] = r.counts[IOU].scores()["f1"]
        return out

    def cell_bin(self) -> None:
        from csrefiner.stereo.run import cgef

        stereo = self.out / "stereo"
        stereo.mkdir()
        m = cgef(self.out / "data" / "slide.gem.gz", self.out / "wsi" / "slide-mask.ome.tif",
                 stereo / "demo.cellbin.gef", h5ad=stereo / "demo.h5ad")
        s = m.stats
        self.info["stereo"] = {"cells": int(m.n_cells), "genes": int(m.n_genes), "records": int(s["records"]),
                               "total_count": int(s["total_count"]), "count_in_cells": int(s["cell_count"])}

    # -- the whole run ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        steps = [
            ("generate data (slide, patches, GEM)", self.make_data),
            ("check model backends", self.check_models),
            ("baseline model(s)", self.train_baselines),
            ("suggest patches to annotate", self.suggest_patches),
            ("fine-tune on the annotated patches", self.fine_tune),
            ("evaluate before / after", self.evaluate),
            ("segment the whole slide tile by tile + stitch", self.whole_slide),
            ("cell-bin matrix (cgef + h5ad)", self.cell_bin),
        ]
        for name, fn in steps:
            with self.times.step(name):
                fn()
        return self.info


def prepare_out(out: Path, force: bool) -> Path:
    """A clean output folder (the report is written last: its presence means the run completed)."""
    out = check_writable(Path(out), force)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)
    return out
