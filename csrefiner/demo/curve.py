"""`demo run --budget-sweep 0,4,8`: the learning curve, held-out hard F1 against the number of annotated patches.

For each budget b > 0: `suggest --top b` on the pool predictions the run already made (baseline + watershed),
the simulated annotator, `finetune` from the baseline with the demo's options, `segment` + `evaluate` the
held-out hard patches. Budget 0 is the baseline's score from the run's own evaluation. Writes curve/curve.csv;
report.py draws figures/learning_curve.png from it and shows both (the default demo writes neither).
"""

from __future__ import annotations

import json

import pandas as pd

from csrefiner.demo import calls
from csrefiner.demo import layout as L
from csrefiner.demo.annotate import annotate_from_data


def _f1(evaluation, method: str) -> tuple[float, int]:
    s = json.loads((evaluation / "summary.json").read_text())["methods"][method]
    return s["macro"]["f1"], s["n_images"]


def budget_sweep(flow, budgets: list[int]) -> pd.DataFrame:
    """`flow`: the run so far (flow.Flow: its models, baselines and demo.json options)."""
    preds = flow.pool_predictions()
    gt = flow.path(L.EVAL_SETS["heldout_hard"])
    rows = []
    for m in flow.models:
        f1, n = _f1(flow.path(L.evaluation("heldout_hard")), L.method(m, L.BASELINE))
        rows.append({"model": m, "budget": 0, "f1": f1, "n_images": n})
    for b in [b for b in budgets if b > 0]:
        run = flow.path(f"curve/b{b}")
        calls.suggest(preds, flow.path(L.POOL_TILES), b, run / "suggest", flow.opts("suggest"))
        annotate_from_data(run / "suggest", flow.path(L.DATA), run / "annotated")
        for m in flow.models:
            model, pred = run / "models" / m, run / "predictions" / m
            calls.finetune(m, run / "annotated", model, flow.base(m), flow.train_opts("finetune", m))
            calls.segment(model, None, gt, pred)
            calls.evaluate(gt, [pred], run / "evaluation" / m, flow.opts("evaluate"))
            f1, n = _f1(run / "evaluation" / m, m)
            rows.append({"model": m, "budget": b, "f1": f1, "n_images": n})
    table = pd.DataFrame(rows).sort_values(["model", "budget"])
    table.to_csv(flow.path(L.CURVE_CSV), index=False)
    return table
