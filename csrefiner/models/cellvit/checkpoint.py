"""Reading CellViT weights: published .pth checkpoints and csrefiner's own, always with `weights_only=True`.

A published checkpoint is a dict with 'model_state_dict' (the network), 'config' (the run configuration,
flattened 'model.xxx' keys) and 'arch' ('CellViT256', 'CellViTSAM', ...); a bare state dict is accepted too.
Keys are mapped to this implementation's names: prefixes added by DataParallel/DistributedDataParallel
('module.') and torch.compile ('_orig_mod.') are dropped; all other names are the published ones.
"""

from __future__ import annotations

from pathlib import Path

from csrefiner.errors import CsrefinerError

PREFIXES = ("module.", "_orig_mod.")


def map_keys(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def read(path: Path) -> tuple[dict, dict, str]:
    """(state dict, checkpoint config, arch) from a .pth file; errors name the file and the fix."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CsrefinerError(f"{path}: no such CellViT weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if not refused:
            raise CsrefinerError(
                f"{path}: not a readable torch checkpoint (damaged, or not saved by torch.save)"
            ) from exc
        raise CsrefinerError(
            f"{path}: torch.load(weights_only=True) refused it - the file holds Python objects besides tensors "
            f"and plain containers ({refused[0].split(' was not')[0]}); if you trust it, re-save only the weights: "
            "ck = torch.load(p, weights_only=False); torch.save({'model_state_dict': ck['model_state_dict'], "
            "'config': dict(ck.get('config', {})), 'arch': ck.get('arch', 'CellViT')}, 'clean.pth')"
        ) from exc
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CsrefinerError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise CsrefinerError(f"{path}: holds a {type(obj).__name__}, not a CellViT checkpoint dict")
    if "model_state_dict" in obj:
        state, meta, arch = obj["model_state_dict"], obj.get("config") or {}, str(obj.get("arch", "CellViT"))
    else:
        state, meta, arch = obj, {}, "CellViT"
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise CsrefinerError(f"{path}: 'model_state_dict' is not a dict of tensors")
    return map_keys(state), dict(meta) if isinstance(meta, dict) else {}, arch


def load_into(net, state: dict, source: str) -> None:
    """Strict load: every published key must find its parameter and vice versa, with the same shape."""
    result = None
    try:
        result = net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        own = net.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        raise CsrefinerError(
            f"{source}: weights do not fit the CellViT network (missing {len(missing)}: {missing[:3]}, "
            f"unexpected {len(unexpected)}: {unexpected[:3]}, wrong shape {len(wrong)}: {wrong[:3]})"
        ) from exc
    return result
