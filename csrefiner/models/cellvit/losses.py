"""CellViT's training losses (weights of its published PanNuke configuration).

- nucleus map (2 logits): focal Tversky (alpha 0.7 on misses, beta 0.3 on false alarms, gamma 4/3) + Dice;
- HV maps: MSE (x2.5) + MSGE (x8), the mean squared error of their x/y gradients inside nuclei (HoVer-Net);
- nucleus types (when the model and the data have them): cross-entropy (x0.5) + Dice (x0.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from csrefiner.models.cellvit.postprocess import sobel_kernels

WEIGHTS = {"focal_tversky": 1.0, "dice": 1.0, "mse": 2.5, "msge": 8.0, "type_ce": 0.5, "type_dice": 0.2}


def dice_loss(prob: torch.Tensor, onehot: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - mean Dice over classes; (B, C, H, W) probabilities and one-hot targets."""
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    return 1 - ((2 * inter + eps) / (prob.sum(dims) + onehot.sum(dims) + eps)).mean()


def focal_tversky_loss(
    fg: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 4 / 3,
    eps: float = 1e-6,
) -> torch.Tensor:
    """(1 - Tversky index) ** (1 / gamma) on the foreground probability (Abraham & Khan 2019)."""
    tp = (fg * target).sum()
    fn = ((1 - fg) * target).sum()
    fp = (fg * (1 - target)).sum()
    tversky = (tp + eps) / (tp + alpha * fn + beta * fp + eps)
    return (1 - tversky).clamp_min(0) ** (1 / gamma)


def _gradients(hv: torch.Tensor, size: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dx of the horizontal map and d/dy of the vertical map, (B, 1, H, W) each."""
    kx, ky = (torch.as_tensor(k, dtype=hv.dtype, device=hv.device)[None, None] for k in sobel_kernels(size))
    pad = size // 2
    gx = F.conv2d(F.pad(hv[:, :1], (pad,) * 4, mode="replicate"), kx)
    gy = F.conv2d(F.pad(hv[:, 1:2], (pad,) * 4, mode="replicate"), ky)
    return gx, gy


def msge_loss(pred: torch.Tensor, target: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    px, py = _gradients(pred)
    tx, ty = _gradients(target)
    mask = focus[:, None].to(pred.dtype)
    return (mask * ((px - tx) ** 2 + (py - ty) ** 2)).sum() / (2 * mask.sum() + 1e-6)


def cellvit_loss(
    out: dict, fg: torch.Tensor, hv: torch.Tensor, types: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict]:
    """Total loss and its parts. fg (B, H, W) int 0/1, hv (B, 2, H, W), types (B, H, W) class ids or None."""
    prob = out["nuclei_binary_map"].softmax(dim=1)
    onehot = F.one_hot(fg, 2).permute(0, 3, 1, 2).to(prob.dtype)
    parts = {
        "focal_tversky": focal_tversky_loss(prob[:, 1], onehot[:, 1]),
        "dice": dice_loss(prob, onehot),
        "mse": F.mse_loss(out["hv_map"], hv),
        "msge": msge_loss(out["hv_map"], hv, fg),
    }
    if types is not None and "nuclei_type_map" in out:
        logits = out["nuclei_type_map"]
        parts["type_ce"] = F.cross_entropy(logits, types)
        parts["type_dice"] = dice_loss(
            logits.softmax(1), F.one_hot(types, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
        )
    total = sum(WEIGHTS[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
