"""How many patches must be annotated? Held-out F1 against the annotation budget, in rounds, with a simulated
annotator (the ground truth replaces the corrections).

Datasets: `slide`, the demo's generated slide (csrefiner.demo.data: annotation pool = its top rows, held-out =
the hard patches below, never in the pool), and `real`, stardist's annotated nuclei image on a --real-patch grid
(96 px: 20 pool windows in the top rows, the bottom row of 5 held out). Base model per backend: the demo's small
network trained from scratch on the slide's easy patches (as `demo run` without a cached pretrained model).

Strategies, each grown round by round (budget b -> the next budget adds the difference):
- `suggest`: `suggest` on the pool predicted by the current model and watershed, excluding every annotated patch
  (csrefiner.hitl.exclude); each budget's model is fine-tuned from the base on all annotated patches;
- `random`: seeded random pool windows (not overlapping annotated ones), fine-tuned from the base;
- `suggest+pseudo`: as suggest, plus the most agreed windows' consensus as pseudo-labels (finetune --pseudo,
  gamma-weighted sampling);
- `suggest-prev`: as suggest, but each round fine-tunes the previous round's model (round-from-previous).
Budget 0 is the base model. Per budget: mean held-out F1 (IoU 0.5, macro over patches, then over seeds) with a
95% t-interval over seeds; a Wilcoxon signed-rank test over (seed, held-out patch) pairs of suggest vs random and
of suggest-prev vs suggest and of suggest+pseudo vs suggest; the watershed's held-out F1 as a reference; the
smallest budget whose mean F1 reaches 95% of the curve's maximum (its plateau).

Smoke (one seed, ~minutes on a shared CPU):
  python benchmarks/annotation_budget.py --datasets slide --backends cellpose --budgets 0,4,8 --seeds 0 --quick
Grid (~4 h on 2 cores): python benchmarks/annotation_budget.py --datasets slide,real --backends cellpose,stardist \
  --budgets 0,4,8,12,16,20 --seeds 0,1,2 --quick
Merge runs (no training): python benchmarks/annotation_budget.py --from-raw runA/raw.csv runB/raw.csv --out OUT
Pseudo-label quality (no fine-tuning): ... --pseudo-quality --out OUT writes OUT/pseudo_quality.csv (each of the
first round's pseudo windows: its consensus and each opinion alone against the truth) and pseudo_quality_totals.csv.
Writes OUT/raw.csv (one row per dataset, backend, strategy, seed, budget and held-out patch), OUT/curve.csv,
OUT/tests.csv, OUT/plateau.csv, OUT/tables.md, OUT/learning_curves.png, OUT/run.json, and prints the tables. No
multiprocessing (shared CPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import relabel_sequential

from csrefiner.demo.config import make_config
from csrefiner.demo.data import Box, easy_boxes, heldout_boxes, make_slide, real_nuclei, write_patches
from csrefiner.demo.steps import PATIENCE, VAL_FRACTION
from csrefiner.hitl.exclude import exclusion, overlaps
from csrefiner.hitl.sampling import DEFAULT_GAMMA
from csrefiner.hitl.suggest import suggest_folders
from csrefiner.io import parse_coords, patch_name, read_labels, write_image, write_labels
from csrefiner.metrics.matching import matching
from csrefiner.models.base import TrainParams
from csrefiner.models.finetune import finetune
from csrefiner.models.segment import open_model

STRATEGIES = ("suggest", "random", "suggest+pseudo", "suggest-prev")


@dataclass
class Dataset:
    name: str
    slide: str
    image: np.ndarray
    labels: np.ndarray
    patch: int
    tiles: list[Box]  # pool tiles (2 x 2 patches), where suggest looks
    heldout: list[Box]

    def windows(self) -> list[str]:
        """Every pool window on the patch grid (what `random` draws from)."""
        p = self.patch
        return [
            patch_name(self.slide, t.x + dx, t.y + dy, p, p)
            for t in self.tiles
            for dy in range(0, t.h, p)
            for dx in range(0, t.w, p)
        ]


def slide_dataset(cfg) -> Dataset:
    image, labels = make_slide(cfg)
    p = cfg.patch
    tiles = [
        Box(y, x, 2 * p, 2 * p) for y in range(0, cfg.pool_rows * p, 2 * p) for x in range(0, image.shape[1], 2 * p)
    ]
    return Dataset("slide", "demo", image, labels, p, tiles, heldout_boxes(cfg))


def real_dataset(patch: int) -> Dataset:
    """The 512 px image on a grid of `patch` px: the bottom row held out, every other row the pool (96 px: 20
    pool windows and 5 held-out patches, so budgets 0-20 fit)."""
    img, mask, boxes = real_nuclei(patch)
    rows, cols = img.shape[0] // patch, img.shape[1] // patch
    held = [b for b in boxes if b.y >= (rows - 1) * patch]
    pool_h, pool_w = (rows - 1) * patch, cols * patch
    tiles = [  # 2 x 2 windows each; the last row / column of tiles may be one window deep
        Box(y, x, min(2 * patch, pool_h - y), min(2 * patch, pool_w - x))
        for y in range(0, pool_h, 2 * patch)
        for x in range(0, pool_w, 2 * patch)
    ]
    return Dataset("real", "stardist_real", img, mask, patch, tiles, held)


def train_params(cfg, seed: int, epochs: int) -> TrainParams:
    return TrainParams(
        epochs=epochs, batch_size=cfg.batch_size, seed=seed, patience=PATIENCE, eval_every=cfg.eval_every, device="cpu"
    )


def knobs(cfg, backend: str, arch: bool) -> dict:
    a, t = cfg.options[backend]
    return {**a, **t} if arch else dict(t)


def base_model(cfg, backend: str, work: Path, epochs: int, image, labels) -> Path:
    """The demo's from-scratch baseline: the small network on the slide's easy patches."""
    easy = easy_boxes(cfg)
    if not (work / "easy_train").exists():  # the second backend of a run trains on the same patches
        write_patches(work / "easy_train", image, labels, easy[: cfg.easy_train])
        write_patches(work / "easy_val", image, labels, easy[cfg.easy_train : cfg.easy_train + 2])
    out = work / f"base-{backend}"
    params = train_params(cfg, cfg.seed, epochs)
    params.options = knobs(cfg, backend, True)
    finetune(backend, work / "easy_train", out, "scratch", params, work / "easy_val", force=True)
    return out


def predict_folder(model: Path, ds: Dataset, boxes: list[Box], out: Path) -> dict[str, np.ndarray]:
    """Masks of `boxes` by a model folder (or 'watershed'), written as <key>-mask.tif into `out`."""
    classical = str(model) == "watershed"
    _, segmenter, _ = open_model(
        None if classical else model, "watershed" if classical else None, TrainParams(device="cpu")
    )
    out.mkdir(parents=True, exist_ok=True)
    masks = {}
    for b in boxes:
        key = patch_name(ds.slide, b.x, b.y, b.w, b.h)
        masks[key] = segmenter.predict(ds.image[b.slices])
        write_labels(out / f"{key}-mask.tif", masks[key])
    return masks


def watershed_reference(ds: Dataset) -> float:
    """Mean held-out F1 of the classical watershed: the line a fine-tuned model has to clear."""
    with tempfile.TemporaryDirectory(prefix="budget-ws-") as tmp:
        return float(np.mean(list(heldout_f1(Path("watershed"), ds, Path(tmp)).values())))


def heldout_f1(model: Path, ds: Dataset, work: Path) -> dict[str, float]:
    masks = predict_folder(model, ds, ds.heldout, work / "heldout-pred")
    shutil.rmtree(work / "heldout-pred")
    return {k: matching(relabel_sequential(ds.labels[b.slices])[0], masks[k])["f1"] for k, b in zip(masks, ds.heldout)}


def annotate(ds: Dataset, names: list[str], out: Path) -> None:
    """The simulated annotator: ground truth crops for every chosen window."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for n in names:
        box = window_box(n).slices
        write_image(out / f"{n}-img.tif", ds.image[box])
        write_labels(out / f"{n}-mask.tif", relabel_sequential(ds.labels[box])[0].astype(np.uint32))


def window_box(name: str) -> Box:
    """The slide box of a window from its name (`<slide>-x.._y.._w.._h..`)."""
    c = parse_coords(name)
    return Box(c.y, c.x, c.h, c.w)


def pick_random(ds: Dataset, taken: list[str], n: int, rng) -> list[str]:
    taken_c = [parse_coords(t) for t in taken]
    free = [w for w in ds.windows() if not any(overlaps(parse_coords(w), t) for t in taken_c)]
    return [free[i] for i in sorted(rng.choice(len(free), size=min(n, len(free)), replace=False))]


def pick_suggest(
    ds: Dataset, opinion: Path, watershed: Path, taken: list[str], n: int, pseudo: int, work: Path
) -> tuple[list[str], Path | None]:
    preds = work / "pool-model"
    if preds.exists():
        shutil.rmtree(preds)
    predict_folder(opinion, ds, ds.tiles, preds)
    _, info = suggest_folders(
        [preds, watershed],
        work / "pool-img",
        work / "suggest",
        ["model", "watershed"],
        n,
        ds.patch,
        None,
        0.5,
        force=True,
        excluded=exclusion(names=taken),
        pseudo=pseudo,
    )
    return info["top"], (work / "suggest" / "pseudo") if info["pseudo"] else None  # none left in late rounds


def pseudo_quality(ds: Dataset, backend: str, base: Path, watershed: Path, work: Path, args) -> list[dict]:
    """How right the first round's consensus pseudo-labels are: each pseudo window's consensus (base model +
    watershed), and each of the two opinions alone, scored against the ground truth (IoU 0.5). An object both
    opinions miss is left unlabelled, so finetune learns it as background: recall says how often."""
    _, pseudo_dir = pick_suggest(ds, base, watershed, [], 4, args.pseudo_count, work)
    rows = []
    for mask_path in sorted(pseudo_dir.glob("*-mask.tif")) if pseudo_dir else []:  # none: suggest warned why
        name = mask_path.name[: -len("-mask.tif")]
        w = window_box(name)
        truth = relabel_sequential(ds.labels[w.slices])[0]
        tile = next(t for t in ds.tiles if t.y <= w.y < t.y + t.h and t.x <= w.x < t.x + t.w)  # the one it lies in
        in_tile = Box(w.y - tile.y, w.x - tile.x, w.h, w.w).slices
        opinions = {"consensus": read_labels(mask_path)}
        for label, folder in (("model", work / "pool-model"), ("watershed", watershed)):
            whole = read_labels(folder / f"{patch_name(ds.slide, tile.x, tile.y, tile.w, tile.h)}-mask.tif")
            opinions[label] = relabel_sequential(whole[in_tile])[0]
        for label, pred in opinions.items():
            m = matching(truth, pred)
            rows.append(
                {
                    "dataset": ds.name,
                    "backend": backend,
                    "window": name,
                    "labels": label,
                    "tp": m["tp"],
                    "truth_objects": m["tp"] + m["fn"],
                    "objects": m["tp"] + m["fp"],
                    "precision": m["precision"],
                    "recall": m["recall"],
                    "f1": m["f1"],
                }
            )
    return rows


def run_strategy(ds, backend, strategy, seed, budgets, base, watershed, cfg, args, work) -> list[dict]:
    rows, taken, model = [], [], base
    rng = np.random.default_rng(1000 + seed)
    for budget in budgets:
        tic = time.perf_counter()
        if budget > len(taken):
            need = budget - len(taken)
            pseudo_dir = None
            if strategy == "random":
                new = pick_random(ds, taken, need, rng)
            else:
                pseudo = args.pseudo_count if strategy == "suggest+pseudo" else 0
                new, pseudo_dir = pick_suggest(ds, model, watershed, taken, need, pseudo, work)
            if len(new) < need:
                print(f"  {ds.name}: pool exhausted at budget {budget}; stopping this curve")
                break
            taken += new
            annotate(ds, taken, work / "annotated")
            start = model if strategy == "suggest-prev" else base
            params = train_params(cfg, seed, args.epochs)
            params.options = knobs(cfg, backend, False)
            out = work / f"model-{budget}"
            finetune(
                backend,
                work / "annotated",
                out,
                str(start),
                params,
                None,
                VAL_FRACTION,
                pseudo_dir,
                DEFAULT_GAMMA,
                force=True,
            )
            if model != base:
                shutil.rmtree(model, ignore_errors=True)
            model = out
        scores = heldout_f1(model, ds, work)
        secs = time.perf_counter() - tic
        print(
            f"  {ds.name} {backend} {strategy:>14} seed {seed} budget {budget:>3}: held-out F1 "
            f"{np.mean(list(scores.values())):.3f} ({secs:.0f} s)"
        )
        rows += [
            {
                "dataset": ds.name,
                "backend": backend,
                "strategy": strategy,
                "seed": seed,
                "budget": budget,
                "image": k,
                "f1": f,
                "seconds": round(secs, 1),
            }
            for k, f in scores.items()
        ]
    return rows


# -- statistics ---------------------------------------------------------------------------------------------------
def curve_table(raw: pd.DataFrame) -> pd.DataFrame:
    from scipy import stats

    per_seed = raw.groupby(["dataset", "backend", "strategy", "budget", "seed"]).f1.mean().reset_index()
    out = []
    for key, g in per_seed.groupby(["dataset", "backend", "strategy", "budget"]):
        n, mean = len(g), g.f1.mean()
        half = stats.t.ppf(0.975, n - 1) * g.f1.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        out.append(
            dict(
                zip(["dataset", "backend", "strategy", "budget"], key),
                n_seeds=n,
                f1_mean=mean,
                ci_low=mean - half,
                ci_high=mean + half,
            )
        )
    return pd.DataFrame(out)


def paired_tests(raw: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Wilcoxon signed-rank over (seed, held-out patch) pairs of strategy a vs b at each budget."""
    from scipy.stats import wilcoxon

    out = []
    keys = ["dataset", "backend", "budget", "seed", "image"]
    both = raw[raw.strategy == a].merge(raw[raw.strategy == b], on=keys, suffixes=("_a", "_b"))
    for (d, bk, budget), g in both.groupby(["dataset", "backend", "budget"]):
        diff = g.f1_a - g.f1_b
        p = float(wilcoxon(g.f1_a, g.f1_b).pvalue) if (diff != 0).any() else 1.0
        out.append(
            {
                "dataset": d,
                "backend": bk,
                "budget": budget,
                "a": a,
                "b": b,
                "n_pairs": len(g),
                "mean_diff": float(diff.mean()),
                "p_value": p,
            }
        )
    return pd.DataFrame(out)


def plateau_budgets(curve: pd.DataFrame) -> pd.DataFrame:
    """Smallest budget whose mean F1 reaches 95% of the curve's maximum (the plateau)."""
    out = []
    for key, g in curve.groupby(["dataset", "backend", "strategy"]):
        top = g.f1_mean.max()
        reached = g[g.f1_mean >= 0.95 * top].budget.min()
        out.append(dict(zip(["dataset", "backend", "strategy"], key), plateau_f1=top, budget_95=int(reached)))
    return pd.DataFrame(out)


def overview(curve: pd.DataFrame, plateau: pd.DataFrame, references: dict[str, float]) -> str:
    """One row per dataset, backend and strategy: mean F1 by budget, the plateau budget, the watershed (README)."""
    budgets = sorted(curve.budget.unique())
    lines = ["| data / model | strategy | " + " | ".join(map(str, budgets)) + " | 95% of plateau at | watershed |"]
    lines.append("|---|---|" + "---|" * (len(budgets) + 2))
    top = plateau.set_index(["dataset", "backend", "strategy"]).budget_95
    order = {s: i for i, s in enumerate(STRATEGIES)}
    for (d, bk, s), g in sorted(
        curve.groupby(["dataset", "backend", "strategy"]), key=lambda kv: (*kv[0][:2], order[kv[0][2]])
    ):
        f1 = g.set_index("budget").f1_mean
        cells = [f"{f1[b]:.2f}" if b in f1.index else "" for b in budgets]
        ref = f"{references[d]:.2f}" if d in references else ""
        lines.append(f"| {d} / {bk} | {s} | " + " | ".join(cells) + f" | {top[(d, bk, s)]} | {ref} |")
    return "\n".join(lines)


def markdown(curve: pd.DataFrame, tests: pd.DataFrame, plateau: pd.DataFrame, references: dict[str, float]) -> str:
    """The overview, then per dataset and backend: F1 [95% CI] by budget and strategy, the plateau budget, then
    the paired tests."""
    parts = [overview(curve, plateau, references)]
    for (d, bk), g in curve.groupby(["dataset", "backend"]):
        strategies = [s for s in STRATEGIES if s in set(g.strategy)]
        cell = {(r.strategy, r.budget): f"{r.f1_mean:.3f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in g.itertuples()}
        top = plateau[(plateau.dataset == d) & (plateau.backend == bk)].set_index("strategy")
        lines = [f"**{d} / {bk}** (watershed: {references[d]:.3f})" if d in references else f"**{d} / {bk}**", ""]
        lines += ["| budget | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
        for b in sorted(g.budget.unique()):
            lines.append(f"| {b} | " + " | ".join(cell.get((s, b), "") for s in strategies) + " |")
        lines.append("| 95% of plateau at | " + " | ".join(str(top.budget_95.get(s, "")) for s in strategies) + " |")
        parts.append("\n".join(lines))
    budgets = sorted(b for b in tests.budget.unique() if b > 0)  # budget 0: the same base model on both sides
    rows = ["| data / model | a vs b | " + " | ".join(map(str, budgets)) + " |", "|---|---|" + "---|" * len(budgets)]
    for (d, bk, a, b), g in tests.groupby(["dataset", "backend", "a", "b"], sort=False):
        by = g.set_index("budget")
        diffs = [f"{by.mean_diff[x]:+.3f} (p {by.p_value[x]:.2g})" if x in by.index else "" for x in budgets]
        rows.append(f"| {d} / {bk} | {a} vs {b} | " + " | ".join(diffs) + " |")
    return (
        "\n\n".join(parts)
        + "\n\nMean F1 difference (Wilcoxon p over seed x held-out patch):\n\n"
        + "\n".join(rows)
        + "\n"
    )


def figure(curve: pd.DataFrame, references: dict[str, float], path: Path) -> None:
    """One panel per dataset (rows) and backend (columns); the watershed's held-out F1 as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, backends = sorted(curve.dataset.unique()), sorted(curve.backend.unique())
    fig, axes = plt.subplots(
        len(datasets), len(backends), figsize=(5 * len(backends), 4 * len(datasets)), squeeze=False
    )
    for (d, bk), g in curve.groupby(["dataset", "backend"]):
        ax = axes[datasets.index(d)][backends.index(bk)]
        for strategy, s in g.groupby("strategy"):
            s = s.sort_values("budget")
            ax.plot(s.budget, s.f1_mean, marker="o", label=strategy)
            if s.n_seeds.max() > 1:
                ax.fill_between(s.budget, s.ci_low, s.ci_high, alpha=0.2)
        ax.set_xticks(sorted(g.budget.unique()))
        if d in references:
            ax.axhline(references[d], color="grey", linestyle="--", label="watershed")
        ax.set(title=f"{d} / {bk}", xlabel="annotated patches", ylabel="held-out F1 (IoU 0.5)", ylim=(0, 1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------------------------
def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="slide,real")
    ap.add_argument("--backends", default="cellpose,stardist")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--budgets", default="0,4,8,12,16,20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the demo preset's)")
    ap.add_argument("--base-epochs", type=int, default=None, help="baseline epochs (default: the demo preset's)")
    ap.add_argument("--pseudo-count", type=int, default=8, help="pseudo-labelled windows for suggest+pseudo")
    ap.add_argument("--real-patch", type=int, default=96)
    ap.add_argument("--quick", action="store_true", help="the demo's quick preset (128 px patches, smaller slide)")
    ap.add_argument("--out", type=Path, default=Path("results/annotation_budget"))
    ap.add_argument(
        "--pseudo-quality", action="store_true", help="no fine-tuning: score the first round's pseudo-labels"
    )
    ap.add_argument("--from-raw", type=Path, nargs="+", help="no training: summarize these raw.csv files into --out")
    args = ap.parse_args(argv)
    cfg = make_config(args.quick)
    args.epochs = args.epochs or cfg.epochs
    budgets, seeds = sorted(set(ints(args.budgets))), ints(args.seeds)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown or any(0 < b < 2 for b in budgets):
        ap.error(f"strategies: {', '.join(STRATEGIES)}; budgets: 0 or at least 2")
    if args.from_raw:  # tables and figure again from earlier runs' raw.csv (several runs may be merged)
        raw = pd.concat([pd.read_csv(p) for p in args.from_raw], ignore_index=True)
        twice = raw.duplicated(["dataset", "backend", "strategy", "seed", "budget", "image"])
        if twice.any():
            first = raw[twice].iloc[0]
            ap.error(
                f"{twice.sum()} results in two sources (first: {first.dataset} {first.backend} {first.strategy} "
                f"seed {first.seed} budget {first.budget}); keep each curve in one raw.csv"
            )
        runs = {str(p): json.loads(p.with_name("run.json").read_text()) for p in args.from_raw}  # each its own
        summarize(raw, args.out, {"summarized_into": str(args.out), "sources": runs}, source_references(args.from_raw))
        return
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    raw, references = run_grid(args, cfg, budgets, seeds, strategies)
    record = {"argv": vars(args) | {"out": str(args.out)}, "wall_s": round(time.perf_counter() - start, 1)}
    if args.pseudo_quality:
        write_pseudo_quality(pd.DataFrame(raw), args.out)
        (args.out / "run.json").write_text(json.dumps(record | {"config": cfg.record()}, indent=2, default=str) + "\n")
        return
    raw = pd.DataFrame(raw)
    record |= {
        "trainings": int(raw[raw.budget > 0].groupby(["dataset", "backend", "strategy", "seed", "budget"]).ngroups),
        "config": cfg.record(),
    }
    summarize(raw, args.out, record, references)
    print(f"\nwall time {record['wall_s']} s for {record['trainings']} fine-tunings; wrote {args.out}")


def prepare_pool(ds: Dataset, work: Path) -> Path:
    """work/pool-img (the pool tiles suggest and every opinion see) and work/pool-watershed, their watershed masks."""
    (work / "pool-img").mkdir(parents=True, exist_ok=True)
    for b in ds.tiles:
        write_image(work / "pool-img" / f"{patch_name(ds.slide, b.x, b.y, b.w, b.h)}-img.tif", ds.image[b.slices])
    predict_folder(Path("watershed"), ds, ds.tiles, work / "pool-watershed")
    return work / "pool-watershed"


def run_grid(args, cfg, budgets, seeds, strategies) -> tuple[list[dict], dict[str, float]]:
    """Per-patch held-out F1 rows of every curve, and each dataset's watershed reference."""
    import torch

    torch.set_num_threads(1)
    raw, references = [], {}
    with tempfile.TemporaryDirectory(prefix="budget-") as tmp:
        tmp = Path(tmp)
        slide_img, slide_lab = make_slide(cfg)
        sets = {"slide": lambda: slide_dataset(cfg), "real": lambda: real_dataset(args.real_patch)}
        for backend in args.backends.split(","):
            base = base_model(cfg, backend, tmp, args.base_epochs or cfg.baseline_epochs, slide_img, slide_lab)
            for name in args.datasets.split(","):
                ds = sets[name]()
                references[name] = watershed_reference(ds)
                work = tmp / name / backend
                watershed = prepare_pool(ds, work)
                if args.pseudo_quality:
                    raw += pseudo_quality(ds, backend, base, watershed, work, args)
                    continue
                for strategy in strategies:
                    for seed in seeds:
                        raw += run_strategy(ds, backend, strategy, seed, budgets, base, watershed, cfg, args, work)
                        pd.DataFrame(raw).to_csv(args.out / "raw.csv", index=False)  # partial results survive
    return raw, references


def source_references(raw_paths: list[Path]) -> dict[str, float]:
    """The watershed references of the datasets in earlier runs, made again with each run's preset."""
    setting, references = {}, {}
    for path in raw_paths:
        argv = json.loads(path.with_name("run.json").read_text())["argv"]
        for name in pd.read_csv(path).dataset.unique():
            key = (bool(argv["quick"]),) if name == "slide" else (argv.get("real_patch", 128),)
            if setting.setdefault(name, key) != key:
                raise SystemExit(f"{path}: dataset {name} made with {key}, another source with {setting[name]}")
            if name not in references:
                ds = slide_dataset(make_config(key[0])) if name == "slide" else real_dataset(key[0])
                references[name] = watershed_reference(ds)
    return references


def write_pseudo_quality(rows: pd.DataFrame, out: Path) -> None:
    """pseudo_quality.csv (per window) and the totals per dataset, backend and labels (micro over windows)."""
    rows.to_csv(out / "pseudo_quality.csv", index=False)
    total = rows.groupby(["dataset", "backend", "labels"], sort=False)[["tp", "truth_objects", "objects"]].sum()
    total["precision"] = (total.tp / total.objects).round(3)
    total["recall"] = (total.tp / total.truth_objects).round(3)
    total["windows"] = rows.groupby(["dataset", "backend", "labels"], sort=False).size()
    total.reset_index().to_csv(out / "pseudo_quality_totals.csv", index=False)
    print("\nfirst-round pseudo-labels against the truth (IoU 0.5, summed over windows)\n", total.to_string())


def summarize(raw: pd.DataFrame, out: Path, record: dict, references: dict[str, float]) -> None:
    """curve.csv, tests.csv, plateau.csv, learning_curves.png and run.json from the per-patch results."""
    out.mkdir(parents=True, exist_ok=True)
    raw.to_csv(out / "raw.csv", index=False)
    curve = curve_table(raw)
    tests = pd.concat(
        [
            paired_tests(raw, "suggest", "random"),
            paired_tests(raw, "suggest-prev", "suggest"),
            paired_tests(raw, "suggest+pseudo", "suggest"),
        ],
        ignore_index=True,
    )
    curve.to_csv(out / "curve.csv", index=False)
    tests.to_csv(out / "tests.csv", index=False)
    plateau = plateau_budgets(curve)
    plateau.to_csv(out / "plateau.csv", index=False)
    figure(curve, references, out / "learning_curves.png")
    if not tests.empty:
        (out / "tables.md").write_text(markdown(curve, tests, plateau, references))
    (out / "run.json").write_text(
        json.dumps(record | {"watershed_heldout_f1": references}, indent=2, default=str) + "\n"
    )
    pd.set_option("display.width", 200)
    print("\nheld-out F1 by budget (mean over seeds, 95% CI)\n", curve.round(3).to_string(index=False))
    print("\npaired tests (Wilcoxon over seed x held-out patch)\n", tests.round(4).to_string(index=False))
    print("\nbudget reaching 95% of the plateau\n", plateau.round(3).to_string(index=False))
    print("\nwatershed held-out F1:", ", ".join(f"{d} {f:.3f}" for d, f in references.items()))


if __name__ == "__main__":
    main()
