import json

import numpy as np
import pandas as pd
import pytest
from skimage.segmentation import expand_labels

from csrefiner.io import patch_name, write_labels
from csrefiner.synth import HARD, nuclei_image


@pytest.fixture
def gt_and_preds(tmp_path):
    """Ground truth of 6 generated patches, a good prediction (slightly grown) and a bad one (objects dropped)."""
    rng = np.random.default_rng(3)
    for folder in ("gt", "good", "bad"):
        (tmp_path / folder).mkdir()
    for i in range(6):
        _, gt = nuclei_image((128, 128), HARD, seed=i)
        gt = np.where(gt > 0, gt + 70_000, 0).astype(np.uint32)  # labels above uint16 all the way through
        key = patch_name("chip", 0, 128 * i, 128, 128)
        write_labels(tmp_path / "gt" / f"{key}-mask.tif", gt)
        write_labels(tmp_path / "good" / f"{key}-mask.tif", expand_labels(gt, 1))
        bad = gt.copy()
        drop = rng.choice(np.unique(gt)[1:], size=int(0.4 * len(np.unique(gt))), replace=False)
        bad[np.isin(bad, drop)] = 0
        write_labels(tmp_path / "bad" / f"{key}.tif", bad)
    return tmp_path


def test_evaluate_two_methods(cli, gt_and_preds):
    d = gt_and_preds
    cli("evaluate", "--gt", d / "gt", "--pred", d / "bad", "--pred", d / "good", "--out", d / "eval")
    table = pd.read_csv(d / "eval" / "per_image.csv")
    assert set(table.method) == {"bad", "good"} and len(table) == 12
    assert (table[table.method == "bad"].recall < 0.7).all()
    assert (table[table.method == "good"].f1 > 0.9).all()
    summary = json.loads((d / "eval" / "summary.json").read_text())
    micro = summary["methods"]["good"]["micro"]
    assert micro["tp"] == table[table.method == "good"].tp.sum()
    tests = pd.read_csv(d / "eval" / "paired_tests.csv")
    f1 = tests[tests.metric == "f1"].iloc[0]
    assert f1.p_value < 0.05 and f1.mean_diff_b_minus_a > 0.2  # 6 images, all better: p = 2 / 2^6
    sweep = pd.read_csv(d / "eval" / "iou_sweep.csv")
    assert sorted(sweep.thresh.unique().round(2)) == [round(0.5 + 0.05 * i, 2) for i in range(10)]
    for metric in ("f1", "precision", "recall", "pixel_dice", "object_jaccard"):
        assert (d / "eval" / f"boxplot_{metric}.png").stat().st_size > 5000
    assert "Wilcoxon" in (d / "eval" / "summary.md").read_text()


def test_evaluate_refuses_to_overwrite(cli, gt_and_preds):
    d = gt_and_preds
    cli("evaluate", "--gt", d / "gt", "--pred", d / "good", "--out", d / "eval")
    proc = cli("evaluate", "--gt", d / "gt", "--pred", d / "good", "--out", d / "eval", check=False)
    assert proc.returncode != 0 and "--force" in proc.stderr
    cli("evaluate", "--gt", d / "gt", "--pred", d / "good", "--out", d / "eval", "--force")


def test_prediction_without_ground_truth(cli, gt_and_preds):
    d = gt_and_preds
    write_labels(d / "good" / "stray-mask.tif", np.zeros((128, 128), np.uint32))
    proc = cli("evaluate", "--gt", d / "gt", "--pred", d / "good", "--out", d / "eval", check=False)
    assert proc.returncode == 2
    assert "stray-mask.tif" in proc.stderr and "without ground truth" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (d / "eval").exists()


def test_shape_mismatch_and_float_masks(cli, gt_and_preds):
    d = gt_and_preds
    victim = sorted((d / "good").iterdir())[0]
    write_labels(victim, np.zeros((64, 64), np.uint32), force=True)
    proc = cli("evaluate", "--gt", d / "gt", "--pred", d / "good", "--out", d / "eval", check=False)
    assert proc.returncode == 2 and victim.name in proc.stderr and "shape" in proc.stderr
    import tifffile

    tifffile.imwrite(victim, np.zeros((128, 128), np.float32))
    proc = cli("evaluate", "--gt", d / "gt", "--pred", d / "good", "--out", d / "eval", check=False)
    assert proc.returncode == 2 and "not an integer label image" in proc.stderr
    assert not (d / "eval").exists()
