"""Neighbourhood context: the smoothed share of visible records around each cell, as model features.

A hidden cell's best simple guesses are the density of the same species' visible records
around it (the neighbour-density baseline) and the other species recorded there (the
co-presence baseline). A small network trained for minutes on a CPU does not discover a wide
Gaussian smoother by itself, so :class:`ContextModel` computes these smoothers inside the
model and hands them to the backbone (U-Net or ViT) as extra channels, plus a linear 1×1 head
on them whose logits are added to the backbone's. The model still takes the standard
(B, 2S+A, H, W) encoding of :func:`core.model.inputs.model_inputs`, so training, evaluation and
inference need no change.

Per species and smoothing scale σ (cells) the features are: the Gaussian-weighted share of
present cells among visible cells, its logarithm, and the Gaussian weight of visible cells
(how much of the neighbourhood is visible). Cells outside the valid area count as visible
and empty (no record at sea), and outside the tile as not visible.

With aux bands and ``aux_sigmas``, :class:`AuxFeatures` adds, per aux band and scale, its
Gaussian-smoothed mean and local standard deviation (relief of the elevation band, texture of
the gravity and magnetic fields); the head then also sees the aux bands, so a linear function
of the terrain can raise or lower each species' odds where no record is visible.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

FEATURES_PER_SCALE = 3
LOG_FLOOR = 1e-3
EPS = 1e-4
# The head's logits are scaled up so that, under Adam's step size of about the learning rate per
# weight, its coefficients reach useful sizes (several units on log-share) in a few hundred steps.
HEAD_GAIN = 10.0


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian with radius ceil(3σ)."""
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable convolution of every channel with the 1-D kernel ``k`` (zero beyond the edges)."""
    c, r = a.shape[1], (k.numel() - 1) // 2
    kx = k.to(a.dtype).view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = k.to(a.dtype).view(1, 1, -1, 1).expand(c, 1, -1, 1)
    a = F.conv2d(a, kx, padding=(0, r), groups=c)
    return F.conv2d(a, ky, padding=(r, 0), groups=c)


def shares_at_scales(present: torch.Tensor, visible: torch.Tensor, kernels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per kernel, :data:`FEATURES_PER_SCALE` tensors shaped like ``present`` (B, C, H, W): the
    Gaussian-weighted share of ``present`` among the ``visible`` weight (0 where almost nothing is
    visible), its logarithm, and the Gaussian weight of visible cells."""
    c = present.shape[1]
    both = torch.cat([present, visible], dim=1)
    out = []
    for k in kernels:
        blurred = blur(both, k)
        num, den = blurred[:, :c], blurred[:, c:]
        share = (num / den.clamp_min(EPS)).clamp(0.0, 1.0) * (den > EPS)
        out += [share, torch.log(share + LOG_FLOOR), den]
    return out


def shares_into(present_visible: torch.Tensor, kernels: Sequence[torch.Tensor], out: torch.Tensor,
                rows: Optional[int] = None) -> None:
    """:func:`shares_at_scales` without autograd, written into ``out`` (B, 3·C·len(kernels), H, W;
    each channel plane contiguous) from ``present_visible`` (B, 2C, H, W: present, then visible;
    channels-last, where the blur is fastest): the same operations in the same order, so the same
    values. The element-wise steps run over bands of ``rows`` rows (all of them when None), so that
    on a CPU each band's steps stay in the cache."""
    c, h = present_visible.shape[1] // 2, present_visible.shape[2]
    rows = rows or h
    for i, k in enumerate(kernels):
        blurred = blur(present_visible, k)
        o = FEATURES_PER_SCALE * c * i
        for r0 in range(0, h, rows):
            band = slice(r0, min(h, r0 + rows))
            num, den = blurred[:, :c, band], blurred[:, c:, band]
            share, logs, dens = (out[:, o + j * c:o + (j + 1) * c, band] for j in range(FEATURES_PER_SCALE))
            dens.copy_(den)
            torch.clamp(dens, min=EPS, out=share)
            torch.div(num, share, out=share)
            share.clamp_(0.0, 1.0).mul_(dens > EPS)
            torch.add(share, LOG_FLOOR, out=logs).log_()


class GaussianScales(nn.Module):
    """Holds one 1-D Gaussian kernel per smoothing scale σ (in cells)."""

    def __init__(self, sigmas: Sequence[float], what: str) -> None:
        super().__init__()
        if any(s <= 0 for s in sigmas):
            raise ValueError(f"{what} sigmas must be positive cell counts, got {list(sigmas)}")
        self.sigmas = [float(s) for s in sigmas]
        for i, s in enumerate(self.sigmas):
            self.register_buffer(f"kernel{i}", gaussian_kernel(s), persistent=False)

    def kernels(self) -> list[torch.Tensor]:
        return [getattr(self, f"kernel{i}") for i in range(len(self.sigmas))]


class ContextFeatures(GaussianScales):
    """(B, 2S+A, H, W) model inputs → (B, 3·S·len(sigmas), H, W) neighbourhood features."""

    def __init__(self, n_species: int, sigmas: Sequence[float]) -> None:
        if not sigmas:
            raise ValueError("context features need at least one sigma")
        super().__init__(sigmas, "context")
        self.n_species = n_species

    @property
    def channels(self) -> int:
        return FEATURES_PER_SCALE * self.n_species * len(self.sigmas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.features(x), dim=1).to(x.dtype)

    def features_into(self, x: torch.Tensor, out: torch.Tensor, rows: Optional[int] = None) -> None:
        """:meth:`forward`'s features of ``x`` (its first 2S channels are read) written into
        ``out`` (see :func:`shares_into`; inference only)."""
        s = self.n_species
        b, _, h, w = x.shape
        both = torch.empty((b, 2 * s, h, w), device=x.device).contiguous(memory_format=torch.channels_last)
        both[:, :s].copy_(x[:, :s])
        torch.sub(1.0, x[:, s:2 * s].float(), out=both[:, s:])
        shares_into(both, self.kernels(), out, rows)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features as a list of (B, S, H, W) float tensors, in the order of :meth:`forward`'s
        channels (for a caller that concatenates them with more channels in one copy)."""
        s = self.n_species
        return shares_at_scales(x[:, :s].float(), 1.0 - x[:, s:2 * s].float(), self.kernels())


class AuxFeatures(GaussianScales):
    """(B, 2S+A, H, W) model inputs → (B, 2·A·len(sigmas), H, W): local mean and standard
    deviation of each aux band at each scale (none when the model has no aux band)."""

    def __init__(self, n_species: int, n_aux: int, sigmas: Sequence[float]) -> None:
        super().__init__(sigmas, "aux")
        self.n_species, self.n_aux = n_species, n_aux

    @property
    def channels(self) -> int:
        return 2 * self.n_aux * len(self.sigmas)

    def bands(self, x: torch.Tensor) -> torch.Tensor:
        """The aux bands of the model inputs (B, A, H, W)."""
        return x[:, 2 * self.n_species:2 * self.n_species + self.n_aux]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.of_bands(self.bands(x))

    def of_bands(self, bands: torch.Tensor) -> torch.Tensor:
        """The features of the aux bands alone (B, A, H, W), as :meth:`forward` on inputs holding them."""
        if not self.channels:
            return bands.new_zeros(bands.shape[0], 0, bands.shape[2], bands.shape[3])
        aux = bands.float()
        out = []
        for k in self.kernels():
            mean = blur(aux, k)
            out += [mean, (blur(aux * aux, k) - mean * mean).clamp_min(0.0).sqrt()]
        return torch.cat(out, dim=1).to(bands.dtype)


class AuxPrior(nn.Module):
    """Per-species logits from the aux bands and their local statistics alone (no record): a
    per-cell MLP (1×1 convolutions). Trained with its own loss on every valid cell (the
    ``prior`` loss weight), so that it stands alone as a map of where records are given the
    terrain, geochemistry and geology: what the aux layers say where no record is near. By
    default a second output beside the model's (``last_prior``; see :mod:`core.model.aux_prior`);
    with ``aux_prior_added`` its logits are added to the model's (measured worse: README)."""

    def __init__(self, in_channels: int, classes: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.ReLU(),
                                 nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, classes, 1))

    def forward(self, aux_inputs: torch.Tensor) -> torch.Tensor:
        return self.net(aux_inputs)


def cell_blocks(x: torch.Tensor, f: int) -> torch.Tensor:
    """Each f × f block of cells of (B, C, H, W) as f² channels per channel: (B, f²·C, H/f, W/f)."""
    return x if f == 1 else F.pixel_unshuffle(x, f)


def block_means(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B, C, H, W) averaged over each f × f block of cells: (B, C, H/f, W/f)."""
    return x if f == 1 else F.avg_pool2d(x.float(), f).to(x.dtype)


def to_cells(x: torch.Tensor, f: int) -> torch.Tensor:
    """The inverse of :func:`cell_blocks`: (B, f²·C, H/f, W/f) to (B, C, H, W)."""
    return x if f == 1 else F.pixel_shuffle(x, f)


class ContextModel(nn.Module):
    """A backbone fed with the inputs plus :class:`ContextFeatures` (and :class:`AuxFeatures`),
    with a linear head on the features, the visible presence and the aux bands added to its
    logits (zero-initialised, gain ``HEAD_GAIN``), and optionally an :class:`AuxPrior` (its
    last output kept in ``last_prior``; added to the logits only with ``aux_prior_added``).

    With ``cell_shuffle`` f > 1 the backbone works on blocks of f × f cells: the inputs reach it
    as f² channels per input (pixel unshuffle, nothing averaged away), the context and aux
    features are computed on the inputs averaged over each block (their scales divided by f),
    and the f² logits of each block and species go back to its cells (pixel shuffle). The head
    is then two: one per block on the features (f² logits per species), one per cell on the
    visible presence and aux bands of that cell (``cell_head``: the same weights for every cell,
    as the head without blocks). Every per-cell step but that one runs on 1/f² as many
    positions; tiles and windows must be multiples of f times the backbone's own multiple."""

    def __init__(self, backbone_builder, in_channels: int, classes: int, sigmas: Sequence[float],
                 aux_sigmas: Sequence[float] = (), aux_prior: int = 0, aux_prior_added: bool = False,
                 cell_shuffle: int = 1) -> None:
        super().__init__()
        f = int(cell_shuffle)
        if f < 1:
            raise ValueError(f"cell_shuffle must be a positive whole number of cells, got {cell_shuffle}")
        if f > 1 and aux_prior:
            raise ValueError("the aux prior does not go with cell_shuffle")
        self.cell_shuffle = f
        self.context = ContextFeatures(classes, [s / f for s in sigmas])
        self.aux_context = AuxFeatures(classes, in_channels - 2 * classes, [s / f for s in aux_sigmas])
        extra = self.context.channels + self.aux_context.channels
        self.backbone = backbone_builder(f * f * in_channels + extra, f * f * classes)
        cell_in = classes + (self.aux_context.n_aux if self.head_sees_aux else 0)
        self.head = nn.Conv2d(extra + (cell_in if f == 1 else 0), f * f * classes, kernel_size=1)
        self.cell_head = nn.Conv2d(cell_in, classes, kernel_size=1, bias=False) if f > 1 else None
        for conv in (self.head, self.cell_head):
            if conv is not None:
                for p in conv.parameters():
                    nn.init.zeros_(p)
        if aux_prior and not self.aux_context.n_aux:
            raise ValueError("the aux prior needs aux bands (a model trained with --no-aux has none)")
        self.prior = (AuxPrior(self.aux_context.n_aux + self.aux_context.channels, classes, int(aux_prior))
                      if aux_prior else None)
        self.last_prior: Optional[torch.Tensor] = None
        self.prior_added = bool(aux_prior_added)

    @property
    def head_sees_aux(self) -> bool:
        """The head takes the aux bands only with aux features (older model files have neither)."""
        return bool(self.aux_context.sigmas)

    def prior_logits(self, x: torch.Tensor, aux_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The aux prior's logits from the model inputs (only their aux bands are read)."""
        if aux_feats is None:
            aux_feats = self.aux_context(x)
        return self.prior(torch.cat([self.aux_context.bands(x), aux_feats], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cell_shuffle
        means = block_means(x, f)
        aux_feats = self.aux_context(means)
        feats = torch.cat([self.context(means), aux_feats], dim=1)
        logits = self.backbone(torch.cat([cell_blocks(x, f), feats], dim=1))
        cell_in = [x[:, :self.context.n_species]] + ([self.aux_context.bands(x)] if self.head_sees_aux else [])
        if f == 1:
            logits = logits + HEAD_GAIN * self.head(torch.cat([feats] + cell_in, dim=1))
        else:
            logits = (to_cells(logits + HEAD_GAIN * self.head(feats), f)
                      + HEAD_GAIN * self.cell_head(torch.cat(cell_in, dim=1)))
        if self.prior is not None:
            self.last_prior = self.prior_logits(x, aux_feats)
            if self.prior_added:
                logits = logits + self.last_prior
        return logits
