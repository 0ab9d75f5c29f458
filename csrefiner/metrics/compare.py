"""Paired comparison of methods on the same images: Wilcoxon signed-rank tests, box plots, Markdown summary."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from csrefiner.metrics.evaluate import KEY_METRICS


def paired_tests(table: pd.DataFrame, metrics=KEY_METRICS) -> pd.DataFrame:
    """One row per (method A, method B, metric): medians, mean difference B - A and the two-sided p-value.

    Only images that both methods segmented are compared. When every paired difference is zero the
    test is undefined and p is reported as 1.0.
    """
    methods = list(dict.fromkeys(table.method))
    rows = []
    for a, b in itertools.combinations(methods, 2):
        wide = table[table.method.isin([a, b])].pivot(index="image", columns="method")
        for metric in metrics:
            pair = wide[metric][[a, b]].dropna()
            diff = pair[b] - pair[a]
            if len(diff) == 0 or np.allclose(diff, 0):
                stat, p = 0.0, 1.0
            else:
                stat, p = wilcoxon(pair[a], pair[b], zero_method="wilcox", alternative="two-sided")
            rows.append(
                {
                    "method_a": a,
                    "method_b": b,
                    "metric": metric,
                    "n_images": len(diff),
                    "median_a": float(pair[a].median()) if len(diff) else float("nan"),
                    "median_b": float(pair[b].median()) if len(diff) else float("nan"),
                    "mean_diff_b_minus_a": float(diff.mean()) if len(diff) else float("nan"),
                    "wilcoxon_statistic": float(stat),
                    "p_value": float(p),
                }
            )
    return pd.DataFrame(rows)


def box_plots(table: pd.DataFrame, out_dir: Path, metrics=KEY_METRICS) -> list[Path]:
    """One PNG per metric: a box per method, with each image's paired values joined by grey lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(table.method))
    wide = table.pivot(index="image", columns="method")
    paths = []
    for metric in metrics:
        values = [wide[metric][m].dropna().to_numpy() for m in methods]
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(methods), 4))
        for _, row in wide[metric][methods].dropna().iterrows():
            ax.plot(range(1, len(methods) + 1), row.to_numpy(), color="0.75", lw=0.8, zorder=1)
        ax.boxplot(values, tick_labels=methods, widths=0.5, zorder=2)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{metric} per image (n={len(wide)})")
        ax.set_ylim(-0.02, 1.02)
        fig.tight_layout()
        path = out_dir / f"boxplot_{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _fmt(x: float) -> str:
    return f"{x:.3g}" if x < 0.001 else f"{x:.3f}"


def markdown(summary: dict, tests: pd.DataFrame | None) -> str:
    iou = summary["iou_threshold"]
    lines = [f"# Segmentation evaluation (IoU >= {iou})", ""]
    cols = ["precision", "recall", "f1", "object_jaccard", "object_dice", "pixel_jaccard", "pixel_dice", "aji_plus"]
    lines += ["Macro average over images (micro/pooled in summary.json):", ""]
    lines += ["| method | images | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for method, s in summary["methods"].items():
        lines.append(f"| {method} | {s['n_images']} | " + " | ".join(_fmt(s["macro"][c]) for c in cols) + " |")
    if tests is not None and len(tests):
        lines += ["", "Paired Wilcoxon signed-rank tests (two-sided) on per-image values:", ""]
        lines += ["| A | B | metric | n | median A | median B | mean(B-A) | p |", "|---|---|---|---|---|---|---|---|"]
        for r in tests.itertuples():
            lines.append(
                f"| {r.method_a} | {r.method_b} | {r.metric} | {r.n_images} | {_fmt(r.median_a)} | "
                f"{_fmt(r.median_b)} | {r.mean_diff_b_minus_a:+.3f} | {_fmt(r.p_value)} |"
            )
    lines += [
        "",
        "object_jaccard / object_dice: mean IoU / Dice of matched object pairs; "
        "pixel_*: foreground pixels; aji_plus: aggregated Jaccard index with one-to-one pairing.",
    ]
    return "\n".join(lines) + "\n"
