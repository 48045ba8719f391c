"""The ViT baseline: a plain vision transformer with the U-Net's inputs and outputs.

(B, 2S+A, H, W) inputs → non-overlapping ``patch``×``patch`` patch embedding (a strided
convolution over all stacked channels) → fixed 2-D sine-cosine position codes (so any tile
size works, as in sliding-window inference) → a pre-norm ``torch.nn.TransformerEncoder`` →
a per-pixel head: one linear map from each patch token to ``patch*patch*S`` logits, put back
in place by pixel shuffle → (B, S, H, W) logits. Tiles whose side is not a multiple of the
patch are zero-padded and cropped back.

It has no convolutional decoder and no skip connections: it is the "transformer instead of
a U-Net" comparison the method claims to beat, not a hybrid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"patch": 8, "embed_dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 4.0}


def sincos_position_codes(rows: int, cols: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """(rows*cols, dim) fixed 2-D sine-cosine codes (half the channels for rows, half for cols)."""
    if dim % 4:
        raise ValueError(f"embed_dim {dim} must be a multiple of 4 for 2-D sine-cosine codes")
    quarter = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    r = torch.arange(rows, device=device, dtype=torch.float32)[:, None] * freq
    c = torch.arange(cols, device=device, dtype=torch.float32)[:, None] * freq
    r_codes = torch.cat([r.sin(), r.cos()], dim=1)[:, None, :].expand(rows, cols, 2 * quarter)
    c_codes = torch.cat([c.sin(), c.cos()], dim=1)[None, :, :].expand(rows, cols, 2 * quarter)
    return torch.cat([r_codes, c_codes], dim=2).reshape(rows * cols, dim).to(dtype or torch.float32)


class PatchViT(nn.Module):
    """Vision transformer mapping (B, in_channels, H, W) to (B, classes, H, W) logits."""

    def __init__(self, in_channels: int, classes: int, patch: int = 8, embed_dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by heads {heads}")
        self.patch, self.classes, self.embed_dim = int(patch), int(classes), int(embed_dim)
        self.embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch, stride=patch)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, int(embed_dim * mlp_ratio), dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(embed_dim),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(embed_dim, patch * patch * classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.patch
        ph, pw = -(-h // p) * p, -(-w // p) * p
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))
        tokens = self.embed(x)                                   # (B, D, ph/p, pw/p)
        gh, gw = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)               # (B, gh*gw, D)
        tokens = tokens + sincos_position_codes(gh, gw, self.embed_dim, tokens.device, tokens.dtype)
        tokens = self.encoder(tokens)
        out = self.head(tokens)                                  # (B, gh*gw, p*p*S)
        out = out.transpose(1, 2).reshape(b, self.classes * p * p, gh, gw)
        out = F.pixel_shuffle(out, p)                            # (B, S, ph, pw)
        return out[:, :, :h, :w]


def build_vit(cfg) -> nn.Module:
    """Builder for ``ModelConfig(arch="vit", options={patch, embed_dim, depth, heads, mlp_ratio})``;
    ``cfg.encoder_depth`` (a ResNet depth) does not apply."""
    unknown = set(cfg.options) - set(DEFAULTS) - {"dropout"}
    if unknown:
        raise ValueError(f"unknown ViT options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **cfg.options}
    return PatchViT(cfg.in_channels, cfg.classes, **opts)
