"""`csrefiner finetune`: adapt a pretrained model (or train one from scratch) on a few annotated patches.

Everything is checked before a model is built (data, base model, output), the shared loop trains
(`training.fit`), and the folder appears only when complete: weights + the backend's config, `model.json`
(the model card), `train_log.json` and `loss_curve.png`. The validation scores on the card are measured on
the model as re-loaded from that folder, so they are the scores of what was saved.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from csrefiner.errors import CsrefinerError
from csrefiner.io import atomic_dir, check_writable
from csrefiner.models import get_backend
from csrefiner.models.augment import Augment
from csrefiner.models.base import Pretrained, TrainParams
from csrefiner.models.card import CARD, CARD_VERSION, plot_loss_curve, versions, write_json
from csrefiner.models.data import Sample, check_training_set, read_folder, split
from csrefiner.models.training import fit, seed_frameworks, validation_scores

log = logging.getLogger(__name__)

STAINS = ("ss", "he")


def _guard_base(base: Pretrained, out: Path) -> None:
    """A fine-tune never writes into (or over) the base model's folder."""
    if base.path is None:
        return
    base_dir = (base.path if base.path.is_dir() else base.path.parent).resolve()
    target = out.resolve()
    if target == base_dir or base_dir in target.parents or target in base_dir.parents:
        raise CsrefinerError(
            f"--out {out} is inside or above the base model {base.path}; write the fine-tuned model elsewhere"
        )


def load_data(train_dir: Path, val_dir: Path | None, val_fraction: float, seed: int, pseudo_dir: Path | None):
    hard = read_folder(train_dir, "hard")
    easy = read_folder(pseudo_dir, "easy") if pseudo_dir else []
    if val_dir is not None:
        train, val, how = (
            hard + easy,
            read_folder(val_dir, "hard"),
            {"method": "validation folder", "folder": str(val_dir)},
        )
    else:
        train, val = split(hard, val_fraction, seed)  # validate on corrected patches only
        train += easy
        how = {"method": "seeded random split of --train", "val_fraction": val_fraction, "seed": seed}
    check_training_set(train, f"training patches ({train_dir})")
    if not val:
        raise CsrefinerError(f"{val_dir}: no validation patches")
    how["train"] = [{"key": s.key, "group": s.group, "sha256": s.sha256} for s in train]
    how["val"] = [{"key": s.key, "sha256": s.sha256} for s in val]
    return train, val, how


def _check_shapes(backend, samples: list[Sample]) -> None:
    for s in samples:
        problem = backend.check_sample_shape(s.labels.shape)
        if problem:
            raise CsrefinerError(f"{s.source}/{s.key}: {problem}")


def finetune(
    backend_name: str,
    train_dir: Path,
    out: Path,
    pretrained: str,
    params: TrainParams,
    val_dir: Path | None = None,
    val_fraction: float = 0.1,
    pseudo_dir: Path | None = None,
    gamma: float = 0.85,
    force: bool = False,
    report: Callable | None = None,
) -> dict:
    if params.stain not in STAINS:
        raise CsrefinerError(f"--stain {params.stain!r}: use ss (ssDNA/DAPI/fluorescence) or he (H&E)")
    if params.epochs < 1 or params.batch_size < 1 or params.eval_every < 1 or params.patience < 1:
        raise CsrefinerError("--epochs, --batch-size, --eval-every and --patience must be at least 1")
    backend = get_backend(backend_name)
    backend.check_options(params.options)
    backend.check_installed()
    out = check_writable(Path(out), force)
    base = backend.resolve(pretrained)
    _guard_base(base, out)
    train, val, data_record = load_data(
        Path(train_dir), val_dir and Path(val_dir), val_fraction, params.seed, pseudo_dir and Path(pseudo_dir)
    )
    _check_shapes(backend, train + val)
    lr = params.lr or backend.default_lr[0 if base.scratch else 1]
    log.info(
        "%s from %s: %d training and %d validation patches, up to %d epochs at lr %g",
        backend.name,
        base.name,
        len(train),
        len(val),
        params.epochs,
        lr,
    )
    start = time.perf_counter()
    with atomic_dir(out, force=force) as tmp:
        seed_frameworks(params.seed, backend.requires)
        trainer = backend.trainer(base, params, train, val)
        result = fit(trainer, train, val, params, lr, tmp / ".best", gamma, report)
        trainer.save(tmp)
        shutil.rmtree(tmp / ".best", ignore_errors=True)
        extras = trainer.finish(tmp, val)
        card = {
            "csrefiner_model": CARD_VERSION,
            "backend": backend.name,
            "base_model": {"name": base.name, "path": str(base.path) if base.path else None},
            "stain": params.stain,
            "device": trainer.describe().get("device", params.device),
            "data": data_record,
            "hyperparameters": {
                "epochs": params.epochs,
                "epochs_run": len(result.log),
                "lr": lr,
                "batch_size": params.batch_size,
                "seed": params.seed,
                "eval_every": params.eval_every,
                "patience": params.patience,
                "lr_schedule": result.schedule,
                **params.options,
            },
            "augmentation": Augment().record() | {"library": trainer.describe().get("augmentation", "")},
            "sampling": result.sampling,
            "architecture": trainer.describe(),
            "training": {
                "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early,
                "seconds": round(time.perf_counter() - start, 1),
            },
            **extras,
            "versions": versions(backend.requires),
        }
        write_json(tmp / CARD, card)  # load() reads it
        reloaded = backend.load(Pretrained(str(out), tmp, folder=True), params)
        card["validation"] = {
            "iou": 0.5,
            "n_images": len(val),
            "before": result.initial,
            "best_during_training": result.best,
            "after": validation_scores(reloaded, val),
        }
        write_json(tmp / CARD, card)
        write_json(tmp / "train_log.json", result.record())
        plot_loss_curve(result.record()["epochs"], tmp / "loss_curve.png", f"{backend.name} from {base.name}")
    return card
