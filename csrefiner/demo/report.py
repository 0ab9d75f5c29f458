"""The demo's report: ONE self-contained HTML file (every PNG embedded as base64; the PNGs also sit beside it).

Every number is printed from summary.json's values, and each number cell carries `data-k`, the path of its
value in summary.json, so a reader (or the test) can check the page against the JSON.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from csrefiner.demo import layout as L

TABLE_METRICS = (  # (summary key, column title)
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("object_jaccard", "Jaccard (object)"),
    ("object_dice", "Dice (object)"),
    ("pixel_jaccard", "Jaccard (pixel)"),
    ("pixel_dice", "Dice (pixel)"),
)
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.4em .8em}.gain{font-size:1.15em}
figure{display:inline-block;margin:.4em;vertical-align:top}figcaption{font-size:.85em;color:#555}
code{background:#f4f4f4;padding:0 3px}"""


def esc(value) -> str:
    return html.escape(str(value))


def num(value, key: str, digits: int = 3) -> str:
    """A number cell tied to its summary.json path."""
    if value is None:
        return f'<td data-k="{esc(key)}">-</td>'
    text = f"{value:.{digits}g}" if digits < 0 else f"{value:.{digits}f}"
    return f'<td data-k="{esc(key)}">{text}</td>'


def pvalue(value, key: str) -> str:
    return f'<td data-k="{esc(key)}">{value:.3g}</td>'


def embed(png: Path, caption: str, width: int | None = None) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    style = f' style="width:{width}px"' if width else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(png.name)}"{style}>'
        f"<figcaption>{esc(caption)} ({esc(png.name)})</figcaption></figure>"
    )


def metric_table(block: dict, tag: str) -> str:
    head = "".join(f"<th>{esc(t)}</th>" for _, t in TABLE_METRICS)
    rows = []
    for name, s in block["methods"].items():
        cells = "".join(num(s["macro"][k], f"{tag}/methods/{name}/macro/{k}") for k, _ in TABLE_METRICS)
        rows.append(f"<tr><td>{esc(name)}</td><td>{s['n_images']}</td>{cells}</tr>")
    return f"<table><tr><th>method</th><th>patches</th>{head}</tr>{''.join(rows)}</table>"


def tests_table(summary: dict, tag: str) -> str:
    rows = []
    for m, pair in summary["comparisons"][tag].items():
        for k, title in TABLE_METRICS:
            t = pair[k]
            key = f"comparisons/{tag}/{m}/{k}"
            rows.append(
                f"<tr><td>{esc(m)}</td><td>{esc(title)}</td>{num(t['median_before'], key + '/median_before')}"
                f"{num(t['median_after'], key + '/median_after')}{num(t['mean_diff'], key + '/mean_diff')}"
                f"{pvalue(t['p_value'], key + '/p_value')}<td>{t['n_images']}</td></tr>"
            )
    return (
        "<table><tr><th>model</th><th>metric</th><th>median before</th><th>median after</th>"
        "<th>mean difference (after - before)</th><th>Wilcoxon p (paired, two-sided)</th><th>n</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def gain_lines(summary: dict) -> str:
    out = []
    for m, g in summary["gain"].items():
        verdict = "beats" if g["f1_gain"] > 0 else "does NOT beat"
        out.append(
            f'<p class="gain"><b>{esc(m)}</b>: F1 on held-out hard patches <span data-k="gain/{esc(m)}/f1_before">'
            f'{g["f1_before"]:.3f}</span> &rarr; <span data-k="gain/{esc(m)}/f1_after">{g["f1_after"]:.3f}</span> '
            f'(gain <span data-k="gain/{esc(m)}/f1_gain">{g["f1_gain"]:+.3f}</span>, Wilcoxon p = '
            f'<span data-k="gain/{esc(m)}/p_value">{g["p_value"]:.3g}</span>, n = {g["n_images"]}): the fine-tuned '
            f"model {verdict} the baseline.</p>"
        )
    return "".join(out)


def step_times(summary: dict) -> str:
    if not summary["timings"]:  # the pipeline: Nextflow's own trace has the times
        return (
            "<h3>Step times</h3><p>Run by the pipeline: each step's time is in Nextflow's "
            "<code>pipeline_info/</code> (execution trace, report and timeline).</p>"
        )
    times = "".join(
        f"<tr><td>{esc(t['step'])}</td>{num(t['wall_s'], f'timings/{i}/wall_s', 1)}"
        f"{num(t['cpu_s'], f'timings/{i}/cpu_s', 1)}</tr>"
        for i, t in enumerate(summary["timings"])
    )
    tot = summary["total"]
    times += f"<tr><th>total</th>{num(tot['wall_s'], 'total/wall_s', 1)}{num(tot['cpu_s'], 'total/cpu_s', 1)}</tr>"
    return (
        "<h3>Step times</h3><p>Wall-clock time, and the CPU time of the demo's process (all threads): on a "
        "shared machine the wall time is inflated by other processes, while CPU time / number of cores "
        f"estimates an idle run. Machine: {esc(summary['machine'])}.</p>"
        f"<table><tr><th>step</th><th>wall s</th><th>CPU s</th></tr>{times}</table>"
    )


def rows(items) -> str:
    return "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in items)


def provenance(summary: dict) -> str:
    models = []
    for m, info in summary["models"].items():
        for stage, s in info.items():
            models.append(
                f"<tr><td>{esc(m)}-{esc(stage)}</td><td>{esc(s['source'])}</td><td>{esc(s.get('epochs_run', '-'))}</td>"
                f"<td>{esc(s.get('lr', '-'))}</td><td>{esc(s.get('best_epoch', '-'))}</td>"
                f"<td>{esc(s.get('train_seconds', '-'))}</td><td>{esc(s.get('path', ''))}</td></tr>"
            )
    options = rows(summary["options"].items()) + rows(
        (f"{step}: {b}", o) for step, knobs in summary["backend_options"].items() for b, o in knobs.items()
    )
    return (
        f"<p>Run by <code>{esc(summary['runner'])}</code>.</p>"
        + step_times(summary)
        + "<h3>Models</h3><table><tr><th>model</th><th>how</th><th>epochs run</th><th>lr</th><th>best epoch</th>"
        f"<th>training s</th><th>folder</th></tr>{''.join(models)}</table>"
        f"<h3>Step options (data/demo.json)</h3><table>{options}</table>"
        f"<h3>Parameters and seeds</h3><table>{rows(summary['config'].items())}</table>"
        f"<h3>Versions</h3><table>{rows(summary['versions'].items())}</table>"
    )


def skipped_notes(summary: dict) -> str:
    return "".join(
        f'<p class="note">Model <b>{esc(m)}</b> was skipped: {esc(why)}</p>'
        for m, why in summary["skipped_models"].items()
    )


def figures(out: Path, summary: dict) -> str:
    parts = ["<h2>Box plots (held-out hard patches, one line per patch)</h2>"]
    box = out / "figures"
    for k in ("f1", "precision", "recall", "object_jaccard", "pixel_dice"):
        png = box / f"boxplot_{k}.png"
        if png.is_file():
            parts.append(embed(png, f"{k} per patch", 330))
    parts.append("<h2>Loss curves</h2>")
    for rel in summary["figures"]["loss_curves"]:
        parts.append(embed(out / rel, rel.split("/")[-2], 480))
    parts.append("<h2>Hard region before / after (held-out patches)</h2>")
    parts.append(embed(out / summary["figures"]["overlays"], "contours of each model on the same patches"))
    if summary["figures"].get("real_overlays"):
        parts.append("<h2>Real nuclei (stardist's annotated test image)</h2>")
        parts.append(embed(out / summary["figures"]["real_overlays"], "real image, same models"))
    parts.append("<h2>Whole slide</h2>")
    parts.append(embed(out / summary["figures"]["slide"], "the generated slide (left: easy, right: hard)", 520))
    parts.append(embed(out / summary["figures"]["preview"], "stitched labels; grey lines: tile core borders", 520))
    return "".join(parts)


def slide_section(summary: dict) -> str:
    s, st, sg = summary["slide"], summary["stereo"], summary["suggest"]
    f1 = "".join(f"<tr><td>{esc(k)}</td>{num(v, f'slide/f1_by_region/{k}')}</tr>" for k, v in s["f1_by_region"].items())
    return (
        f"<p><code>suggest</code> ranked {sg['ranked']} patches of the annotation pool by the disagreement of "
        f"{esc(', '.join(sg['models']))}; of the top <span data-k='suggest/selected'>{sg['selected']}</span>, "
        f"<span data-k='suggest/in_hard_region'>{sg['in_hard_region']}</span> lie in the hard block (mean "
        f"disagreement {sg['mean_disagreement_selected']:.3f} selected vs "
        f"{(sg['mean_disagreement_not_selected'] or 0):.3f} not selected). Their ground truth stands in for the "
        "annotator's corrections.</p>"
        f"<p>The whole slide ({s['tiles']} tiles of {s['tile_size']} px, overlap {s['overlap']}) was segmented "
        f"with <b>{esc(s['model'])}</b> and stitched: <span data-k='slide/objects'>{s['objects']}</span> nuclei "
        f"({s['matched_across_seams']} matched across seams), mask dtype {esc(s['dtype'])}.</p>"
        f"<table><tr><th>slide region</th><th>F1 (IoU 0.5)</th></tr>{f1}</table>"
        f"<p>Cell-bin matrix from the generated GEM: <span data-k='stereo/cells'>{st['cells']}</span> cells x "
        f"{st['genes']} genes; {st['count_in_cells']:,} of {st['total_count']:,} counts fall in cells. Files: "
        "<code>stereo/slide.cellbin.gef</code>, <code>stereo/slide.h5ad</code>.</p>"
    )


def curve_figure(table, path) -> None:
    """Held-out F1 against the annotation budget (`demo run --budget-sweep`), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for m, g in table.groupby("model"):
        ax.plot(g.budget, g.f1, marker="o", label=m)
    ax.set(xlabel="annotated patches (suggested)", ylabel="held-out hard F1 (IoU 0.5)", title="learning curve")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_section(run) -> str:
    """The report's learning-curve section (figure + table), or "" when the run made no budget sweep."""
    import pandas as pd

    if not (run / L.CURVE_CSV).is_file():
        return ""
    table = pd.read_csv(run / L.CURVE_CSV)
    curve_figure(table, run / L.CURVE_PNG)
    rows = "".join(
        f"<tr><td>{esc(r.model)}</td><td>{r.budget}</td><td>{r.f1:.3f}</td><td>{r.n_images}</td></tr>"
        for r in table.itertuples()
    )
    return (
        "<h2>Learning curve (budget sweep)</h2><p>Held-out hard F1 after fine-tuning the baseline on the top "
        "<i>b</i> suggested patches (budget 0: the baseline); one run per budget, one seed.</p>"
        f"<table><tr><th>model</th><th>annotated patches</th><th>F1</th><th>held-out patches</th></tr>{rows}"
        "</table>" + embed(run / L.CURVE_PNG, "held-out F1 against the annotation budget", 480)
    )


def write_report(out: Path, summary: dict) -> Path:
    real = ""
    if "real" in summary:
        real = "<h3>Real nuclei (stardist's shipped annotated image, cut into patches)</h3>" + metric_table(
            summary["real"], "real"
        )
    body = (
        f"<h1>csrefiner demo: fine-tuning on {summary['config']['patches']} suggested patches</h1>"
        "<p>The CSRefiner experiment in miniature: a baseline segmentation model fails on a dense, blurred "
        "region; <code>suggest</code> picks the patches where models disagree; they are annotated (here: ground "
        "truth) and the model is fine-tuned; the same held-out patches are evaluated before and after; the whole "
        "slide is then segmented tile by tile, stitched and turned into a Stereo-seq cell-bin matrix.</p>"
        + skipped_notes(summary)
        + gain_lines(summary)
        + "<h2>Before / after on held-out hard patches</h2><p>Macro means over patches; IoU threshold 0.5.</p>"
        + metric_table(summary["hard"], "hard")
        + "<h3>Paired tests (baseline vs fine-tuned, same patches)</h3>"
        + tests_table(summary, "hard")
        + real
        + "<h2>Suggest, whole slide, cell-bin matrix</h2>"
        + slide_section(summary)
        + figures(out, summary)
        + curve_section(out)
        + "<h2>Provenance</h2>"
        + provenance(summary)
    )
    path = out / "report.html"
    path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>csrefiner demo</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )
    return path
