"""summary.json: a demo run's numbers in one place, read from the files of its run folder (layout.py), so the
same report comes out of `csrefiner demo run` and of the pipeline's DEMO_REPORT task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import relabel_sequential

from csrefiner.demo import layout as L
from csrefiner.demo.annotate import ANNOTATE_JSON
from csrefiner.demo.data import read_spec
from csrefiner.demo.overlays import overlay_sheet, to_rgb
from csrefiner.demo.report import TABLE_METRICS, write_report
from csrefiner.demo.timing import machine
from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_path, read_image, read_labels
from csrefiner.models.card import read_card, versions

OVERLAY_ROWS = 3
STAGES = (L.BASELINE, L.FINETUNED)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CsrefinerError(
            f"{path}: missing from the demo run; run the step that writes it (see `csrefiner demo run`)"
        )
    return json.loads(path.read_text())


def models_of(block: dict) -> list[str]:
    """Models evaluated at both stages, from the method names of an evaluation summary."""
    names = set(block["methods"])
    suffix = f"-{L.FINETUNED}"
    return sorted(
        n[: -len(suffix)] for n in names if n.endswith(suffix) and L.method(n[: -len(suffix)], L.BASELINE) in names
    )


def best_model(block: dict, models: list[str]) -> str:
    """The fine-tuned model with the highest macro F1 (ties: first by name); it segments the slide."""
    return max(sorted(models), key=lambda m: block["methods"][L.method(m, L.FINETUNED)]["macro"]["f1"])


def comparisons(block: dict, models: list[str]) -> dict:
    """model -> metric -> baseline vs fine-tuned paired test (from evaluate's paired_tests)."""
    tests = pd.DataFrame(block.get("paired_tests", []))
    out = {}
    for m in models:
        rows = tests[(tests.method_a == L.method(m, L.BASELINE)) & (tests.method_b == L.method(m, L.FINETUNED))]
        if rows.empty:  # evaluate orders each pair by name; baseline < finetuned alphabetically
            raise CsrefinerError(f"no paired test of {L.method(m, L.BASELINE)} vs {L.method(m, L.FINETUNED)}")
        out[m] = {}
        for k, _ in TABLE_METRICS:
            r = rows[rows.metric == k].iloc[0]
            out[m][k] = {
                "median_before": float(r.median_a),
                "median_after": float(r.median_b),
                "mean_diff": float(r.mean_diff_b_minus_a),
                "p_value": float(r.p_value),
                "n_images": int(r.n_images),
            }
    return out


def gains(block: dict, tests: dict, models: list[str]) -> dict:
    out = {}
    for m in models:
        before = block["methods"][L.method(m, L.BASELINE)]
        after = block["methods"][L.method(m, L.FINETUNED)]
        out[m] = {
            "f1_before": before["macro"]["f1"],
            "f1_after": after["macro"]["f1"],
            "f1_gain": after["macro"]["f1"] - before["macro"]["f1"],
            "micro_f1_before": before["micro"]["f1"],
            "micro_f1_after": after["micro"]["f1"],
            "p_value": tests[m]["f1"]["p_value"],
            "n_images": before["n_images"],
        }
    return out


def model_record(run: Path, m: str, stage: str) -> dict:
    folder = run / L.model_dir(m, stage)
    if not folder.is_dir():  # a baseline taken from the cache: the fine-tuned card names it
        base = read_card(run / L.model_dir(m, L.FINETUNED))["base_model"]["name"]
        return {"source": f"pretrained {base} (local cache)", "model": f"{m}:{base}"}
    card = read_card(folder)
    source = "trained from scratch on the easy domain" if stage == L.BASELINE else f"fine-tuned from the {m} baseline"
    return {
        "source": source,
        "path": L.model_dir(m, stage),
        "epochs_run": card["hyperparameters"]["epochs_run"],
        "lr": card["hyperparameters"]["lr"],
        "best_epoch": card["training"]["best_epoch"],
        "train_seconds": card["training"]["seconds"],
        "validation": card["validation"],
    }


def suggest_info(run: Path) -> dict:
    ranking = pd.read_csv(run / L.SUGGEST / "ranking.csv")
    picked = read_json(run / L.ANNOTATED / ANNOTATE_JSON)
    top = ranking[ranking.selected]
    rest = ranking[~ranking.selected]
    return {
        "models": list(read_json(run / L.SUGGEST / "summary.json")["models"]),
        "ranked": int(len(ranking)),
        "selected": picked["selected"],
        "in_hard_region": picked["in_hard_region"],
        "mean_disagreement_selected": float(top.disagreement.mean()),
        "mean_disagreement_not_selected": float(rest.disagreement.mean()) if len(rest) else None,
    }


def region_f1(cfg: dict, truth: np.ndarray, stitched: np.ndarray) -> dict:
    """F1 of the stitched slide against ground truth, per region (held-out rows: never annotated)."""
    from csrefiner.metrics.evaluate import evaluate_arrays

    x0, pool = cfg["hard_x0"], cfg["pool_rows"] * cfg["patch"]
    regions = {
        "easy block": (slice(None), slice(0, x0)),
        "hard block, annotation pool": (slice(0, pool), slice(x0, None)),
        "hard block, held-out rows": (slice(pool, None), slice(x0, None)),
    }
    out = {}
    for name, box in regions.items():
        r = evaluate_arrays(relabel_sequential(truth[box])[0], relabel_sequential(stitched[box])[0], [L.IOU])
        out[name] = r.counts[L.IOU].scores()["f1"]
    return out


def slide_info(run: Path, cfg: dict, model: str) -> dict:
    rep = read_json(run / L.STITCH_REPORT)
    stitched = read_labels(run / L.SLIDE_MASK)
    return {
        "model": L.method(model, L.FINETUNED),
        "tile_size": cfg["tile"],
        "overlap": cfg["overlap"],
        "tiles": rep["tiles"],
        "objects": rep["objects"],
        "matched_across_seams": rep["matched"],
        "assembled": rep["assembled"],
        "dropped": rep["dropped"],
        "dtype": str(stitched.dtype),
        "f1_by_region": region_f1(cfg, read_labels(run / L.SLIDE_GT), stitched),
    }


def stereo_info(run: Path, gem: dict) -> dict:
    import anndata
    import h5py

    with h5py.File(run / L.GEF, "r") as f:
        cells, genes = int(f["cellBin"]["cell"].shape[0]), int(f["cellBin"]["gene"].shape[0])
    adata = anndata.read_h5ad(run / L.H5AD)
    return {
        "cells": cells,
        "genes": genes,
        "records": gem["records"],
        "total_count": gem["total_count"],
        "count_in_cells": int(round(float(adata.X.sum()))),
    }


def overlay_rows(run: Path, tag: str, models: list[str]) -> tuple[list[dict], list[str]]:
    """Patches at the lowest, median and highest F1 gain of the first model (no cherry-picking)."""
    gt_dir = run / L.EVAL_SETS[tag]
    wide = pd.read_csv(run / L.evaluation(tag) / "per_image.csv").pivot(index="image", columns="method", values="f1")
    m0 = models[0]
    gain = (wide[L.method(m0, L.FINETUNED)] - wide[L.method(m0, L.BASELINE)]).sort_values(kind="stable")
    picks = list(
        dict.fromkeys(gain.index[np.linspace(0, len(gain) - 1, min(OVERLAY_ROWS, len(gain))).round().astype(int)])
    )
    columns = [L.method(m, s) for m in models for s in STAGES]
    rows = []
    for key in picks:
        preds = {c: read_labels(run / L.predictions(tag, c) / f"{key}-mask.tif") for c in columns}
        rows.append(
            {
                "name": key,
                "image": read_image(gt_dir / f"{key}-img.tif"),
                "gt": read_labels(gt_dir / f"{key}-mask.tif"),
                "preds": preds,
                "f1": {c: float(wide.loc[key, c]) for c in columns},
            }
        )
    return rows, columns


def make_figures(run: Path, models: list[str], tags: list[str]) -> dict:
    """Every PNG of the report, gathered in figures/ beside report.html."""
    import skimage.io

    fig = run / L.FIGURES
    if fig.exists():
        shutil.rmtree(fig)
    fig.mkdir()
    rows, cols = overlay_rows(run, "heldout_hard", models)
    overlay_sheet(rows, cols, fig / "overlays_hard.png", "Held-out hard patches: baseline vs fine-tuned")
    figs = {"overlays": "figures/overlays_hard.png"}
    if "real" in tags:
        rows, cols = overlay_rows(run, "real", models)
        overlay_sheet(rows, cols, fig / "overlays_real.png", "Real nuclei (stardist test image)")
        figs["real_overlays"] = "figures/overlays_real.png"
    image = read_image(run / L.SLIDE_IMAGE)
    step = max(1, max(image.shape) // 1024)
    skimage.io.imsave(fig / "slide.png", to_rgb(image[::step, ::step]), check_contrast=False)
    figs["slide"] = "figures/slide.png"
    shutil.copy(run / L.PREVIEW, fig / "slide_labels.png")
    figs["preview"] = "figures/slide_labels.png"
    for png in sorted((run / L.evaluation("heldout_hard")).glob("boxplot_*.png")):
        shutil.copy(png, fig / png.name)
    figs["loss_curves"] = []
    for m in models:
        for stage in STAGES:
            curve = run / L.model_dir(m, stage) / "loss_curve.png"
            if curve.is_file():
                name = f"loss_{L.method(m, stage)}.png"
                shutil.copy(curve, fig / name)
                figs["loss_curves"].append(f"figures/{name}")
    return figs


def training_versions(run: Path, models: list[str]) -> dict:
    """Package versions the fine-tuned models were trained with (their model cards), then this process's."""
    out = {}
    for m in models:
        out |= read_card(run / L.model_dir(m, L.FINETUNED)).get("versions", {})
    packages = ("scikit-image", "scipy", "h5py", "anndata")
    return out | {k: v for k, v in versions(packages).items() if k not in out}


def build_summary(run: Path) -> dict:
    run = Path(run)
    spec = read_spec(run / L.DATA)
    cfg = spec["config"]
    tags = list(L.eval_sets(run))
    blocks = {tag: read_json(run / L.evaluation(tag) / "summary.json") for tag in tags}
    if "heldout_hard" not in blocks:
        raise CsrefinerError(f"{run}: no {L.EVAL_SETS['heldout_hard']}; is this a demo run folder?")
    models = models_of(blocks["heldout_hard"])
    if not models:
        raise CsrefinerError(
            f"{run / L.evaluation('heldout_hard')}: no model evaluated both as "
            f"<model>-{L.BASELINE} and <model>-{L.FINETUNED}"
        )
    record = json.loads((run / L.RUN_JSON).read_text()) if (run / L.RUN_JSON).is_file() else {}
    comps = {tag: comparisons(block, models) for tag, block in blocks.items()}
    summary = {
        "runner": record.get("runner", "nextflow (workflows/demo.nf)"),
        "config": cfg,
        "skipped_models": record.get("skipped_models", {}),
        "models": {m: {stage: model_record(run, m, stage) for stage in STAGES} for m in models},
        "gain": gains(blocks["heldout_hard"], comps["heldout_hard"], models),
        "hard": {k: v for k, v in blocks["heldout_hard"].items() if k != "paired_tests"},
        "comparisons": {"hard" if tag == "heldout_hard" else tag: c for tag, c in comps.items()},
        "data": spec["data"],
        "suggest": suggest_info(run),
        "slide": slide_info(run, cfg, best_model(blocks["heldout_hard"], models)),
        "stereo": stereo_info(run, spec["data"]["gem"]),
        "options": spec["options"],
        "backend_options": spec["backend_options"],
        "figures": make_figures(run, models, tags),
        "timings": record.get("timings", []),
        "total": record.get("total"),
        "versions": training_versions(run, models),
        "machine": record.get("machine", machine()),
    }
    if "real" in blocks:
        summary["real"] = {k: v for k, v in blocks["real"].items() if k != "paired_tests"}
    return summary


def write_run_report(run: Path) -> dict:
    """summary.json + figures/ + report.html of a finished run folder (from `demo run` or the pipeline)."""
    run = Path(run)
    summary = build_summary(run)
    with atomic_path(run / L.SUMMARY, force=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_report(run, summary)
    return summary
