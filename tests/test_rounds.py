"""Annotation rounds: suggest --exclude never proposes a window overlapping an annotated patch; `csrefiner round`
never suggests a patch twice, records each round's patches (SHA-256), model and held-out scores, and a round run
again (after an interruption, or with --force) gives the same model for the same seed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_in_process as csrefiner
from skimage.segmentation import relabel_sequential

from csrefiner.errors import CsrefinerError
from csrefiner.hitl.exclude import overlaps
from csrefiner.io import parse_coords, patch_name, read_labels, write_image, write_labels
from csrefiner.models.data import sha256
from csrefiner.synth import HARD, nuclei_image
from csrefiner.synth.corrupt import corrupt_labels

SLIDE = "chipR"
TILE, PATCH = 256, 128
# a tiny cellpose network, trained from scratch for one epoch: the bookkeeping is the point, not the F1
TRAIN = [
    "--model",
    "cellpose",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--eval-every",
    "1",
    "--device",
    "cpu",
    "--option",
    "nbase=2,8,16,32,256",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A 384 x 512 slide: two 256 px pool tiles on top, the held-out row (two 128 px patches) below; predictions
    of the pool by two corrupted copies of the truth and the watershed backend."""
    root = tmp_path_factory.mktemp("rounds")
    image, labels = nuclei_image((TILE + PATCH, 2 * TILE), HARD, seed=11)
    tiles = root / "tiles"
    tiles.mkdir()
    for x in (0, TILE):
        write_image(tiles / f"{patch_name(SLIDE, x, 0, TILE, TILE)}-img.tif", image[:TILE, x : x + TILE])
    for k, level in enumerate((0.2, 0.4)):
        (root / f"copy{k}").mkdir()
        for x in (0, TILE):
            crop = corrupt_labels(labels[:TILE, x : x + TILE], level, seed=k * 10 + x)
            write_labels(root / f"copy{k}" / f"{patch_name(SLIDE, x, 0, TILE, TILE)}-mask.tif", crop)
    csrefiner("segment", "--model", "watershed", "--input", tiles, "--out", root / "watershed", "--device", "cpu")
    held = root / "heldout"
    held.mkdir()
    for x in (0, PATCH):
        key = patch_name(SLIDE, x, TILE, PATCH, PATCH)
        write_image(held / f"{key}-img.tif", image[TILE:, x : x + PATCH])
        write_labels(held / f"{key}-mask.tif", relabel_sequential(labels[TILE:, x : x + PATCH])[0])
    return root, image, labels


def preds(root):
    return [a for m in ("copy0", "copy1", "watershed") for a in ("--pred", root / m)]


def annotate(suggested, out, image, labels):
    """The simulated annotator: every suggested patch gets its ground truth (names carry slide coordinates)."""
    out.mkdir(parents=True, exist_ok=True)
    for img in sorted((suggested / "patches").glob("*-img.tif")):
        c = parse_coords(img.name)
        shutil.copy(img, out / img.name)
        box = labels[c.y : c.y + c.h, c.x : c.x + c.w]
        write_labels(out / img.name.replace("-img.tif", "-mask.tif"), relabel_sequential(box)[0].astype(np.uint32))


def model_files(folder):
    """SHA-256 of the weights (the JSON records carry times)."""
    return {
        str(p.relative_to(folder)): sha256(p)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix not in (".json", ".png")
    }


def test_suggest_exclude_never_returns_overlapping_windows(pool, tmp_path):
    root, _, _ = pool
    listed = tmp_path / "done.txt"
    listed.write_text(f"# annotated last week\n{patch_name(SLIDE, 100, 40, 90, 90)}-img.tif\n\n")
    done = tmp_path / "done"
    done.mkdir()
    write_image(done / f"{patch_name(SLIDE, 300, 150, 60, 60)}-img.tif", np.zeros((60, 60), np.uint8))
    # 96 px windows of 256 px tiles start at 0, 96, 160: the last two overlap, so overlap handling is exercised
    csrefiner(
        "suggest",
        *preds(root),
        "--image-dir",
        root / "tiles",
        "--top",
        "20",
        "--patch-size",
        "96",
        "--exclude-list",
        listed,
        "--exclude",
        done,
        "--pseudo",
        "2",
        "--out",
        tmp_path / "s",
    )
    ranking = pd.read_csv(tmp_path / "s" / "ranking.csv", keep_default_na=False)
    excluded = [parse_coords(n) for n in (f"{SLIDE}-x100_y40_w90_h90", f"{SLIDE}-x300_y150_w60_h60")]
    for row in ranking.itertuples():
        hit = any(overlaps(parse_coords(row.name), e) for e in excluded)
        assert row.excluded == hit == bool(row.excluded_by), row.name
    chosen = [parse_coords(n) for n in ranking[ranking.selected | ranking.pseudo].name]
    assert len(chosen) >= 4 and not ranking[ranking.selected].excluded.any()
    for i, a in enumerate(chosen):
        assert not any(overlaps(a, e) for e in excluded)
        assert not any(overlaps(a, b) for b in chosen[i + 1 :])  # proposals never overlap one another
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["excluded"]["n_patches"] == 2 and summary["excluded"]["n_windows"] == int(ranking.excluded.sum())
    assert sorted(p.name for p in (tmp_path / "s" / "pseudo").glob("*-mask.tif")) == sorted(
        f"{n}-mask.tif" for n in summary["pseudo"]
    )


def test_last_round_of_an_exhausted_pool_says_there_is_nothing_to_pseudo_label(pool, tmp_path, cli):
    """The pool's 8 windows of 128 px: round 1 takes them all, so `--pseudo 2` finds none; suggest says so, writes
    no empty pseudo/ folder, and `round train --pseudo` refuses in one line before any training."""
    root, _, _ = pool
    proj = tmp_path / "proj"
    args = ["round", "next", "--project", proj, *preds(root), "--image-dir", root / "tiles", "--patch-size", "128"]
    proc = cli(*args, "--top", "8", "--pseudo", "2")
    assert "warning: --pseudo 2: only 0 windows are left" in proc.stderr and "train without --pseudo" in proc.stderr
    suggested = proj / "round-01" / "suggest"
    assert len(list((suggested / "patches").glob("*-img.tif"))) == 8 and not (suggested / "pseudo").exists()
    ledger = json.loads((proj / "rounds.json").read_text())["rounds"][0]["suggest"]
    assert ledger["pseudo_requested"] == 2 and ledger["pseudo"] == []
    shutil.copytree(suggested / "patches", proj / "round-01" / "annotated")
    train = ["round", "train", "--project", proj, "--pretrained", "scratch", "--heldout", root / "heldout"]
    proc = cli(*train, "--pseudo", *TRAIN, check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "found no window left to pseudo-label" in proc.stderr and not (proj / "round-01" / "model").exists()
    assert not (proj / "round-01" / "train").exists()  # refused before anything is staged


def test_rounds_record_and_never_repeat(pool, tmp_path, cli, capsys):
    root, image, labels = pool
    proj = tmp_path / "proj"
    nxt = [
        "round",
        "next",
        "--project",
        proj,
        *preds(root),
        "--image-dir",
        root / "tiles",
        "--top",
        "3",
        "--patch-size",
        str(PATCH),
    ]
    csrefiner(*nxt)
    annotate(proj / "round-01" / "suggest", proj / "round-01" / "annotated", image, labels)
    csrefiner("round", "train", "--project", proj, "--pretrained", "scratch", "--heldout", root / "heldout", *TRAIN)
    csrefiner(*nxt, "--pseudo", "1")
    annotate(proj / "round-02" / "suggest", proj / "round-02" / "annotated", image, labels)
    before = (proj / "rounds.json").read_text()  # the ledger as an interrupted `round train` leaves it
    csrefiner("round", "train", "--project", proj, "--from", "previous", "--pseudo", *TRAIN)
    ledger = json.loads((proj / "rounds.json").read_text())

    rounds = ledger["rounds"]
    names = [n for r in rounds for n in r["suggest"]["suggested"]]
    assert [len(r["suggest"]["suggested"]) for r in rounds] == [3, 3] and len(set(names)) == 6
    boxes = [parse_coords(n) for n in names]
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert rounds[1]["suggest"]["excluded_windows"] >= 3
    for r in rounds:
        folder = proj / f"round-{r['round']:02d}"
        assert sorted(p["name"] for p in r["annotated"]) == sorted(r["suggest"]["suggested"])
        for p in r["annotated"]:
            assert p["mask_sha256"] == sha256(folder / "annotated" / f"{p['name']}-mask.tif")
        assert (proj / r["train"]["model"] / "model.json").is_file()
        assert 0.0 <= r["heldout"]["f1"] <= 1.0 and r["heldout"]["n_images"] == 2
        assert (folder / "heldout" / "evaluation" / "summary.json").is_file()
    assert rounds[0]["train"]["n_patches"] == 3 and rounds[1]["train"]["n_patches"] == 6  # all rounds so far
    assert rounds[1]["train"]["start_model"] == str(proj / "round-01" / "model") and rounds[1]["train"]["pseudo"]
    card = json.loads((proj / "round-02" / "model" / "model.json").read_text())
    assert len({s["key"] for s in card["data"]["train"] + card["data"]["val"] if s.get("group", "hard") == "hard"}) == 6

    # resume: the ledger without round 2's training (interrupted after the model was written) -> same model
    weights = model_files(proj / "round-02" / "model")
    preds2 = read_labels(next((proj / "round-02" / "heldout" / "predictions").glob("*-mask.tif")))
    (proj / "rounds.json").write_text(before)
    csrefiner("round", "train", "--project", proj, "--from", "previous", "--pseudo", *TRAIN)  # no --force needed
    again = json.loads((proj / "rounds.json").read_text())["rounds"][1]
    assert again["heldout"] == rounds[1]["heldout"] and again["annotated"] == rounds[1]["annotated"]
    assert weights == model_files(proj / "round-02" / "model") and len(weights) >= 1
    assert np.array_equal(preds2, read_labels(next((proj / "round-02" / "heldout" / "predictions").glob("*-mask.tif"))))

    # recorded results need --force; a changed round-1 patch is refused in one line
    with pytest.raises(CsrefinerError, match="--force"):
        csrefiner("round", "train", "--project", proj, *TRAIN)
    mask = next((proj / "round-01" / "annotated").glob("*-mask.tif"))
    mask.unlink()
    write_labels(mask, np.zeros((PATCH, PATCH), np.uint32))
    proc = cli("round", "train", "--project", proj, "--force", *TRAIN, check=False)
    assert proc.returncode == 2 and "changed since round 1" in proc.stderr and len(proc.stderr.splitlines()) == 1
    capsys.readouterr()
    csrefiner("round", "status", "--project", proj)
    status = capsys.readouterr().out.splitlines()
    assert len(status) == 3 and status[2].split()[:4] == ["2", "3", "3", "6"]
