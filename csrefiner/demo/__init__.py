"""`csrefiner demo`: the CSRefiner experiment in miniature, end to end on one CPU, with an HTML report.

Files: config.py (presets), steps.py (each step's csrefiner options), layout.py (where a run's files live),
data.py (generated slide + patch sets + stardist's real image), gem.py (a GEM for the slide), annotate.py (the
simulated annotator), flow.py (`demo run`: the steps as csrefiner commands, the pipeline's test profile runs
the same), timing.py, overlays.py, summary.py (summary.json from a run folder), report.py (report.html).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from csrefiner.demo.config import DemoConfig, make_config

__all__ = ["DemoConfig", "make_config", "run_demo", "write_run_report"]


def _limit_threads(n: int) -> None:
    """The demo is sized for a small CPU: one BLAS/torch pool of `n` threads, not one per library."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def write_run_report(run: Path) -> dict:
    """summary.json + figures/ + report.html of a finished run folder (from `demo run` or the pipeline)."""
    from csrefiner.demo import layout as L
    from csrefiner.demo.report import write_report
    from csrefiner.demo.summary import build_summary
    from csrefiner.io import atomic_path

    run = Path(run)
    summary = build_summary(run)
    with atomic_path(run / L.SUMMARY, force=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_report(run, summary)
    return summary


def run_demo(
    out: Path, cfg: DemoConfig, force: bool = False, say: Callable[[str], None] = print, budgets: tuple = ()
) -> dict:
    """Run every step into `out`; returns summary.json's content. report.html is written last."""
    import numpy as np

    from csrefiner.demo import layout as L
    from csrefiner.demo.flow import Flow, csrefiner, prepare_out
    from csrefiner.io.atomic import register_temp, unregister_temp

    _limit_threads(cfg.threads)
    np.random.seed(cfg.seed)
    out = register_temp(prepare_out(Path(out), force))  # a run that stops half-way leaves no folder behind
    Flow(out, cfg, say, budgets).run()
    csrefiner("demo", "report", "--run", out)
    unregister_temp(out)
    return json.loads((out / L.SUMMARY).read_text())
