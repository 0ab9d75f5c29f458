"""`csrefiner demo`: the CSRefiner experiment in miniature, end to end on one CPU, with an HTML report.

Files: config.py (presets), data.py (generated slide + patch sets + stardist's real image), gem.py (a GEM for
the slide), flow.py (the steps, all csrefiner library calls), timing.py, overlays.py, summary.py
(summary.json), report.py (report.html).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from csrefiner.demo.config import DemoConfig, make_config

__all__ = ["DemoConfig", "make_config", "run_demo"]


def _limit_threads(n: int) -> None:
    """The demo is sized for a small CPU: one BLAS/torch pool of `n` threads, not one per library."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def run_demo(out: Path, cfg: DemoConfig, force: bool = False, say: Callable[[str], None] = print) -> dict:
    """Run every step into `out`; returns summary.json's content. report.html is written last."""
    import numpy as np

    from csrefiner.demo.flow import Flow, prepare_out
    from csrefiner.demo.report import write_report
    from csrefiner.demo.summary import build_summary

    _limit_threads(cfg.threads)
    np.random.seed(cfg.seed)
    out = prepare_out(Path(out), force)
    flow = Flow(out, cfg, say)
    flow.run()
    summary = build_summary(flow)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_report(out, summary)
    return summary
