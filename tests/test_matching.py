"""csrefiner's matching must give stardist.matching's numbers exactly, on random and on real label pairs."""

import numpy as np
import pytest
from skimage.segmentation import expand_labels

from csrefiner.metrics.matching import THRESHOLD_SWEEP, aji_plus, matching
from csrefiner.metrics.overlap import label_overlap
from csrefiner.models.classical import watershed_nuclei

stardist_matching = pytest.importorskip("stardist.matching")
FIELDS = (
    "fp",
    "tp",
    "fn",
    "precision",
    "recall",
    "accuracy",
    "f1",
    "n_true",
    "n_pred",
    "mean_true_score",
    "mean_matched_score",
    "panoptic_quality",
)


def assert_same_as_stardist(y_true, y_pred, thresholds):
    for t in thresholds:
        ref = stardist_matching.matching(y_true, y_pred, thresh=t)._asdict()
        ours = matching(y_true, y_pred, t)
        for key in FIELDS:
            assert abs(ours[key] - ref[key]) <= 1e-9, (t, key, ours[key], ref[key])


def random_labels(rng, shape=(96, 96), n=40, grow=5):
    seeds = np.zeros(shape, np.uint32)
    idx = rng.choice(seeds.size, n, replace=False)
    seeds.flat[idx] = rng.choice(np.arange(1, 300_000), n, replace=False)  # sparse labels above uint16
    return expand_labels(seeds, grow)


@pytest.mark.parametrize("seed", range(12))
def test_random_pairs_agree_with_stardist(seed):
    rng = np.random.default_rng(seed)
    y_true = random_labels(rng, n=int(rng.integers(1, 50)))
    if seed % 2:
        y_pred = y_true.copy()  # perturbed copy: many matches, some split/shrunk objects
        y_pred[rng.random(y_pred.shape) < 0.25] = 0
        y_pred = expand_labels(y_pred, 1)
    else:
        y_pred = random_labels(rng, n=int(rng.integers(1, 50)))
    assert_same_as_stardist(y_true, y_pred, (0.1, 0.3, *THRESHOLD_SWEEP))


def test_real_image_pair_agrees_with_stardist(real_nuclei):
    img, y_true = real_nuclei
    y_pred = watershed_nuclei(img)
    assert y_pred.max() > 100
    assert_same_as_stardist(y_true, y_pred, THRESHOLD_SWEEP)
    assert matching(y_true, y_pred, 0.5)["f1"] > 0.5


def test_ties_at_threshold_are_solved_optimally():
    # true object split exactly in half: both halves have IoU 0.5 with it; only one may match
    y_true = np.zeros((10, 10), np.uint32)
    y_true[2:6, 2:6] = 1
    y_pred = np.zeros_like(y_true)
    y_pred[2:4, 2:6] = 7
    y_pred[4:6, 2:6] = 9
    assert_same_as_stardist(y_true, y_pred, (0.5,))
    assert matching(y_true, y_pred, 0.5)["tp"] == 1


def test_labels_above_uint16_and_empty_images():
    y = np.zeros((40, 40), np.uint32)
    y[:10, :10] = 65_536
    y[20:30, 20:30] = 3_000_000_000
    m = matching(y, y, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["f1"]) == (2, 0, 0, 1.0)
    empty = np.zeros_like(y)
    assert matching(empty, empty, 0.5)["f1"] == 0.0
    assert matching(y, empty, 0.5)["fn"] == 2


def test_aji_plus_by_hand():
    y_true = np.zeros((10, 10), np.uint32)
    y_true[0:4, 0:4] = 1  # 16 px
    y_true[6:8, 6:8] = 2  # 4 px, missed
    y_pred = np.zeros_like(y_true)
    y_pred[0:4, 0:2] = 5  # 8 px inside object 1
    y_pred[0:4, 2:5] = 6  # 12 px, 8 inside object 1
    inter, union = aji_plus(label_overlap(y_true, y_pred))
    # one-to-one pairing picks (1, 6) [IoU 8/20] or (1, 5) [8/16]: the larger IoU, (1, 5)
    assert (inter, union) == (8, 16 + 12 + 4)


def test_dense_and_sorting_overlap_paths_agree():
    """Small label ranges are counted in one bincount table, large ones by sorting: both give the same pairs."""
    from csrefiner.metrics.overlap import _dense_overlap, _sparse_overlap
    from csrefiner.synth import HARD, nuclei_labels

    gt, _ = nuclei_labels((200, 230), HARD, seed=5)
    pred = expand_labels(np.roll(gt, 3, axis=1), 1)
    pred[pred == 7] = 0  # a missing label: ids are not contiguous
    dense = _dense_overlap(gt.ravel(), pred.ravel(), int(gt.max()), int(pred.max()))
    sparse = _sparse_overlap(gt, pred)
    assert dense.n_true > 50 and dense.pair_true.size > dense.n_true
    for name in ("true_ids", "pred_ids", "true_area", "pred_area", "pair_true", "pair_pred", "pair_inter"):
        a, b = getattr(dense, name), getattr(sparse, name)
        assert a.dtype.kind == b.dtype.kind and np.array_equal(a, b), name
