"""The two ViT encoder families of the published CellViT models, written for this project.

Both return the outputs of four transformer blocks (`extract_layers`, 1-based) as (B, D, h, w) maps for the
decoder's skip connections, plus a global feature for the (unused here) tissue classifier. Parameter names and
shapes follow the published checkpoints:
- `HistoViT` (CellViT-256, HIPT ViT-S/16): `patch_embed.proj`, `cls_token`, `pos_embed` (1, 1 + g*g, D),
  `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head` (tissue classes).
- `SamViT` (CellViT-SAM-B/L/H, SAM image encoder): `patch_embed.proj`, `pos_embed` (1, g, g, D),
  `blocks.N.{norm1,attn.qkv,attn.proj,attn.rel_pos_h,attn.rel_pos_w,norm2,mlp.lin1,mlp.lin2}`,
  `neck.{0,1,2,3}` (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, h, w, D)
        return self.proj(x).permute(0, 2, 3, 1)


def _heads_split(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, 3D) -> q, k, v of shape (B, heads, N, D/heads)."""
    b, n, three_d = qkv.shape
    return qkv.reshape(b, n, 3, heads, three_d // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)


# --- ViT-256 (HIPT / DINO ViT-S) -------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _heads_split(self.qkv(x), self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(x.shape))


class FeedForward(nn.Module):
    """Two linear layers with GELU; `names` keeps the published parameter names (fc1/fc2 or lin1/lin2)."""

    def __init__(self, dim: int, hidden: int, names: tuple[str, str] = ("fc1", "fc2")):
        super().__init__()
        self.names = names
        setattr(self, names[0], nn.Linear(dim, hidden))
        setattr(self, names[1], nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.names[1])(F.gelu(getattr(self, self.names[0])(x)))


class HistoBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = _layer_norm(dim), _layer_norm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HistoViT(nn.Module):
    """Class token + learned 1D position embedding, interpolated (bicubic) to the input's token grid."""

    def __init__(
        self,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        patch: int = 16,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        pos_grid: int = 14,
        extract_layers=(3, 6, 9, 12),
        tissue_classes: int = 0,
    ):
        super().__init__()
        self.patch, self.extract = patch, tuple(extract_layers)
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, dim))
        self.blocks = nn.ModuleList(HistoBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = _layer_norm(dim)
        self.head = nn.Linear(dim, tissue_classes) if tissue_classes > 0 else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _pos(self, h: int, w: int) -> torch.Tensor:
        n = self.pos_embed.shape[1] - 1
        g = int(round(math.sqrt(n)))
        if g == h == w:
            return self.pos_embed
        grid = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        # the published ViT-256 scales by (tokens + 0.1) / grid (DINO's trick against rounding); same here
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / g, (w + 0.1) / g), mode="bicubic")
        grid = grid[..., :h, :w].permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([self.pos_embed[:, :1], grid], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tokens = self.patch_embed(x)
        b, h, w, d = tokens.shape
        z = torch.cat([self.cls_token.expand(b, -1, -1), tokens.reshape(b, h * w, d)], dim=1) + self._pos(h, w)
        skips = []
        for i, block in enumerate(self.blocks, start=1):
            z = block(z)
            if i in self.extract:
                skips.append(z[:, 1:].transpose(1, 2).reshape(b, d, h, w))
        return self.head(self.norm(z)[:, 0]), skips


# --- SAM image encoder (ViT-B/L/H with windowed attention and decomposed relative positions) --------------------


def _rel_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """(2*size-1, C) relative-position embeddings for `size` query/key positions (linear resize if trained larger)."""
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T
    idx = torch.arange(size, device=rel_pos.device)
    return rel_pos[idx[:, None] - idx[None, :] + size - 1]  # (q, k, C)


class RelPosAttention(nn.Module):
    def __init__(self, dim: int, heads: int, rel_size: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, dim // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, h, w, D)
        b, h, w, d = x.shape
        q, k, v = _heads_split(self.qkv(x.reshape(b, h * w, d)), self.heads)
        # decomposed relative positions (MViTv2): bias[q=(i,j), k=(u,v)] = q . Rh[i,u] + q . Rw[j,v]
        qg = q.reshape(b, self.heads, h, w, -1)
        bias_h = torch.einsum("bnijc,iuc->bniju", qg, _rel_table(self.rel_pos_h, h))
        bias_w = torch.einsum("bnijc,jvc->bnijv", qg, _rel_table(self.rel_pos_w, w))
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, self.heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, d))


def _windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, h, w, D) -> (B * n_windows, size, size, D), zero-padding h and w up to multiples of `size`."""
    b, h, w, d = x.shape
    hp, wp = -(-h // size) * size, -(-w // size) * size
    x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    x = x.reshape(b, hp // size, size, wp // size, size, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, d), (hp, wp)


def _unwindows(x: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // ((hp // size) * (wp // size))
    x = x.reshape(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]].contiguous()


class SamBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int, grid: int):
        super().__init__()
        self.window = window
        self.norm1, self.norm2 = _layer_norm(dim), _layer_norm(dim)
        self.attn = RelPosAttention(dim, heads, window if window > 0 else grid)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), names=("lin1", "lin2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window > 0:
            hw = y.shape[1:3]
            y, padded = _windows(y, self.window)
            y = _unwindows(self.attn(y), self.window, padded, hw)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class SamViT(nn.Module):
    """SAM's image encoder; global attention in `global_attn` blocks (0-based), windows elsewhere."""

    def __init__(
        self,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        patch: int = 16,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        pos_grid: int = 64,
        window: int = 14,
        global_attn=(2, 5, 8, 11),
        extract_layers=(3, 6, 9, 12),
        out_chans: int = 256,
    ):
        super().__init__()
        self.patch, self.extract = patch, tuple(extract_layers)
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_grid, pos_grid, dim))
        self.blocks = nn.ModuleList(
            SamBlock(dim, heads, mlp_ratio, 0 if i in set(global_attn) else window, pos_grid) for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def _pos(self, h: int, w: int) -> torch.Tensor:
        g = self.pos_embed.shape[1]
        if h <= g and w <= g:  # the published model crops the 64 x 64 grid to the token grid
            return self.pos_embed[:, :h, :w]
        grid = F.interpolate(self.pos_embed.permute(0, 3, 1, 2), size=(h, w), mode="bicubic")
        return grid.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = self.patch_embed(x)
        z = z + self._pos(*z.shape[1:3])
        skips = []
        for i, block in enumerate(self.blocks, start=1):
            z = block(z)
            if i in self.extract:
                skips.append(z.permute(0, 3, 1, 2))
        pooled = self.neck(z.permute(0, 3, 1, 2)).mean(dim=(2, 3))
        return pooled, skips
