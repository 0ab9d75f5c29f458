"""summary.json: the run's numbers in one place (the HTML report prints these values, nothing else)."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from csrefiner.demo.flow import Flow, method
from csrefiner.demo.overlays import overlay_sheet, to_rgb
from csrefiner.demo.report import TABLE_METRICS
from csrefiner.io import read_image, read_labels
from csrefiner.models.card import versions

OVERLAY_ROWS = 3


def comparisons(block: dict, models: list[str]) -> dict:
    """model -> metric -> baseline vs fine-tuned paired test (from evaluate's paired_tests)."""
    tests = pd.DataFrame(block.get("paired_tests", []))
    out = {}
    for m in models:
        rows = tests[(tests.method_a == method(m, "baseline")) & (tests.method_b == method(m, "fine-tuned"))]
        out[m] = {}
        for k, _ in TABLE_METRICS:
            r = rows[rows.metric == k].iloc[0]
            out[m][k] = {"median_before": float(r.median_a), "median_after": float(r.median_b),
                         "mean_diff": float(r.mean_diff_b_minus_a), "p_value": float(r.p_value),
                         "n_images": int(r.n_images)}
    return out


def gains(block: dict, tests: dict, models: list[str]) -> dict:
    out = {}
    for m in models:
        before = block["methods"][method(m, "baseline")]
        after = block["methods"][method(m, "fine-tuned")]
        out[m] = {"f1_before": before["macro"]["f1"], "f1_after": after["macro"]["f1"],
                  "f1_gain": after["macro"]["f1"] - before["macro"]["f1"],
                  "micro_f1_before": before["micro"]["f1"], "micro_f1_after": after["micro"]["f1"],
                  "p_value": tests[m]["f1"]["p_value"], "n_images": before["n_images"]}
    return out


def model_record(entry: dict, out: Path) -> dict:
    rec = {"source": entry["source"]}
    if "model_dir" in entry:
        card = entry["card"]
        rec |= {"path": str(Path(entry["model_dir"]).relative_to(out)),
                "epochs_run": card["hyperparameters"]["epochs_run"], "lr": card["hyperparameters"]["lr"],
                "best_epoch": card["training"]["best_epoch"], "train_seconds": card["training"]["seconds"],
                "validation": card["validation"]}
    else:
        rec["model"] = entry["model"]
    return rec


def overlay_rows(flow: Flow, tag: str, gt_dir: Path) -> tuple[list[dict], list[str]]:
    """Patches at the lowest, median and highest F1 gain of the first model (no cherry-picking)."""
    table = pd.read_csv(flow.out / "evaluation" / tag / "per_image.csv")
    wide = table.pivot(index="image", columns="method", values="f1")
    m0 = flow.models[0]
    gain = (wide[method(m0, "fine-tuned")] - wide[method(m0, "baseline")]).sort_values(kind="stable")
    picks = list(dict.fromkeys(gain.index[np.linspace(0, len(gain) - 1, min(OVERLAY_ROWS, len(gain))).round().astype(int)]))
    columns = [method(m, s) for m in flow.models for s in ("baseline", "fine-tuned")]
    rows = []
    for key in picks:
        preds = {c: read_labels(flow.out / "predictions" / tag / f"{c.replace(' ', '-')}" / f"{key}-mask.tif")
                 for c in columns}
        rows.append({"name": key, "image": read_image(gt_dir / f"{key}-img.tif"),
                     "gt": read_labels(gt_dir / f"{key}-mask.tif"), "preds": preds,
                     "f1": {c: float(wide.loc[key, c]) for c in columns}})
    return rows, columns


def make_figures(flow: Flow) -> dict:
    """Every PNG of the report, gathered in figures/ beside report.html."""
    import skimage.io

    out, fig = flow.out, flow.out / "figures"
    fig.mkdir()
    rows, cols = overlay_rows(flow, "heldout_hard", out / "data" / "heldout_hard")
    overlay_sheet(rows, cols, fig / "overlays_hard.png", "Held-out hard patches: baseline vs fine-tuned")
    figs = {"overlays": "figures/overlays_hard.png"}
    if "real" in flow.info:
        rows, cols = overlay_rows(flow, "real", out / "data" / "real")
        overlay_sheet(rows, cols, fig / "overlays_real.png", "Real nuclei (stardist test image)")
        figs["real_overlays"] = "figures/overlays_real.png"
    step = max(1, max(flow.image.shape) // 1024)
    skimage.io.imsave(fig / "slide.png", to_rgb(flow.image[::step, ::step]), check_contrast=False)
    figs["slide"] = "figures/slide.png"
    shutil.copy(out / "wsi" / "preview.png", fig / "slide_labels.png")
    figs["preview"] = "figures/slide_labels.png"
    for png in sorted((out / "evaluation" / "heldout_hard").glob("boxplot_*.png")):
        shutil.copy(png, fig / png.name)
    figs["loss_curves"] = []
    for m in flow.models:
        for stage, entry in (("baseline", flow.baseline[m]), ("fine-tuned", flow.finetuned[m])):
            if "model_dir" in entry:
                name = f"loss_{m}-{stage}.png"
                shutil.copy(Path(entry["model_dir"]) / "loss_curve.png", fig / name)
                figs["loss_curves"].append(f"figures/{name}")
    return figs


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores visible, {platform.system()} {platform.release()}"


def build_summary(flow: Flow) -> dict:
    info, models = flow.info, flow.models
    comps = {"hard": comparisons(info["hard"], models)}
    if "real" in info:
        comps["real"] = comparisons(info["real"], models)
    packages = ("torch", "cellpose", "stardist", "tensorflow", "scikit-image", "scipy", "h5py", "anndata")
    summary = {
        "config": flow.cfg.record(),
        "skipped_models": flow.skipped,
        "models": {m: {"baseline": model_record(flow.baseline[m], flow.out),
                       "fine-tuned": model_record(flow.finetuned[m], flow.out)} for m in models},
        "gain": gains(info["hard"], comps["hard"], models),
        "hard": {k: v for k, v in info["hard"].items() if k != "paired_tests"},
        "comparisons": comps,
        "data": info["data"], "suggest": info["suggest"], "slide": info["slide"], "stereo": info["stereo"],
        "figures": make_figures(flow),
        "timings": flow.times.steps,
        "versions": versions(packages),
        "machine": machine(),
    }
    if "real" in info:
        summary["real"] = {k: v for k, v in info["real"].items() if k != "paired_tests"}
    summary["total"] = flow.times.total()
    return summary
