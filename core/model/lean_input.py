"""The lean input path: fewer multiply-adds per cell and evaluation where the U-Net spends most.

The v0.4.1 bundled model (``bundled`` preset) feeds its ResNet-18 U-Net 110 channels (2S + A inputs, the context
and aux features); at inference the aux share is computed once per window
(:mod:`core.model.shared_aux`), yet each draw still convolves 80 per-draw channels with the
stem's 7 × 7 kernels at half resolution: about half of the model's multiply-adds. Three model
options, each off by default (a model file without them builds and computes exactly as before);
the bundled models v0.5 (``bundled_lean``) and v0.6 (``bundled_blocks``, with the context model's
``cell_shuffle``) use the first two:

- ``input_reduction`` (k): a 1 × 1 convolution from the backbone's inputs to k channels before
  the backbone (:class:`ReducedInput`). It is linear, so the aux share splits off it exactly as
  it did off the stem; the stem then convolves k channels. Any architecture takes it.
- ``stem_kernel`` (7 or 3; U-Net only): the ResNet stem's kernel; 3 is a 3 × 3 stride-2
  convolution (padding 1), 5.4× fewer multiply-adds than smp's 7 × 7.
- ``encoder_stages`` (3–5; U-Net only): how many of the ResNet's five stages run (smp's
  ``encoder_depth``); the decoder gets one block per stage, so ``decoder_channels`` must name as
  many. The stages not run are not built, so the model file holds no unused weights.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

INPUT_REDUCTION_OPTION = "input_reduction"
STEM_KERNEL_OPTION = "stem_kernel"
ENCODER_STAGES_OPTION = "encoder_stages"
UNET_LEAN_OPTIONS = (STEM_KERNEL_OPTION, ENCODER_STAGES_OPTION)
STEM_KERNELS = (3, 7)
REDUCTION_ATTRIBUTE = "input_reduction"  # the 1 x 1 convolution's name in :class:`ReducedInput`


class ReducedInput(nn.Module):
    """A backbone behind a 1 × 1 convolution (no bias) from ``in_channels`` to ``k`` channels: a
    learned low-rank factor of the backbone's first convolution, linear, so what the aux bands
    contribute to it separates exactly (:class:`core.model.shared_aux.SharedAuxModel`)."""

    def __init__(self, in_channels: int, k: int, build: Callable[[int], nn.Module]) -> None:
        super().__init__()
        if not 0 < k:
            raise ValueError(f"{INPUT_REDUCTION_OPTION} must be a positive channel count, got {k}")
        self.input_reduction = nn.Conv2d(in_channels, k, kernel_size=1, bias=False)
        self.net = build(k)

    def forward(self, x):
        return self.net(self.input_reduction(x))


def reduction_of(backbone: nn.Module) -> nn.Conv2d | None:
    """The 1 × 1 input reduction of a (possibly traced and folded) :class:`ReducedInput`, else None."""
    conv = getattr(backbone, REDUCTION_ATTRIBUTE, None)
    return conv if isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.groups == 1 else None


def pop_unet_lean_options(options: dict[str, Any]) -> dict[str, Any]:
    """Move the U-Net's lean options out of ``options`` (the rest goes to smp) and check them;
    ``encoder_stages`` becomes smp's ``encoder_depth``."""
    lean = {k: options.pop(k) for k in UNET_LEAN_OPTIONS if k in options}
    kernel = lean.get(STEM_KERNEL_OPTION)
    if kernel is not None and kernel not in STEM_KERNELS:
        raise ValueError(f"{STEM_KERNEL_OPTION} must be one of {STEM_KERNELS}, got {kernel}")
    stages = lean.get(ENCODER_STAGES_OPTION)
    if stages is not None:
        if stages not in (3, 4, 5):
            raise ValueError(f"{ENCODER_STAGES_OPTION} must be 3, 4 or 5, got {stages}")
        if "encoder_depth" in options:
            raise ValueError(f"give {ENCODER_STAGES_OPTION} or encoder_depth, not both")
        options["encoder_depth"] = int(stages)
    return lean


def apply_unet_lean_options(unet: nn.Module, lean: dict[str, Any]) -> nn.Module:
    """The smp U-Net (ResNet encoder) with its stem kernel and unused stages as ``lean`` says."""
    encoder = unet.encoder
    kernel = lean.get(STEM_KERNEL_OPTION)
    if kernel is not None and kernel != encoder.conv1.kernel_size[0]:
        old = encoder.conv1
        encoder.conv1 = nn.Conv2d(old.in_channels, old.out_channels, kernel, stride=2, padding=kernel // 2, bias=False)
        nn.init.kaiming_normal_(encoder.conv1.weight, mode="fan_out", nonlinearity="relu")
    stages = lean.get(ENCODER_STAGES_OPTION)
    if stages is not None:
        for stage in range(int(stages), 5):  # ResNet stage i+1 is layer{i}; smp never runs those past its depth
            if hasattr(encoder, f"layer{stage}"):
                delattr(encoder, f"layer{stage}")
    return unet


def with_lean_input(model_options: dict[str, Any], lean: dict[str, Any]) -> dict[str, Any]:
    """``model_options`` with the lean options ``lean`` added; with ``encoder_stages`` s, the
    decoder keeps its last s blocks' channels (the blocks of the stages that still run)."""
    out = {**model_options, **lean}
    stages = lean.get(ENCODER_STAGES_OPTION)
    decoder = model_options.get("decoder_channels")
    if stages is not None and decoder is not None and "decoder_channels" not in lean:
        out["decoder_channels"] = list(decoder)[len(decoder) - int(stages):]
    return out
