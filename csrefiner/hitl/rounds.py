"""Annotation rounds: suggest -> annotate -> fine-tune -> score on held-out patches, again and again.

A project folder keeps every round and a ledger, `rounds.json`:

    P/rounds.json                 which patches were suggested / annotated in which round (SHA-256 of each
                                  file), the model of each round, what it started from, its held-out scores
    P/base-heldout/               the base model's held-out evaluation (round 0)
    P/round-01/suggest/           `suggest` output: patches/ to correct (consensus masks), ranking.csv, pseudo/
    P/round-01/annotated/         the corrected patches (<name>-img.tif / -mask.tif), written by the user
    P/round-01/train/             every annotated patch of rounds 1..k (what the model of round k learnt from)
    P/round-01/model/             the fine-tuned model of round k
    P/round-01/heldout/           its held-out predictions/ and evaluation/

Rules that keep the rounds honest: round k+1 never proposes a window overlapping a patch suggested or annotated
in rounds 1..k; an annotated patch may not overlap an earlier round's one nor a held-out patch; a patch
recorded in the ledger must not change afterwards (its SHA-256 is checked at every training). Training always
uses ALL annotated patches of rounds 1..k, starting from the base model or from round k-1's model.
Outputs of an interrupted command (a folder the ledger does not record) are replaced without --force; recorded
ones only with --force. The same inputs and seed give the same round again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_dir, atomic_path, image_mask_pairs, parse_coords
from csrefiner.models.data import sha256

LEDGER = "rounds.json"
LEDGER_VERSION = 1
BASE_HELDOUT = "base-heldout"
STARTS = ("base", "previous")


def round_dir(k: int) -> str:
    return f"round-{k:02d}"


# -- the ledger --------------------------------------------------------------------------------------------------
def ledger_path(project: str | os.PathLike) -> Path:
    return Path(project) / LEDGER


def load_ledger(project: str | os.PathLike, create: bool = False) -> dict:
    path = ledger_path(project)
    if not path.is_file():
        if create:
            return {"csrefiner_rounds": LEDGER_VERSION, "base": None, "heldout": None, "rounds": []}
        raise CsrefinerError(
            f"{path}: no rounds ledger; start the project with `csrefiner round next --project {project} ...`"
        )
    try:
        ledger = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CsrefinerError(f"{path}: not valid JSON ({exc}); restore it from a backup") from None
    if ledger.get("csrefiner_rounds") != LEDGER_VERSION:
        raise CsrefinerError(f"{path}: not a csrefiner rounds ledger (version {LEDGER_VERSION})")
    return ledger


def save_ledger(project: str | os.PathLike, ledger: dict) -> None:
    with atomic_path(ledger_path(project), force=True) as tmp:
        tmp.write_text(json.dumps(ledger, indent=2) + "\n")


def _replaceable(folder: Path, recorded: bool, force: bool, what: str) -> bool:
    """May `folder` be (re)written? Unrecorded leftovers of an interrupted run: yes; recorded results: --force."""
    if folder.exists() and recorded and not force:
        raise CsrefinerError(f"{folder}: {what} is recorded in {LEDGER}; pass --force to redo it")
    return True


# -- which patches are taken -------------------------------------------------------------------------------------
def taken_names(ledger: dict, before: int) -> list[str]:
    """Patches suggested or annotated in rounds 1..before-1 (never proposed again)."""
    names = set()
    for r in ledger["rounds"]:
        if r["round"] < before:
            names.update(r["suggest"]["suggested"])
            names.update(p["name"] for p in r.get("annotated", []))
    return sorted(names)


def next_round(
    project: str | os.PathLike,
    preds: Sequence[str | os.PathLike],
    image_dir: str | os.PathLike,
    names: Sequence[str],
    top: int,
    patch_size: int = 256,
    min_votes: int | None = None,
    iou: float = 0.5,
    skip_missing: bool = False,
    pseudo: int = 0,
    exclude: Sequence[str | os.PathLike] = (),
    exclude_list: Sequence[str | os.PathLike] = (),
    force: bool = False,
) -> tuple[int, dict]:
    """Suggest the patches of the next round, excluding every patch of the earlier rounds; (round, summary).

    A round suggested but not yet trained is suggested again only with --force (same round number)."""
    from csrefiner.hitl.exclude import exclusion
    from csrefiner.hitl.suggest import suggest_folders

    project = Path(project)
    ledger = load_ledger(project, create=True)
    last = ledger["rounds"][-1] if ledger["rounds"] else None
    if last is not None and "train" not in last:
        if not force:
            k = last["round"]
            raise CsrefinerError(
                f"{project}: round {k} is suggested but not trained; annotate "
                f"{project / round_dir(k) / 'annotated'} and run `csrefiner round train`, or pass "
                f"--force to suggest round {k} again"
            )
        k = last["round"]
    else:
        k = len(ledger["rounds"]) + 1
    excluded = exclusion(exclude, exclude_list, taken_names(ledger, k), f"{LEDGER} (rounds 1..{k - 1})")
    out = project / round_dir(k) / "suggest"
    recorded = last is not None and last["round"] == k
    _replaceable(out, recorded, force, f"the suggestion of round {k}")
    _, summary = suggest_folders(
        preds,
        image_dir,
        out,
        names,
        top,
        patch_size,
        min_votes,
        iou,
        skip_missing,
        force=True,
        excluded=excluded,
        pseudo=pseudo,
    )
    record = {
        "round": k,
        "suggest": {
            "dir": f"{round_dir(k)}/suggest",
            "preds": [str(p) for p in preds],
            "image_dir": str(image_dir),
            "top": top,
            "patch_size": patch_size,
            "suggested": summary["top"],
            "pseudo_requested": pseudo,
            "pseudo": summary["pseudo"],
            "excluded_patches": excluded.names,
            "excluded_windows": summary["excluded"]["n_windows"],
        },
    }
    ledger["rounds"] = [r for r in ledger["rounds"] if r["round"] != k] + [record]
    save_ledger(project, ledger)
    return k, summary


# -- annotated patches -------------------------------------------------------------------------------------------
def _hashes(folder: Path) -> list[dict]:
    return [
        {"name": key, "img_sha256": sha256(img), "mask_sha256": sha256(mask)}
        for key, img, mask in image_mask_pairs(folder)
    ]


def _coords(name: str, where: Path):
    c = parse_coords(name)
    if c is None:
        raise CsrefinerError(
            f"{where}: patch '{name}' carries no slide coordinates; keep the names `suggest` wrote "
            "(<slide>-x.._y.._w.._h..)"
        )
    return c


def check_new_patches(new: list[dict], ledger: dict, k: int, folder: Path, heldout: Path) -> None:
    """No patch of round k may overlap an earlier round's annotated patch or a held-out patch."""
    from csrefiner.hitl.exclude import exclusion, folder_names

    earlier = [p["name"] for r in ledger["rounds"] if r["round"] < k for p in r.get("annotated", [])]
    held = [n for n in folder_names(heldout) if parse_coords(n)]
    for names, what in ((earlier, "a patch annotated in an earlier round"), (held, f"a held-out patch of {heldout}")):
        if not names:
            continue
        ex = exclusion(names=names)
        for p in new:
            hit = ex.hit(_coords(p["name"], folder))
            if hit:
                raise CsrefinerError(
                    f"{folder}: patch {p['name']} overlaps {what} ({hit}); remove it from this "
                    "round (a patch is annotated once, and held-out patches are never trained on)"
                )


def check_unchanged(project: Path, ledger: dict, k: int) -> None:
    """Patches recorded for rounds before k must still be the files that were annotated."""
    for r in ledger["rounds"]:
        if r["round"] >= k:
            continue
        folder = project / round_dir(r["round"]) / "annotated"
        now = {p["name"]: p for p in _hashes(folder)} if folder.is_dir() else {}
        for p in r.get("annotated", []):
            if now.get(p["name"]) != p:
                raise CsrefinerError(
                    f"{folder}: patch {p['name']} is missing or changed since round {r['round']} "
                    "was trained; restore it (the ledger keeps its SHA-256), or start a new project"
                )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def gather_training(project: Path, k: int, out: Path) -> int:
    """Copy (hard-link) the annotated patches of rounds 1..k into `out`; returns their number."""
    n = 0
    with atomic_dir(out, force=True) as tmp:  # the round's own working folder, rebuilt every time
        for j in range(1, k + 1):
            for _, img, mask in image_mask_pairs(project / round_dir(j) / "annotated"):
                _link_or_copy(img, tmp / img.name)
                _link_or_copy(mask, tmp / mask.name)
                n += 1
    return n


# -- training and held-out scores --------------------------------------------------------------------------------
def heldout_scores(project: Path, backend: str, model: str, heldout: Path, out: Path, device: str) -> dict:
    """Segment the held-out patches with `model` (a model folder or a pretrained name) and evaluate (IoU 0.5)."""
    from csrefiner.metrics.report import evaluate_methods
    from csrefiner.models.base import TrainParams
    from csrefiner.models.card import CARD
    from csrefiner.models.segment import segment

    folder = Path(model) if (Path(model) / CARD).is_file() else None
    params = TrainParams(device=device)
    with atomic_dir(out, force=True) as tmp:
        segment(folder, None if folder else f"{backend}:{model}", heldout, tmp / "predictions", params)
        info = evaluate_methods(heldout, [("model", tmp / "predictions")], tmp / "evaluation", 0.5)
    macro = info["methods"]["model"]["macro"]
    return {
        "dir": str(out.relative_to(project)),
        "n_images": info["methods"]["model"]["n_images"],
        **{k: macro[k] for k in ("f1", "precision", "recall")},
        "pooled_f1": info["methods"]["model"]["micro"]["f1"],
    }


def _base(ledger: dict, backend: str, pretrained: str | None) -> dict:
    base = ledger.get("base")
    if base is None:
        if not pretrained:
            raise CsrefinerError("the first `round train` needs --pretrained (the base model every round starts from)")
        return {"backend": backend, "pretrained": pretrained}
    if backend != base["backend"] or (pretrained and pretrained != base["pretrained"]):
        raise CsrefinerError(
            f"this project's base model is {base['backend']}:{base['pretrained']} (in {LEDGER}); "
            "keep it for every round, or start a new project"
        )
    return base


def _heldout(ledger: dict, heldout: str | os.PathLike | None) -> Path:
    recorded = ledger.get("heldout")
    if recorded is None and heldout is None:
        raise CsrefinerError("the first `round train` needs --heldout (annotated patches never trained on)")
    if recorded is not None and heldout is not None and Path(heldout).resolve() != Path(recorded).resolve():
        raise CsrefinerError(
            f"--heldout {heldout}: this project's held-out folder is {recorded}; scores of "
            "different rounds are only comparable on the same patches"
        )
    return Path(heldout or recorded)


def train_round(
    project: str | os.PathLike,
    backend: str,
    params,
    start: str = "previous",
    pretrained: str | None = None,
    heldout: str | os.PathLike | None = None,
    val_fraction: float = 0.15,
    use_pseudo: bool = False,
    gamma: float = 0.85,
    force: bool = False,
    report: Callable | None = None,
) -> dict:
    """Fine-tune the model of the last suggested round on every annotated patch so far; score it; record it."""
    from csrefiner.models.finetune import finetune

    project = Path(project)
    ledger = load_ledger(project)
    if start not in STARTS:
        raise CsrefinerError(f"--from {start}: use base (the project's base model) or previous (round k-1's model)")
    if not ledger["rounds"]:
        raise CsrefinerError(f"{project}: no round yet; run `csrefiner round next` first")
    rec = ledger["rounds"][-1]
    k = rec["round"]
    base = _base(ledger, backend, pretrained)
    held = _heldout(ledger, heldout)
    folder = project / round_dir(k)
    _replaceable(folder / "model", "train" in rec, force, f"the model of round {k}")
    if not (folder / "annotated").is_dir():
        raise CsrefinerError(
            f"{folder / 'annotated'}: missing; put the corrected patches of round {k} there "
            "(<name>-img.tif / <name>-mask.tif, the names `round next` suggested)"
        )
    pseudo = _pseudo_folder(folder, rec) if use_pseudo else None
    check_unchanged(project, ledger, k)
    new = _hashes(folder / "annotated")
    check_new_patches(new, ledger, k, folder / "annotated", held)
    n = gather_training(project, k, folder / "train")
    prev = next((r for r in ledger["rounds"] if r["round"] == k - 1), None)
    origin = base["pretrained"] if start == "base" or prev is None else str(project / prev["train"]["model"])
    card = finetune(
        backend,
        folder / "train",
        folder / "model",
        origin,
        params,
        None,
        val_fraction,
        pseudo,
        gamma,
        force=True,
        report=report,
    )
    if ledger.get("base_scores") is None and base["pretrained"] != "scratch":
        ledger["base_scores"] = heldout_scores(
            project, backend, base["pretrained"], held, project / BASE_HELDOUT, params.device
        )
    scores = heldout_scores(project, backend, str(folder / "model"), held, folder / "heldout", params.device)
    rec["annotated"] = new
    rec["train"] = {
        "from": "base" if prev is None else start,
        "start_model": origin,
        "model": f"{round_dir(k)}/model",
        "n_patches": n,
        "n_new_patches": len(new),
        "pseudo": bool(pseudo),
        "gamma": gamma if pseudo else None,
        "seed": params.seed,
        "epochs": params.epochs,
        "validation_f1": card["validation"]["after"]["f1"],
    }
    rec["heldout"] = scores
    ledger["base"], ledger["heldout"] = base, str(held)
    save_ledger(project, ledger)
    return rec


def _pseudo_folder(folder: Path, rec: dict) -> Path:
    """The round's pseudo-labels, or a refusal that says why there are none (before anything is staged)."""
    pseudo = folder / "suggest" / "pseudo"
    if not pseudo.is_dir():
        asked = rec["suggest"].get("pseudo_requested", 0) > 0
        why = "`round next --pseudo N` found no window left to pseudo-label" if asked else "suggested without --pseudo"
        raise CsrefinerError(
            f"{pseudo}: no pseudo-labels in this round ({why}); train without --pseudo, or suggest again with "
            "`round next --force --pseudo N`"
        )
    return pseudo


def status(project: str | os.PathLike) -> list[dict]:
    """One row per round (round 0: the base model's held-out scores)."""
    ledger = load_ledger(project)
    rows = []
    if ledger.get("base_scores"):
        rows.append(
            {
                "round": 0,
                "suggested": 0,
                "annotated": 0,
                "total": 0,
                "from": "-",
                "model": ledger["base"]["pretrained"],
                "heldout_f1": ledger["base_scores"]["f1"],
            }
        )
    total = 0
    for r in ledger["rounds"]:
        total += len(r.get("annotated", []))
        t = r.get("train")
        rows.append(
            {
                "round": r["round"],
                "suggested": len(r["suggest"]["suggested"]),
                "annotated": len(r.get("annotated", [])),
                "total": total if t else None,
                "from": t["from"] if t else "-",
                "model": t["model"] if t else "(not trained)",
                "heldout_f1": r["heldout"]["f1"] if t else None,
            }
        )
    return rows
