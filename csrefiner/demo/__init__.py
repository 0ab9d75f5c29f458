"""`csrefiner demo`: the CSRefiner experiment in miniature, end to end on one CPU, with an HTML report.

Files: config.py (presets), steps.py (the steps, defined once: order, pipeline process, command, the options
written into demo.json), layout.py (where a run's files live), data.py (generated slide + patch sets +
stardist's real image), gem.py (a GEM for the slide), backends.py (the models and their baselines), annotate.py
(the simulated annotator), calls.py (the library functions of the steps' commands, with demo.json's options),
flow.py (`demo run`: a runner per step; the pipeline's test profile runs the same steps as tasks), curve.py
(--budget-sweep), timing.py, overlays.py, summary.py (summary.json from a run folder), report.py (report.html).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

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


def run_demo(
    out: Path, cfg: DemoConfig, force: bool = False, say: Callable[[str], None] = print, budgets: tuple = ()
) -> dict:
    """Run every step into `out`; returns summary.json's content. report.html is written last."""
    import numpy as np

    from csrefiner.demo import layout as L
    from csrefiner.demo.flow import Flow, prepare_out
    from csrefiner.io.atomic import register_temp, unregister_temp

    _limit_threads(cfg.threads)
    np.random.seed(cfg.seed)
    out = register_temp(prepare_out(Path(out), force))  # a run that stops half-way leaves no folder behind
    Flow(out, cfg, say, budgets).run()
    unregister_temp(out)
    return json.loads((out / L.SUMMARY).read_text())
