"""CellViT: a ViT encoder, shared skip decoders and one upsampling branch per output map.

The token grid (1/16 of the input) is brought back to full resolution in four x2 steps; skips come from four
transformer blocks (decoded by `decoder1..3`) and from the image itself (`decoder0`). Branches:
`nuclei_binary_map_decoder` (2 logits: background / nucleus; +2 with the regression head),
`hv_map_decoder` (horizontal and vertical distance maps) and, when the model has nucleus types,
`nuclei_type_maps_decoder`. Names and widths follow the published models; `widths` can shrink the decoder
for small CPU models.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from csrefiner.models.cellvit.vit import HistoViT, SamViT

PATCH = 16  # four x2 upsampling steps: the decoder needs 16-pixel tokens


def published_widths(dim: int) -> dict:
    """Decoder channel widths of the published models (they depend on the encoder width only)."""
    small = dim < 512
    return {
        "c0a": 32,
        "c0": 64,
        "c1": 128,
        "c2": 256,
        "bottleneck": 312 if small else 512,
        "skip11": 256 if small else 512,
        "skip12": 128 if small else 256,
    }


class Conv2DBlock(nn.Module):
    """3x3 conv, batch norm, ReLU, dropout (`block.0` conv, `block.1` norm)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dropout: float = 0.0):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Deconv2DBlock(nn.Module):
    """x2 transposed conv, 3x3 conv, batch norm, ReLU, dropout."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        self.block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 2, stride=2),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 2, stride=2)


def branch(dim: int, w: dict, n_out: int, dropout: float) -> nn.Sequential:
    b, c2, c1, c0 = w["bottleneck"], w["c2"], w["c1"], w["c0"]
    return nn.Sequential(
        OrderedDict(
            [
                ("bottleneck_upsampler", _up(dim, b)),
                (
                    "decoder3_upsampler",
                    nn.Sequential(
                        Conv2DBlock(2 * b, b, dropout=dropout),
                        Conv2DBlock(b, b, dropout=dropout),
                        Conv2DBlock(b, b, dropout=dropout),
                        _up(b, c2),
                    ),
                ),
                (
                    "decoder2_upsampler",
                    nn.Sequential(
                        Conv2DBlock(2 * c2, c2, dropout=dropout), Conv2DBlock(c2, c2, dropout=dropout), _up(c2, c1)
                    ),
                ),
                (
                    "decoder1_upsampler",
                    nn.Sequential(
                        Conv2DBlock(2 * c1, c1, dropout=dropout), Conv2DBlock(c1, c1, dropout=dropout), _up(c1, c0)
                    ),
                ),
                (
                    "decoder0_header",
                    nn.Sequential(
                        Conv2DBlock(2 * c0, c0, dropout=dropout),
                        Conv2DBlock(c0, c0, dropout=dropout),
                        nn.Conv2d(c0, n_out, 1),
                    ),
                ),
            ]
        )
    )


def build_encoder(cfg: dict) -> nn.Module:
    common = dict(
        dim=cfg["embed_dim"],
        depth=cfg["depth"],
        heads=cfg["heads"],
        patch=PATCH,
        in_chans=cfg["in_chans"],
        mlp_ratio=cfg["mlp_ratio"],
        pos_grid=cfg["pos_grid"],
        extract_layers=cfg["extract_layers"],
    )
    if cfg["encoder"] == "vit":
        return HistoViT(**common, tissue_classes=cfg["tissue_classes"])
    return SamViT(**common, window=cfg["window_size"], global_attn=cfg["global_attn"], out_chans=cfg["out_chans"])


class CellViT(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        dim, w, drop = cfg["embed_dim"], cfg["widths"], cfg.get("dropout", 0.0)
        self.encoder = build_encoder(cfg)
        if cfg["encoder"] == "sam" and cfg["tissue_classes"] > 0:
            self.classifier_head = nn.Linear(cfg["out_chans"], cfg["tissue_classes"])
        self.decoder0 = nn.Sequential(
            Conv2DBlock(cfg["in_chans"], w["c0a"], dropout=drop), Conv2DBlock(w["c0a"], w["c0"], dropout=drop)
        )
        self.decoder1 = nn.Sequential(
            Deconv2DBlock(dim, w["skip11"], drop),
            Deconv2DBlock(w["skip11"], w["skip12"], drop),
            Deconv2DBlock(w["skip12"], w["c1"], drop),
        )
        self.decoder2 = nn.Sequential(Deconv2DBlock(dim, w["skip11"], drop), Deconv2DBlock(w["skip11"], w["c2"], drop))
        self.decoder3 = nn.Sequential(Deconv2DBlock(dim, w["bottleneck"], drop))
        self.nuclei_binary_map_decoder = branch(dim, w, 4 if cfg["regression"] else 2, drop)
        self.hv_map_decoder = branch(dim, w, 2, drop)
        if cfg["type_classes"] > 0:
            self.nuclei_type_maps_decoder = branch(dim, w, cfg["type_classes"], drop)

    def _decode(self, skips: list[torch.Tensor], head: nn.Sequential) -> torch.Tensor:
        z0, z1, z2, z3, z4 = skips
        b = head.bottleneck_upsampler(z4)
        b = head.decoder3_upsampler(torch.cat([self.decoder3(z3), b], dim=1))
        b = head.decoder2_upsampler(torch.cat([self.decoder2(z2), b], dim=1))
        b = head.decoder1_upsampler(torch.cat([self.decoder1(z1), b], dim=1))
        return head.decoder0_header(torch.cat([self.decoder0(z0), b], dim=1))

    def forward(self, x: torch.Tensor) -> dict:
        if x.shape[-2] % PATCH or x.shape[-1] % PATCH:
            raise ValueError(f"CellViT input {tuple(x.shape[-2:])} must be a multiple of {PATCH} (pad it)")
        tissue, feats = self.encoder(x)
        skips = [x, *feats]
        binary = self._decode(skips, self.nuclei_binary_map_decoder)
        out = {"nuclei_binary_map": binary[:, :2], "hv_map": self._decode(skips, self.hv_map_decoder)}
        if self.cfg["type_classes"] > 0:
            out["nuclei_type_map"] = self._decode(skips, self.nuclei_type_maps_decoder)
        if hasattr(self, "classifier_head"):
            tissue = self.classifier_head(tissue)
        out["tissue_types"] = tissue
        return out

    def encoder_parameters(self):
        """What the frozen phase freezes: the encoder, except its tissue head (as published)."""
        return [p for name, p in self.encoder.named_parameters() if not name.startswith("head.")]

    def set_encoder_trainable(self, trainable: bool) -> None:
        for p in self.encoder_parameters():
            p.requires_grad_(trainable)
