"""benchmarks/annotation_budget.py without training: its held-out patches are never in the annotation pool, random
picking is seeded and never repeats a window, and the statistics (t-interval, paired Wilcoxon, plateau budget)
are the ones its tables claim."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from csrefiner.demo.config import make_config
from csrefiner.hitl.exclude import overlaps
from csrefiner.io import parse_coords, patch_name

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("annotation_budget", REPO / "benchmarks" / "annotation_budget.py")
budget = sys.modules["annotation_budget"] = importlib.util.module_from_spec(spec)  # its dataclass looks itself up
spec.loader.exec_module(budget)


def dataset(name: str):
    if name == "slide":
        return budget.slide_dataset(make_config(quick=True))
    pytest.importorskip("stardist")
    return budget.real_dataset(96)


def coords(box):
    return parse_coords(patch_name("s", box.x, box.y, box.w, box.h))


@pytest.mark.parametrize(("name", "n_pool", "n_held"), [("slide", 24, 6), ("real", 20, 5)])
def test_heldout_patches_are_never_in_the_pool(name, n_pool, n_held):
    ds = dataset(name)
    windows = [parse_coords(w) for w in ds.windows()]
    assert len(windows) == len(set(ds.windows())) == n_pool and len(ds.heldout) == n_held
    held = [coords(b) for b in ds.heldout]
    assert not any(overlaps(w, h) for w in windows for h in held)
    tiles = [coords(t) for t in ds.tiles]
    for w in windows:  # every window lies inside one pool tile (what suggest sees) and inside the image
        assert any(t.x <= w.x and w.x + w.w <= t.x + t.w and t.y <= w.y and w.y + w.h <= t.y + t.h for t in tiles)
        assert w.x + w.w <= ds.image.shape[1] and w.y + w.h <= ds.image.shape[0]


def test_random_picks_are_seeded_and_never_repeat():
    ds = budget.slide_dataset(make_config(quick=True))
    taken = []
    for _ in range(5):
        taken += budget.pick_random(ds, taken, 4, np.random.default_rng(7 + len(taken)))
    assert len(taken) == len(set(taken)) == 20
    boxes = [parse_coords(t) for t in taken]
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    again = budget.pick_random(ds, taken[:8], 4, np.random.default_rng(15))
    assert again == budget.pick_random(ds, taken[:8], 4, np.random.default_rng(15)) == taken[8:12]
    assert len(budget.pick_random(ds, taken, 8, np.random.default_rng(0))) == 4  # only 4 windows left


def raw_table() -> pd.DataFrame:
    """Two strategies, 3 seeds, 4 held-out patches, budgets 0/4/8: 'suggest' is 0.1 better at 8, equal below."""
    noise = np.random.default_rng(0).normal(0, 0.01, (3, 3, 4))
    rows = [
        dict(dataset="d", backend="b", strategy=s, seed=seed, budget=b, image=k, f1=0.2 + 0.08 * b + noise[seed, i, k])
        | ({"f1": 0.2 + 0.08 * b + noise[seed, i, k] + 0.1 + 0.005 * k} if s == "suggest" and b == 8 else {})
        for s in ("random", "suggest")
        for seed in range(3)
        for i, b in enumerate((0, 4, 8))
        for k in range(4)
    ]
    return pd.DataFrame(rows)


def test_statistics_are_the_claimed_ones(tmp_path):
    raw = raw_table()
    curve = budget.curve_table(raw)
    row = curve[(curve.strategy == "suggest") & (curve.budget == 8)].iloc[0]
    per_seed = raw[(raw.strategy == "suggest") & (raw.budget == 8)].groupby("seed").f1.mean()
    half = stats.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
    assert row.n_seeds == 3 and row.f1_mean == pytest.approx(per_seed.mean())
    assert (row.ci_low, row.ci_high) == pytest.approx((per_seed.mean() - half, per_seed.mean() + half))

    tests = budget.paired_tests(raw, "suggest", "random").set_index("budget")
    assert list(tests.n_pairs) == [12, 12, 12]  # (seed, held-out patch) pairs
    assert tests.loc[8, "mean_diff"] == pytest.approx(0.1, abs=0.01) and tests.loc[8, "p_value"] < 0.001
    assert tests.loc[0, "p_value"] == tests.loc[4, "p_value"] == 1.0  # identical models: no difference to find

    plateau = budget.plateau_budgets(curve).set_index("strategy")
    assert plateau.loc["random", "budget_95"] == 8  # 0.84 at 8; 0.52 at 4 is below 95% of it
    assert plateau.loc["suggest", "plateau_f1"] == pytest.approx(curve[curve.strategy == "suggest"].f1_mean.max())

    budget.summarize(raw, tmp_path, {"test": True}, {"d": 0.5})
    assert {p.name for p in tmp_path.iterdir()} >= {
        "raw.csv",
        "curve.csv",
        "tests.csv",
        "plateau.csv",
        "run.json",
        "tables.md",
    }
    assert (tmp_path / "learning_curves.png").stat().st_size > 10_000


def test_merging_runs_refuses_a_curve_counted_twice(tmp_path, capsys):
    raw = tmp_path / "raw.csv"
    raw_table().to_csv(raw, index=False)
    with pytest.raises(SystemExit):
        budget.main(["--from-raw", str(raw), str(raw), "--out", str(tmp_path / "merged")])
    assert "72 results in two sources" in capsys.readouterr().err and not (tmp_path / "merged").exists()


def test_pseudo_quality_scores_each_pseudo_window_against_the_truth(tmp_path):
    """With the watershed as both opinions the consensus is the watershed itself: all three rows of a window
    must agree, and every window is a pool window the annotator has not been offered."""
    ds = budget.slide_dataset(make_config(quick=True))
    watershed = budget.prepare_pool(ds, tmp_path)
    rows = pd.DataFrame(
        budget.pseudo_quality(ds, "watershed", Path("watershed"), watershed, tmp_path, Namespace(pseudo_count=3))
    )
    offered = set(pd.read_csv(tmp_path / "suggest" / "ranking.csv").query("selected").name)
    assert rows.window.nunique() == 3 and not offered & set(rows.window) and set(rows.window) <= set(ds.windows())
    for _, window in rows.groupby("window"):
        assert window.labels.tolist() == ["consensus", "model", "watershed"]
        assert window.drop(columns="labels").nunique().max() == 1  # identical scores
    assert (rows.truth_objects > 0).all() and rows.f1.between(0, 1).all()
    assert np.allclose(rows.recall, rows.tp / rows.truth_objects)
    budget.write_pseudo_quality(rows, tmp_path)
    totals = pd.read_csv(tmp_path / "pseudo_quality_totals.csv")
    assert totals.windows.tolist() == [3, 3, 3] and totals.truth_objects.tolist() == [rows.truth_objects.sum() // 3] * 3


def test_two_backends_in_one_run_share_the_easy_patches(tmp_path, monkeypatch):
    """The default grid (--backends cellpose,stardist) trains a base per backend in one work folder: the second
    must reuse the easy patches the first wrote, not stop at 'output exists'."""
    calls = []
    monkeypatch.setattr(budget, "finetune", lambda backend, train, out, *a, **k: calls.append((backend, train, out)))
    cfg = make_config(quick=True)
    image, labels = budget.make_slide(cfg)
    for backend in ("cellpose", "stardist"):
        assert budget.base_model(cfg, backend, tmp_path, 1, image, labels) == tmp_path / f"base-{backend}"
    assert [c[0] for c in calls] == ["cellpose", "stardist"] and calls[0][1] == calls[1][1] == tmp_path / "easy_train"
    assert len(list((tmp_path / "easy_train").glob("*-mask.tif"))) == cfg.easy_train
