"""consensus / suggest: fused pseudo-labels beat every corrupted copy; ranking follows the corruption level."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from csrefiner.hitl.consensus import clusters, fuse
from csrefiner.hitl.pairwise import PairMatch, Pairwise
from csrefiner.hitl.suggest import windows
from csrefiner.io import parse_coords, patch_name, read_image, read_labels, write_image, write_labels
from csrefiner.metrics.matching import matching
from csrefiner.synth import EASY, HARD, nuclei_image
from csrefiner.synth.corrupt import corrupt_labels

SIZE = 192
MODELS = ("modelA", "modelB", "modelC")


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    """10 tiles (easy and hard), ground truth and 3 independently corrupted copies; level varies per tile."""
    root = tmp_path_factory.mktemp("hitl")
    levels = np.linspace(0.05, 0.6, 10)
    np.random.default_rng(7).shuffle(levels)
    for folder in ("truth", "tiles", *MODELS):
        (root / folder).mkdir()
    keys = []
    for i, level in enumerate(levels):
        img, gt = nuclei_image((SIZE, SIZE), HARD if i % 2 else EASY, seed=40 + i)
        key = patch_name("chipZ", SIZE * i, 512, SIZE, SIZE)
        keys.append(key)
        write_labels(root / "truth" / f"{key}-mask.tif", gt)
        write_image(root / "tiles" / f"{key}-img.tif", img)
        for k, model in enumerate(MODELS):
            write_labels(root / model / f"{key}.tif", corrupt_labels(gt, level, seed=1000 * i + k))
    return root, dict(zip(keys, levels))


def _f1(truth_dir, pred_dir, keys, suffix):
    return np.mean(
        [matching(read_labels(truth_dir / f"{k}-mask.tif"), read_labels(pred_dir / f"{k}{suffix}"))["f1"] for k in keys]
    )


def test_consensus_beats_every_copy(cli, corrupted):
    root, levels = corrupted
    preds = [a for m in MODELS for a in ("--pred", root / m)]
    cli("consensus", *preds, "--out", root / "fused", "--image-dir", root / "tiles")
    keys = sorted(levels)
    fused = _f1(root / "truth", root / "fused" / "patches", keys, "-mask.tif")
    copies = [_f1(root / "truth", root / m, keys, ".tif") for m in MODELS]
    print(f"consensus F1 {fused:.3f} vs copies {np.round(copies, 3)}")
    assert fused > max(copies) + 0.05
    # the fused folder is a CSRefiner training folder: images next to masks, uint32 labels
    assert read_image(root / "fused" / "patches" / f"{keys[0]}-img.tif").shape == (SIZE, SIZE)
    assert read_labels(root / "fused" / "patches" / f"{keys[0]}-mask.tif").dtype == np.uint32
    objects = pd.read_csv(root / "fused" / "objects.csv")
    tiles = pd.read_csv(root / "fused" / "tiles.csv")
    assert set(tiles.tile) == set(keys) and objects.votes.min() >= 2
    assert objects.agreement.between(0, 1).all() and (objects.agreement <= objects.votes / 3 + 1e-9).all()
    assert tiles.set_index("tile").n_consensus.to_dict() == objects.groupby("tile").size().to_dict()
    assert (root / "fused" / "agreement.png").stat().st_size > 0


def test_suggest_ranks_most_corrupted_first(cli, corrupted):
    root, levels = corrupted
    preds = [a for m in MODELS for a in ("--pred", root / m)]
    cli("suggest", *preds, "--image-dir", root / "tiles", "--top", "3", "--patch-size", "0", "--out", root / "sugg")
    ranking = pd.read_csv(root / "sugg" / "ranking.csv")
    rho = spearmanr(ranking.disagreement, [levels[t] for t in ranking.tile]).statistic
    print(f"Spearman(disagreement, corruption level) = {rho:.3f}")
    assert rho > 0.8
    top = ranking[ranking.selected]
    assert len(top) == 3 and list(top["rank"]) == [1, 2, 3]
    for name in top.name:
        assert parse_coords(name).y == 512  # slide coordinates carried over from the tile names
        pair = [root / "sugg" / "patches" / f"{name}-{r}.tif" for r in ("img", "mask")]
        assert all(p.is_file() for p in pair)
        assert read_labels(pair[1]).max() > 0
    assert (root / "sugg" / "suggest.png").stat().st_size > 0


def test_suggest_windows_cover_the_tile():
    boxes = windows((300, 256), 128)
    covered = np.zeros((300, 256), int)
    for b in boxes:
        covered[b] += 1
        assert covered[b].shape == (128, 128)
    assert covered.min() == 1 and len(boxes) == 3 * 2  # rows 0, 128, 172 (last window ends at the edge)


def test_contested_pixels_go_to_the_larger_share():
    a = np.zeros((10, 20), np.uint32)
    a[:, :10], a[:, 10:] = 1, 2
    b = a.copy()
    b[:, 10:12] = 1  # model B draws object 1 two columns wider, into object 2
    c = np.where(a == 2, 2, 0).astype(np.uint32)  # model C misses object 1
    fused = fuse([a, b, c], min_votes=2)
    # columns 10-11: object 1 (2 votes) is covered there by 1 of its 2 members (share 1/2, kept: a tie keeps),
    # object 2 (3 votes) by 2 of 3 (share 2/3): object 2 keeps them
    assert fused.stats["contested_pixels"] == 20
    assert (fused.labels[:, 10:] == fused.labels[0, 15]).all() and (fused.labels[:, :10] == fused.labels[0, 0]).all()
    assert fused.labels[0, 0] != fused.labels[0, 15]
    assert list(fused.objects.votes) == [2, 3]
    # agreement = votes / models * mean IoU(member, fused): object 1 = cols 0-9 vs A 0-9, B 0-11;
    # object 2 = cols 10-19 vs A 10-19, B 12-19, C 10-19
    assert fused.objects.agreement.tolist() == pytest.approx([2 / 3 * (1 + 10 / 12) / 2, (1 + 0.8 + 1) / 3])
    assert np.array_equal(fused.labels, fuse([a, b, c], min_votes=2).labels)


def test_chained_matches_keep_one_object_per_model():
    ids = [np.array([1, 2]), np.array([1]), np.array([1])]
    f = np.array
    matches = [
        PairMatch(0, 1, f([0]), f([0]), f([0.9])),  # A1-B1
        PairMatch(0, 2, f([1]), f([0]), f([0.6])),  # A2-C1
        PairMatch(1, 2, f([0]), f([0]), f([0.8])),  # B1-C1: chains A1 and A2 into one cluster
    ]
    comp, model = clusters(Pairwise(ids, matches))
    assert comp[0] == comp[2] == comp[3] and comp[1] not in (comp[0],)  # A2 (the weaker) leaves
    assert list(model) == [0, 0, 1, 2]


def _write_three(root, shapes=((64, 64),) * 3, missing=None):
    for k, (m, shape) in enumerate(zip(MODELS, shapes)):
        (root / m).mkdir(parents=True)
        for t in ("t1", "t2"):
            if missing == (m, t):
                continue
            _, gt = nuclei_image(shape, EASY, seed=k)
            write_labels(root / m / f"{t}.tif", gt)


def test_tile_missing_in_one_model(cli, tmp_path):
    _write_three(tmp_path, missing=("modelB", "t2"))
    preds = [a for m in MODELS for a in ("--pred", tmp_path / m)]
    proc = cli("consensus", *preds, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "modelB" in proc.stderr and "t2" in proc.stderr and not (tmp_path / "out").exists()
    proc = cli("consensus", *preds, "--out", tmp_path / "out", "--skip-missing")
    assert "warning: tile t2: no prediction in" in proc.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_tiles"] == 1


def test_shape_mismatch_and_bad_votes(cli, tmp_path):
    _write_three(tmp_path, shapes=((64, 64), (64, 64), (64, 80)))
    preds = [a for m in MODELS for a in ("--pred", tmp_path / m)]
    proc = cli("suggest", *preds, "--image-dir", tmp_path / "modelA", "--out", tmp_path / "s", check=False)
    assert proc.returncode == 2 and "tile t1" in proc.stderr and "(64, 80)" in proc.stderr
    assert not (tmp_path / "s").exists()
    proc = cli("consensus", *preds, "--min-votes", "4", "--out", tmp_path / "c", check=False)
    assert proc.returncode == 2 and "--min-votes 4" in proc.stderr
