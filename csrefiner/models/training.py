"""The training loop every backend shares (the backend only trains one epoch and saves/restores weights).

What CSRefiner's scripts get wrong is fixed once, here:
- the frameworks are seeded before a network is built (`seed_frameworks`: a new network's random weights are
  the same on every run with the same --seed),
- the epoch order is seeded (a permutation, or class-weighted draws with replacement when corrected "hard"
  and pseudo-labelled "easy" patches are mixed: `csrefiner.hitl.sampling`),
- the learning rate decays: linear warm-up, then cosine decay to 1% of the base rate, over the planned epochs,
- validation F1 (IoU 0.5, pooled over the validation patches, the `evaluate` matching) every `eval_every`
  epochs and at the end; the best checkpoint (highest F1, then lowest validation loss) is kept and restored,
- early stopping after `patience` evaluations without improvement.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from csrefiner.hitl.sampling import sample_weights, weighted_order
from csrefiner.metrics.matching import MatchCounts, match_counts
from csrefiner.metrics.overlap import label_overlap
from csrefiner.models.base import Segmenter, Trainer, TrainParams

log = logging.getLogger(__name__)


def seed_frameworks(seed: int, frameworks: tuple[str, ...]) -> None:
    """Seed Python, NumPy and the backend's frameworks (torch, tensorflow), so random initial weights and any
    global-RNG draws repeat; only frameworks the backend needs are imported."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in frameworks:
        import torch

        torch.manual_seed(seed)
    if "tensorflow" in frameworks:
        import tensorflow as tf

        tf.random.set_seed(seed)


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    val_loss: float | None
    val_f1: float | None = None
    val_precision: float | None = None
    val_recall: float | None = None
    seconds: float = 0.0


@dataclass
class FitResult:
    log: list[EpochRecord]
    initial: dict  # validation scores of the model before training
    best_epoch: int
    best: dict
    stopped_early: bool
    seconds: float
    sampling: dict | None = None
    schedule: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {
            "epochs": [asdict(r) for r in self.log],
            "initial": self.initial,
            "best_epoch": self.best_epoch,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 1),
            "schedule": self.schedule,
        }


def lr_schedule(base_lr: float, epochs: int) -> np.ndarray:
    """Linear warm-up over the first ~5% of epochs (at most 10), then cosine decay to 1% of `base_lr`."""
    warm = min(10, max(1, epochs // 20)) if epochs > 10 else 0
    lrs = np.empty(epochs)
    for e in range(epochs):
        if e < warm:
            lrs[e] = base_lr * (e + 1) / (warm + 1)
        else:
            t = (e - warm) / max(1, epochs - warm - 1)
            lrs[e] = base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))
    return lrs


def validation_scores(segmenter: Segmenter, val: list, iou: float = 0.5) -> dict:
    """Pooled precision / recall / F1 at `iou` over the validation samples."""
    total: MatchCounts | None = None
    for s in val:
        counts = match_counts(label_overlap(s.labels, segmenter.predict(s.image)), iou)
        total = counts if total is None else total + counts
    sc = total.scores()
    return {k: float(sc[k]) for k in ("precision", "recall", "f1")} | {"tp": total.tp, "fp": total.fp, "fn": total.fn}


def epoch_orders(train: list, epochs: int, seed: int, gamma: float) -> tuple[Callable[[int], np.ndarray], dict | None]:
    """Per-epoch sample order: a seeded permutation, or gamma-weighted draws when hard and easy patches mix."""
    groups = [s.group for s in train]
    if len(set(groups)) > 1:
        from csrefiner.hitl.sampling import sampling_record

        weights = sample_weights(groups, gamma)
        return (lambda e: weighted_order(weights, len(train), seed + e)), sampling_record(groups, gamma)
    return (lambda e: np.random.default_rng(seed + e).permutation(len(train))), None


def fit(
    trainer: Trainer,
    train: list,
    val: list,
    params: TrainParams,
    base_lr: float,
    checkpoint: Path,
    gamma: float = 0.85,
    report: Callable[[EpochRecord, bool], None] | None = None,
) -> FitResult:
    start = time.perf_counter()
    lrs = lr_schedule(base_lr, params.epochs)
    order_of, sampling = epoch_orders(train, params.epochs, params.seed, gamma)
    initial = validation_scores(trainer.segmenter(), val)
    log.info("validation F1 of the starting model: %.3f", initial["f1"])
    # the starting model is a candidate too: a fine-tune that only makes things worse returns the base (epoch 0)
    val0 = trainer.val_loss()
    best_key = (round(initial["f1"], 6), -val0 if val0 is not None else -math.inf)
    best, best_epoch, bad, history, stopped = initial, 0, 0, [], False
    trainer.save(checkpoint)
    for epoch in range(params.epochs):
        tic = time.perf_counter()
        loss = trainer.train_epoch(order_of(epoch), float(lrs[epoch]), epoch)
        rec = EpochRecord(epoch + 1, float(lrs[epoch]), float(loss), trainer.val_loss())
        last = epoch == params.epochs - 1
        improved = False
        if (epoch + 1) % params.eval_every == 0 or last:
            sc = validation_scores(trainer.segmenter(), val)
            rec.val_f1, rec.val_precision, rec.val_recall = sc["f1"], sc["precision"], sc["recall"]
            key = (round(sc["f1"], 6), -rec.val_loss if rec.val_loss is not None else -math.inf)
            if key > best_key:
                best_key, best, best_epoch, bad, improved = key, sc, epoch + 1, 0, True
                trainer.save(checkpoint)
            else:
                bad += 1
        rec.seconds = round(time.perf_counter() - tic, 3)
        history.append(rec)
        log.debug(
            "epoch %d: lr %.2e, train loss %.4f, val loss %s, val F1 %s, %.1f s",
            rec.epoch,
            rec.lr,
            rec.train_loss,
            rec.val_loss,
            rec.val_f1,
            rec.seconds,
        )
        if report:
            report(rec, improved)
        if rec.val_f1 is not None and bad >= params.patience and not last:
            stopped = True
            log.info("no better validation F1 in %d evaluations: stopped after epoch %d", bad, epoch + 1)
            break
    log.info("best model: epoch %d (validation F1 %.3f), restored", best_epoch, best["f1"])
    trainer.restore(checkpoint)
    schedule = {"kind": "warm-up + cosine decay to 1%", "base_lr": base_lr, "planned_epochs": params.epochs}
    return FitResult(history, initial, best_epoch, best, stopped, time.perf_counter() - start, sampling, schedule)
