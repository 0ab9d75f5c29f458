"""CellViT architectures as plain dicts: the published presets, `--option` overrides, and what a state dict implies.

A config holds everything `decoder.CellViT` needs (JSON-serialisable, saved with every model):
encoder ('vit' = HIPT ViT-256 style, 'sam' = SAM image encoder), embed_dim, depth, heads, mlp_ratio,
pos_grid (side of the learned position grid), extract_layers, window_size / global_attn / out_chans (SAM),
in_chans, tissue_classes, type_classes, regression, widths (decoder channels).
"""

from __future__ import annotations

import math

from csrefiner.errors import CsrefinerError
from csrefiner.models.cellvit.decoder import PATCH, published_widths

# the published encoders (CellViT's CellViT256 and CellViTSAM classes)
PRESETS = {
    "vit256": dict(encoder="vit", embed_dim=384, depth=12, heads=6, pos_grid=14),
    "sam-b": dict(encoder="sam", embed_dim=768, depth=12, heads=12, pos_grid=64, global_attn=[2, 5, 8, 11]),
    "sam-l": dict(encoder="sam", embed_dim=1024, depth=24, heads=16, pos_grid=64, global_attn=[5, 11, 17, 23]),
    "sam-h": dict(encoder="sam", embed_dim=1280, depth=32, heads=16, pos_grid=64, global_attn=[7, 15, 23, 31]),
}
DEFAULT_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def default_heads(dim: int) -> int:
    """The published head counts; 32-wide heads for other (small) widths."""
    return DEFAULT_HEADS.get(dim, max(1, dim // 32))


def quarter_layers(depth: int) -> list[int]:
    """The four skip blocks: every quarter of the depth (3, 6, 9, 12 for depth 12), 1-based."""
    if depth < 4:
        raise CsrefinerError(f"--option depth={depth}: CellViT takes skips from 4 blocks; use depth >= 4")
    return [round(depth * k / 4) for k in range(1, 5)]


def complete(cfg: dict) -> dict:
    """Fill the defaults that follow from the others."""
    cfg = dict(cfg)
    cfg.setdefault("mlp_ratio", 4.0)
    cfg.setdefault("in_chans", 3)
    cfg.setdefault("extract_layers", quarter_layers(cfg["depth"]))
    cfg.setdefault("tissue_classes", 0)
    cfg.setdefault("type_classes", 0)
    cfg.setdefault("regression", False)
    cfg.setdefault("widths", published_widths(cfg["embed_dim"]))
    if cfg["encoder"] == "sam":
        cfg.setdefault("window_size", 14)
        cfg.setdefault("global_attn", [round(cfg["depth"] * k / 4) - 1 for k in range(1, 5)])
        cfg.setdefault("out_chans", 256)
    if cfg["embed_dim"] % cfg["heads"]:
        raise CsrefinerError(f"embed_dim {cfg['embed_dim']} is not divisible by heads {cfg['heads']}")
    return cfg


def from_options(opts, patch_side: int) -> dict:
    """A from-scratch architecture: `encoder=vit256|sam-b|sam-l|sam-h`, optionally resized with embed_dim, depth,
    heads, and a decoder `decoder_div` times narrower than published (for small CPU models).

    `opts`: the backend's typed option values (`BACKEND.option_values(options)`)."""
    given = opts.given
    cfg = dict(PRESETS[opts["encoder"]])
    for key in ("embed_dim", "depth", "heads"):
        if key in given:
            cfg[key] = given[key]
    if "heads" not in given and "embed_dim" in given:
        cfg["heads"] = default_heads(cfg["embed_dim"])
    if "depth" in given and cfg["encoder"] == "sam":
        cfg.pop("global_attn")
    # a fresh position grid covers the training patches (the published ones keep their own size)
    if any(k in given for k in ("embed_dim", "depth", "heads")):
        cfg["pos_grid"] = max(1, patch_side // PATCH)
    cfg["type_classes"] = opts["types"]
    div = opts["decoder_div"]
    if div < 1:
        raise CsrefinerError(f"--option decoder_div={div}: use 1 (published widths) or more")
    cfg["widths"] = {k: max(4, v // div) for k, v in published_widths(cfg["embed_dim"]).items()}
    return complete(cfg)


def _count(state: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}{n}.norm1.weight" in state:
        n += 1
    return n


def from_state(state: dict, meta: dict | None = None) -> dict:
    """The architecture a (published or csrefiner) CellViT state dict implies; `meta` is the checkpoint's config."""
    meta = meta or {}
    if "encoder.patch_embed.proj.weight" not in state or "hv_map_decoder.decoder0_header.2.weight" not in state:
        raise CsrefinerError("not a CellViT state dict (no encoder.patch_embed.proj / hv_map_decoder weights)")
    proj = state["encoder.patch_embed.proj.weight"]
    dim, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    if patch != PATCH:
        raise CsrefinerError(f"CellViT with {patch}-pixel tokens; this decoder needs {PATCH}")
    depth = _count(state, "encoder.blocks.")
    sam = "encoder.neck.0.weight" in state
    cfg = {"encoder": "sam" if sam else "vit", "embed_dim": dim, "depth": depth, "in_chans": in_chans}
    cfg["mlp_ratio"] = state[f"encoder.blocks.0.mlp.{'lin1' if sam else 'fc1'}.weight"].shape[0] / dim
    if sam:
        grid = int(state["encoder.pos_embed"].shape[1])
        lengths = [int(state[f"encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)]
        cfg |= {
            "pos_grid": grid,
            "heads": dim // int(state["encoder.blocks.0.attn.rel_pos_h"].shape[1]),
            "global_attn": [i for i, n in enumerate(lengths) if n == 2 * grid - 1],
            "window_size": (min(lengths) + 1) // 2,
            "out_chans": int(state["encoder.neck.0.weight"].shape[0]),
        }
        head = state.get("classifier_head.weight")
    else:
        cfg["pos_grid"] = int(round(math.sqrt(state["encoder.pos_embed"].shape[1] - 1)))
        cfg["heads"] = int(meta.get("model.num_heads", meta.get("heads", default_heads(dim))))
        head = state.get("encoder.head.weight")
    cfg["tissue_classes"] = int(head.shape[0]) if head is not None else 0
    types = state.get("nuclei_type_maps_decoder.decoder0_header.2.weight")
    cfg["type_classes"] = int(types.shape[0]) if types is not None else 0
    cfg["regression"] = int(state["nuclei_binary_map_decoder.decoder0_header.2.weight"].shape[0]) == 4
    layers = meta.get("model.extract_layers", meta.get("extract_layers"))
    cfg["extract_layers"] = [int(v) for v in layers] if layers else quarter_layers(depth)
    out = lambda key: int(state[key].shape[0])  # noqa: E731 - conv weights are (out, in, k, k)
    t_out = lambda key: int(state[key].shape[1])  # noqa: E731 - transposed conv weights are (in, out, k, k)
    cfg["widths"] = {
        "c0a": out("decoder0.0.block.0.weight"),
        "c0": out("decoder0.1.block.0.weight"),
        "skip11": t_out("decoder1.0.block.0.weight"),
        "skip12": t_out("decoder1.1.block.0.weight"),
        "c1": t_out("decoder1.2.block.0.weight"),
        "c2": t_out("decoder2.1.block.0.weight"),
        "bottleneck": t_out("decoder3.0.block.0.weight"),
    }
    return complete(cfg)
