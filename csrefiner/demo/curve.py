"""`demo run --budget-sweep 0,4,8`: the learning curve, held-out hard F1 against the number of annotated patches.

For each budget b > 0: `suggest --top b` on the pool predictions the run already made (baseline + watershed),
the simulated annotator, `finetune` from the baseline with the demo's options, `segment` + `evaluate` the
held-out hard patches. Budget 0 is the baseline's score from the run's own evaluation. Writes curve/curve.csv and
figures/learning_curve.png; the report shows both when they exist (the default demo writes neither).
"""

from __future__ import annotations

import json

import pandas as pd

from csrefiner.demo import layout as L
from csrefiner.demo.flow import Flow, csrefiner

CURVE_CSV = "curve/curve.csv"
CURVE_PNG = f"{L.FIGURES}/learning_curve.png"  # drawn by the report (figures/ is rebuilt there)


def _f1(evaluation, method: str) -> tuple[float, int]:
    s = json.loads((evaluation / "summary.json").read_text())["methods"][method]
    return s["macro"]["f1"], s["n_images"]


def budget_sweep(flow: Flow, budgets: list[int]) -> pd.DataFrame:
    names = sorted([L.method(m, L.BASELINE) for m in flow.models] + [L.WATERSHED])
    preds = [a for n in names for a in ("--pred", flow.path(L.predictions("pool", n)))]
    gt = flow.path(L.EVAL_SETS["heldout_hard"])
    rows = []
    for m in flow.models:
        f1, n = _f1(flow.path(L.evaluation("heldout_hard")), L.method(m, L.BASELINE))
        rows.append({"model": m, "budget": 0, "f1": f1, "n_images": n})
    for b in [b for b in budgets if b > 0]:
        run = flow.path(f"curve/b{b}")
        csrefiner(
            "suggest",
            *preds,
            "--image-dir",
            flow.path(L.POOL_TILES),
            "--top",
            b,
            "--out",
            run / "suggest",
            *flow.opts("suggest"),
        )
        csrefiner(
            "demo", "annotate", "--suggested", run / "suggest", "--data", flow.path(L.DATA), "--out", run / "annotated"
        )
        for m in flow.models:
            base = flow.cached.get(m) or flow.path(L.model_dir(m, L.BASELINE))
            model = run / "models" / m
            csrefiner(
                "finetune",
                "--model",
                m,
                "--train",
                run / "annotated",
                "--pretrained",
                base,
                "--out",
                model,
                *flow.train_opts("finetune", m),
            )
            pred = run / "predictions" / m
            csrefiner("segment", "--model-dir", model, "--input", gt, "--out", pred, "--device", "cpu")
            csrefiner(
                "evaluate",
                "--gt",
                gt,
                "--pred",
                pred,
                "--name",
                m,
                "--out",
                run / "evaluation" / m,
                *flow.opts("evaluate"),
            )
            f1, n = _f1(run / "evaluation" / m, m)
            rows.append({"model": m, "budget": b, "f1": f1, "n_images": n})
    table = pd.DataFrame(rows).sort_values(["model", "budget"])
    table.to_csv(flow.path(CURVE_CSV), index=False)
    return table


def curve_figure(table: pd.DataFrame, path) -> None:
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
    from csrefiner.demo.report import embed, esc

    if not (run / CURVE_CSV).is_file():
        return ""
    table = pd.read_csv(run / CURVE_CSV)
    curve_figure(table, run / CURVE_PNG)
    rows = "".join(
        f"<tr><td>{esc(r.model)}</td><td>{r.budget}</td><td>{r.f1:.3f}</td><td>{r.n_images}</td></tr>"
        for r in table.itertuples()
    )
    return (
        "<h2>Learning curve (budget sweep)</h2><p>Held-out hard F1 after fine-tuning the baseline on the top "
        "<i>b</i> suggested patches (budget 0: the baseline); one run per budget, one seed.</p>"
        f"<table><tr><th>model</th><th>annotated patches</th><th>F1</th><th>held-out patches</th></tr>{rows}"
        "</table>" + embed(run / CURVE_PNG, "held-out F1 against the annotation budget", 480)
    )
