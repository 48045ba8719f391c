"""Model factory: a registry of architectures that all map (B, 2S+A, H, W) inputs to (B, S, H, W) logits."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from ..data.grid import WINDOW_MULTIPLE
from .context import ContextModel
from .lean_input import (ENCODER_STAGES_OPTION, INPUT_REDUCTION_OPTION, UNET_LEAN_OPTIONS, ReducedInput,
                         apply_unet_lean_options, pop_unet_lean_options)
from .pu import PU_OPTION, PUModel, pu_spec  # PU_OPTION: a second M3 instance for survey coverage
from .vit import build_vit

RESNET_DEPTHS = (18, 34, 50, 101, 152)
CONTEXT_OPTION = "context_sigmas"  # model options shared by every architecture
AUX_CONTEXT_OPTION = "aux_sigmas"
AUX_PRIOR_OPTION = "aux_prior"  # width of the aux-only prior branch (core.model.context.AuxPrior); 0: none
AUX_PRIOR_ADDED_OPTION = "aux_prior_added"  # add its logits to the model's (default: a separate output)
CELL_SHUFFLE_OPTION = "cell_shuffle"  # the backbone and head on f x f blocks of cells (core.model.context.ContextModel)


@dataclass
class ModelConfig:
    """What to build. ``arch`` names a registered builder; ``options`` are its own settings."""

    arch: str = "unet"
    in_channels: int = 0
    classes: int = 0
    encoder_depth: int = 18
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**d)


def build_unet(cfg: ModelConfig) -> nn.Module:
    """The M3 model: smp U-Net with a ResNet encoder, no pretrained weights (no hub downloads);
    the lean options ``stem_kernel`` and ``encoder_stages`` as in :mod:`core.model.lean_input`."""
    import segmentation_models_pytorch as smp

    if cfg.encoder_depth not in RESNET_DEPTHS:
        raise ValueError(f"encoder depth {cfg.encoder_depth} not one of {RESNET_DEPTHS}")
    options = dict(cfg.options)
    lean = pop_unet_lean_options(options)
    unet = smp.Unet(encoder_name=f"resnet{cfg.encoder_depth}", encoder_weights=None,
                    in_channels=cfg.in_channels, classes=cfg.classes, **options)
    return apply_unet_lean_options(unet, lean) if lean else unet


class NoBackbone(nn.Module):
    """Zero logits: with context features, the model is then their linear head alone (an ablation)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.classes, x.shape[2], x.shape[3])


MODEL_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet": build_unet, "vit": build_vit, "none": lambda cfg: NoBackbone(cfg.classes)}


def _reduced(builder: Callable[[ModelConfig], nn.Module], k: int) -> Callable[[ModelConfig], nn.Module]:
    """``builder`` behind a 1 x 1 convolution of its inputs to ``k`` channels."""
    return lambda cfg: ReducedInput(cfg.in_channels, k, lambda channels: builder(replace(cfg, in_channels=channels)))


def build_model(cfg: ModelConfig) -> nn.Module:
    """The registered architecture; with ``options["context_sigmas"]`` (a list of cell counts),
    wrapped in :class:`core.model.context.ContextModel` (neighbourhood-context features and head;
    ``options["aux_sigmas"]`` adds the aux bands' local mean and spread to both); with
    ``options["input_reduction"]`` (k), the backbone sits behind a 1 × 1 convolution to k channels
    (:class:`core.model.lean_input.ReducedInput`); with ``options["cell_shuffle"]`` (f), the
    backbone and head work on f × f blocks of cells; with ``options["pu"]``, that model is the
    presence instance of a :class:`core.model.pu.PUModel`."""
    try:
        builder = MODEL_BUILDERS[cfg.arch]
    except KeyError:
        raise ValueError(f"unknown architecture '{cfg.arch}'; known: {', '.join(MODEL_BUILDERS)}") from None
    options = dict(cfg.options)
    pu = options.pop(PU_OPTION, None)
    if pu:
        if options.get(AUX_PRIOR_OPTION):
            raise ValueError(f"the {PU_OPTION} and {AUX_PRIOR_OPTION} model options do not go together")
        return PUModel(build_model(replace(cfg, options=options)), cfg.classes, pu_spec(pu))
    sigmas = options.pop(CONTEXT_OPTION, None)
    aux_sigmas = options.pop(AUX_CONTEXT_OPTION, None) or ()
    aux_prior = int(options.pop(AUX_PRIOR_OPTION, 0) or 0)
    aux_prior_added = bool(options.pop(AUX_PRIOR_ADDED_OPTION, False))
    reduction = options.pop(INPUT_REDUCTION_OPTION, None)
    cell_shuffle = int(options.pop(CELL_SHUFFLE_OPTION, 1))
    if reduction:
        builder = _reduced(builder, int(reduction))
    if cfg.arch == "none" and not sigmas:
        raise ValueError(f"architecture 'none' needs the {CONTEXT_OPTION} model option (it is the context head alone)")
    if (aux_sigmas or aux_prior or cell_shuffle != 1) and not sigmas:
        raise ValueError(f"the {AUX_CONTEXT_OPTION}, {AUX_PRIOR_OPTION} and {CELL_SHUFFLE_OPTION} model options "
                         f"need {CONTEXT_OPTION} too")
    if cell_shuffle > 1 and cfg.arch == "unet":
        stages = int(options.get(ENCODER_STAGES_OPTION, options.get("encoder_depth", 5)))
        if cell_shuffle * 2 ** stages > WINDOW_MULTIPLE:
            raise ValueError(f"{CELL_SHUFFLE_OPTION} {cell_shuffle} with {stages} encoder stages halves the cells "
                             f"{stages} times more: tiles and windows are multiples of {WINDOW_MULTIPLE} cells, so "
                             f"give {ENCODER_STAGES_OPTION} {int(math.log2(WINDOW_MULTIPLE // cell_shuffle))} or fewer")
    if not sigmas:
        return builder(replace(cfg, options=options))
    return ContextModel(lambda channels, classes: builder(replace(cfg, in_channels=channels, classes=classes,
                                                                  options=options)),
                        cfg.in_channels, cfg.classes, sigmas, aux_sigmas, aux_prior, aux_prior_added, cell_shuffle)


SHARED_OPTIONS = (CONTEXT_OPTION, AUX_CONTEXT_OPTION, AUX_PRIOR_OPTION, AUX_PRIOR_ADDED_OPTION, PU_OPTION,
                  INPUT_REDUCTION_OPTION, CELL_SHUFFLE_OPTION)
FIXED_UNET_ARGUMENTS = ("encoder_name", "encoder_weights", "in_channels", "classes")


def model_option_names(arch: str) -> set[str]:
    """The model options an architecture takes (its own and :data:`SHARED_OPTIONS`)."""
    if arch == "unet":
        import inspect

        import segmentation_models_pytorch as smp

        # its **kwargs go to timm encoders only (ResNet encoders ignore them): not options here
        params = inspect.signature(smp.Unet.__init__).parameters.values()
        own = ({p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
               - set(FIXED_UNET_ARGUMENTS)) | {"decoder_use_batchnorm"} | set(UNET_LEAN_OPTIONS)
        # ("decoder_use_batchnorm": the older spelling smp still reads)
    elif arch == "vit":
        from .vit import DEFAULTS

        own = set(DEFAULTS) | {"dropout"}
    else:
        own = set()
    return set(SHARED_OPTIONS) | own


def unknown_model_options(arch: str, options: dict[str, Any]) -> list[str]:
    """The options an architecture does not take, sorted."""
    return sorted(set(options) - model_option_names(arch))
