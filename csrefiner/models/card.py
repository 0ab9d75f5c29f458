"""The model folder's own description: `model.json` (model card), `train_log.json` and `loss_curve.png`."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path

from csrefiner.errors import CsrefinerError

CARD = "model.json"
CARD_VERSION = 1


def versions(packages: tuple[str, ...]) -> dict:
    out = {"python": platform.python_version()}
    for name in ("csrefiner", "numpy", *packages):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_card(model_dir: Path) -> dict:
    """The card of a csrefiner model folder; a clear error for anything else."""
    model_dir = Path(model_dir)
    path = model_dir / CARD
    if not model_dir.is_dir():
        raise CsrefinerError(f"{model_dir}: no such model folder; give a folder written by `csrefiner finetune`")
    if not path.is_file():
        raise CsrefinerError(
            f"{model_dir}: no {CARD} here, so this is not a csrefiner model folder; give a folder written by "
            "`csrefiner finetune`, or a pretrained model with --model BACKEND:NAME"
        )
    return read_model_json(path, ("backend",), "model card")


def read_model_json(path: Path, needs: tuple[str, ...] = (), what: str = "model file") -> dict:
    """A JSON object of a model folder (its card, a backend's config): damage is one line naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:  # ValueError: broken JSON or not UTF-8
        raise CsrefinerError(
            f"{path}: unreadable {what} ({exc}); the model folder is damaged, fine-tune again"
        ) from None
    missing = [key for key in needs if not isinstance(data, dict) or key not in data]
    if not isinstance(data, dict) or missing:
        raise CsrefinerError(
            f"{path}: {what} without {', '.join(map(repr, missing)) or 'a JSON object'}; the model "
            "folder is damaged, fine-tune again"
        )
    return data


def plot_loss_curve(log: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(epochs, [r["train_loss"] for r in log], label="train loss", color="tab:blue")
    if any(r["val_loss"] is not None for r in log):
        ax.plot(epochs, [r["val_loss"] for r in log], label="validation loss", color="tab:orange")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    f1 = [(r["epoch"], r["val_f1"]) for r in log if r["val_f1"] is not None]
    if f1:
        ax2 = ax.twinx()
        ax2.plot(*zip(*f1), "o-", color="tab:green", label="validation F1 (IoU 0.5)")
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("validation F1")
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
