"""A :class:`core.model.context.ContextModel` with a U-Net backbone split for inference into what
the aux bands alone determine, computed once per window, and what each mask draw changes.

Every evaluation of a window (one model × one mask draw) sees the same aux bands; only the
visible presence and hidden-indicator channels change. Everything the model computes from the
aux bands alone is linear up to the backbone's first convolution and in the head, so it
separates exactly (up to float rounding):

- the aux bands' local means and spreads (:class:`core.model.context.AuxFeatures`);
- their share of the backbone's first convolution (the ResNet stem: 7 × 7, stride 2, BatchNorm
  folded in): ``conv(x, W) = conv(x_draw, W_draw) + conv(x_aux, W_aux)``, so each draw convolves
  ``2S + 3·S·len(sigmas)`` channels instead of all the backbone's inputs (the stem is the
  dearest layer of the model: it runs at full resolution on the most channels);
- their share of the linear head, its bias, and the aux prior's logits when they are added.

With the lean input path's ``input_reduction`` (:class:`core.model.lean_input.ReducedInput`) the
first convolution is the 1 × 1 reduction in front of the backbone, split the same way (its aux
share is then k channels at full resolution); the stem after it convolves k channels per draw.

:meth:`SharedAuxModel.aux_terms` computes those once per window; :meth:`SharedAuxModel.forward`
then runs a batch of draws of that window. The model's own ``forward`` stays the reference
(checked equal in ``tests/test_infer_shared_aux.py``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .context import HEAD_GAIN, ContextModel, block_means, cell_blocks
from .lean_input import reduction_of

BAND_ROWS = 16  # rows per band of the context features' element-wise steps on a CPU (they stay in the cache)


@dataclass
class AuxTerms:
    """What a window's aux bands contribute, the same for every draw of every batch of it.

    ``stem``: their share of the backbone's first convolution, (1, C, H/2, W/2) for the ResNet
    stem, (1, k, H/f, W/f) for the lean input's reduction (None without aux bands); ``logits``:
    (1, f²·S, H/f, W/f) their share of the head (with its bias, times the head's gain) plus the aux
    prior's logits when the model adds them; ``cell_logits``: (1, S, H, W) their share of the
    cell head (with cell blocks, f > 1; else None)."""

    stem: Optional[torch.Tensor]
    logits: torch.Tensor
    cell_logits: Optional[torch.Tensor] = None  # with cell blocks: the aux bands' share of the cell head


class StemWithAux(nn.Module):
    """The backbone's first convolution on the per-draw channels only, plus the aux share set
    in :attr:`aux` for the window being run. With :attr:`computed_outside` (a 1 × 1 reduction,
    whose product :class:`SharedAuxModel` computes together with the head's) its input already is
    that sum and passes unchanged."""

    def __init__(self, conv: nn.Conv2d, draw_channels: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(len(draw_channels), conv.out_channels, conv.kernel_size, conv.stride,
                              conv.padding, conv.dilation, conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.index_select(1, draw_channels))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
        self.conv.to(conv.weight.device, memory_format=torch.channels_last)
        self.aux: Optional[torch.Tensor] = None
        self.computed_outside = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.computed_outside:
            return x
        y = self.conv(x)
        return y if self.aux is None else y + self.aux


def _first_conv(backbone: nn.Module) -> Optional[tuple[nn.Module, str]]:
    """Where the backbone's first convolution sits (its parent module and attribute name): the
    lean input's 1 × 1 reduction, else the ResNet stem ``encoder.conv1``; None when neither is a
    plain convolution."""
    if reduction_of(backbone) is not None:
        return backbone, "input_reduction"
    encoder = getattr(backbone, "encoder", None)
    conv = getattr(encoder, "conv1", None)
    return (encoder, "conv1") if isinstance(conv, nn.Conv2d) and conv.groups == 1 else None


class SharedAuxModel(nn.Module):
    """Inference form of a :class:`ContextModel` with an smp U-Net (ResNet) backbone: ``forward``
    takes the per-draw channels of a batch of draws of one window and that window's
    :class:`AuxTerms`, and returns the logits the model's own ``forward`` gives on the full inputs.

    ``prepare`` turns the backbone into its inference form (BatchNorm folded, channels-last)
    before its stem is split."""

    def __init__(self, model: ContextModel, prepare: Callable[[nn.Module], nn.Module]) -> None:
        super().__init__()
        model = model.eval()
        s, a = model.context.n_species, model.aux_context.n_aux
        n_ctx, n_auxf = model.context.channels, model.aux_context.channels
        self.n_species, self.n_aux = s, a
        self.context, self.aux_context = model.context, model.aux_context
        self.cell_shuffle = f = model.cell_shuffle
        f2 = f * f  # block channels per input channel
        self.prior = model.prior if model.prior_added else None
        backbone = prepare(model.backbone)
        if backbone is model.backbone:  # prepared in place: split a copy, never the caller's model
            backbone = copy.deepcopy(backbone)
        where = _first_conv(backbone)
        if where is None:
            raise ValueError("the backbone has no plain first convolution (input_reduction or encoder.conv1)")
        parent, name = where
        stem = getattr(parent, name)
        dev = stem.weight.device
        # backbone inputs: [visible S, hidden S, aux A (each as f² block channels), context n_ctx, aux features n_auxf]
        n_in = f2 * (2 * s + a)
        draw = torch.cat([torch.arange(f2 * 2 * s), torch.arange(n_in, n_in + n_ctx)]).to(dev)
        aux = torch.cat([torch.arange(f2 * 2 * s, n_in), torch.arange(n_in + n_ctx, n_in + n_ctx + n_auxf)]).to(dev)
        self.register_buffer("stem_aux_weight", stem.weight.detach().index_select(1, aux).contiguous(),
                             persistent=False)
        self.stem_args = dict(stride=stem.stride, padding=stem.padding, dilation=stem.dilation)
        self.stem = StemWithAux(stem, draw)
        setattr(parent, name, self.stem)
        self.backbone = backbone
        # head inputs: [context n_ctx, aux features n_auxf, then, without cell blocks, visible S, (aux bands A)]
        w = model.head.weight.detach()[:, :, 0, 0]
        n_feat = n_ctx + n_auxf
        if f == 1:  # the head on the per-draw backbone inputs [visible S, hidden S (not seen), context n_ctx]
            cell_w = w[:, n_feat:]
            head_draw = torch.cat([cell_w[:, :s], torch.zeros_like(cell_w[:, :s]), w[:, :n_ctx]], 1)
            cell_draw = w[:, :0]
        else:  # the block head on the context features; the cell head on [visible S, (aux bands A)] per cell
            cell_w = model.cell_head.weight.detach()[:, :, 0, 0]
            head_draw = torch.cat([w.new_zeros(w.shape[0], f2 * 2 * s), w[:, :n_ctx]], 1)
            cell_draw = HEAD_GAIN * cell_w[:, :s]
        self.register_buffer("head_draw", head_draw.contiguous(), persistent=False)
        self.register_buffer("cell_draw", cell_draw.contiguous(), persistent=False)
        self.register_buffer("head_aux_features", w[:, n_ctx:n_feat].contiguous(), persistent=False)
        self.register_buffer("head_aux", cell_w[:, s:].contiguous(), persistent=False)  # empty without aux features
        self.register_buffer("head_bias", model.head.bias.detach().clone(), persistent=False)
        # a 1 x 1 reduction and the head's per-draw share: one matrix product over the per-draw
        # channels, (f²·2S + n_ctx) -> (k + f²·S), each position read once (rows: reduction, then head)
        self.k = self.stem.conv.out_channels if self.stem.conv.kernel_size == (1, 1) else 0
        if self.k:
            joint = torch.cat([self.stem.conv.weight.detach()[:, :, 0, 0], HEAD_GAIN * head_draw], 0)
            self.register_buffer("joint_weight", joint.contiguous(), persistent=False)
            bias = self.stem.conv.bias
            self.register_buffer("joint_bias", None if bias is None else
                                 torch.cat([bias.detach(), joint.new_zeros(w.shape[0])]).view(1, -1, 1),
                                 persistent=False)
            self.stem.computed_outside = True
        self._draw_buffer: Optional[torch.Tensor] = None
        self.dtype = torch.float32  # of the backbone (:meth:`use_bfloat16`)

    def use_bfloat16(self) -> "SharedAuxModel":
        """Run the backbone (and its stem's aux share) in bf16; the context features, the head
        and the aux terms' logits stay float32. Faster where bf16 is native, not exact: see
        ``bench infer``."""
        self.backbone.to(torch.bfloat16)
        self.dtype = torch.bfloat16
        return self

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Whether ``model`` is a context model whose backbone has a splittable first convolution."""
        return isinstance(model, ContextModel) and _first_conv(model.backbone) is not None

    @staticmethod
    def _linear(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A 1 × 1 convolution without bias: (O, C) weights on (B, C, H, W), as one matrix product
        over the channels (channel planes, or channels-last tensors as they are)."""
        b, c, h, wd = x.shape
        if not w.shape[1]:
            return x.new_zeros(b, w.shape[0], h, wd)
        if x.is_contiguous():  # channel planes: one (O, C) x (C, H·W) product per batch item
            return torch.matmul(w.to(x.dtype), x.view(b, c, h * wd)).view(b, -1, h, wd)
        return torch.matmul(x.permute(0, 2, 3, 1), w.t().to(x.dtype)).permute(0, 3, 1, 2)

    def aux_terms(self, aux: torch.Tensor) -> AuxTerms:
        """The shares of one window's aux bands (1, A, H, W), as in the model inputs (0 outside
        the valid area)."""
        cells = aux.contiguous(memory_format=torch.channels_last)
        f = self.cell_shuffle
        feats = self.aux_context.of_bands(block_means(cells, f))
        both = torch.cat([cell_blocks(cells, f), feats], dim=1)
        stem = (F.conv2d(both, self.stem_aux_weight.to(both.dtype), None, **self.stem_args).to(self.dtype)
                if both.shape[1] else None)
        logits = self._linear(self.head_aux_features, feats) + self.head_bias.to(feats.dtype).view(1, -1, 1, 1)
        cell_logits = None
        if self.head_aux.shape[1]:
            if f == 1:
                logits = logits + self._linear(self.head_aux, cells)
            else:
                cell_logits = (HEAD_GAIN * self._linear(self.head_aux, cells)).contiguous()
        logits = HEAD_GAIN * logits
        if self.prior is not None:
            logits = logits + self.prior(both)
        return AuxTerms(stem, logits.contiguous(), cell_logits)  # channel planes, as the per-draw head share

    def per_draw_channels(self, draw_inputs: torch.Tensor) -> torch.Tensor:
        """The per-draw channels (B, f²·2S + n_ctx, H/f, W/f), each channel plane contiguous:
        ``draw_inputs`` (as f × f cell blocks) and their context features, written into a buffer kept
        between calls (a fresh one per draw would cost more than the writes: a new allocation's pages
        are faulted in each time). On a CPU the features' element-wise steps run in bands of :data:`BAND_ROWS` rows."""
        f = self.cell_shuffle
        b, _, h, w = draw_inputs.shape
        c = 2 * self.n_species * f * f
        shape = (b, c + self.context.channels, h // f, w // f)
        buf = self._draw_buffer
        if buf is None or buf.shape != shape or buf.device != draw_inputs.device:
            buf = self._draw_buffer = torch.empty(shape, device=draw_inputs.device)
        blocks = buf[:, :c]
        if f == 1:
            blocks.copy_(draw_inputs)
            means = blocks
        else:  # the cells of each block copied straight into its f² channels (pixel unshuffle's order)
            blocks.view(b, -1, f, f, h // f, w // f).copy_(
                draw_inputs.view(b, -1, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4))
            means = blocks.view(b, -1, f * f, h // f, w // f).mean(2)  # block_means (bit-equal on 0/1 inputs)
        self.context.features_into(means, buf[:, c:], BAND_ROWS if draw_inputs.device.type == "cpu" else None)
        return buf

    def forward(self, draw_inputs: torch.Tensor, terms: AuxTerms) -> torch.Tensor:
        """Logits (B, S, H, W) of a batch of draws of one window: ``draw_inputs`` the first 2S
        channels of the model inputs (visible presence, hidden indicators)."""
        x = self.per_draw_channels(draw_inputs)
        b, d, h, w = x.shape
        if self.k:  # the reduction and the head's share in one product; the backbone from the reduction on
            y = torch.matmul(self.joint_weight, x.view(b, d, h * w))
            if self.joint_bias is not None:
                y += self.joint_bias
            y = y.view(b, -1, h, w)
            first = torch.empty((b, self.k, h, w), device=x.device).contiguous(memory_format=torch.channels_last)
            if terms.stem is None:
                first.copy_(y[:, :self.k])
            else:
                torch.add(y[:, :self.k], terms.stem.float(), out=first)
            logits = self.backbone(first.to(self.dtype)).float()
            if self.cell_shuffle == 1:
                return logits + y[:, self.k:] + terms.logits
            return self._per_cell(logits, y[:, self.k:] + terms.logits, draw_inputs, terms)
        self.stem.aux = terms.stem
        try:
            logits = self.backbone(x.contiguous(memory_format=torch.channels_last).to(self.dtype)).float()
        finally:
            self.stem.aux = None
        head = torch.matmul(HEAD_GAIN * self.head_draw, x.view(b, d, h * w)).view(b, -1, h, w)
        if self.cell_shuffle == 1:
            return logits + head + terms.logits
        return self._per_cell(logits, head + terms.logits, draw_inputs, terms)

    def _per_cell(self, logits: torch.Tensor, head: torch.Tensor, draw_inputs: torch.Tensor,
                  terms: AuxTerms) -> torch.Tensor:
        """The backbone's per-block logits plus the block head's (channel planes) back to the cells,
        plus the cell head's share: the cells' logits as channel planes (what the calibration and
        the blending read fastest)."""
        f = self.cell_shuffle
        b, _, h, w = logits.shape
        s = self.n_species
        out = torch.empty((b, s, h * f, w * f), device=logits.device, dtype=logits.dtype)

        def shuffled(t: torch.Tensor) -> torch.Tensor:  # block channel c·f² + i·f + j → cell (c, y·f + i, x·f + j)
            return t.view(b, s, f, f, h, w).permute(0, 1, 4, 2, 5, 3)
        torch.add(shuffled(logits), shuffled(head), out=out.view(b, s, h, f, w, f))  # the sum and the shuffle, one pass
        cells = out.view(b, s, h * f * w * f)
        cells.baddbmm_(self.cell_draw.to(out.dtype).expand(b, -1, -1), draw_inputs[:, :s].reshape(b, s, -1))
        if terms.cell_logits is not None:
            out += terms.cell_logits
        return out
