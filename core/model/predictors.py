"""One interface for everything that infills hidden cells: trained models and baselines.

Evaluation, ``compare``, ``sweep`` and the interdependence matrix call only
:meth:`Predictor.predict`, so a trained U-Net, a ViT, kriging and the simple baselines are
scored by the same metrics code on the same masks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

import torch
from torch import nn

from ..device import exact_float32
from .inputs import model_inputs, uses_aux


@runtime_checkable
class Predictor(Protocol):
    """Maps a masked batch to probabilities of presence.

    presence (B, S, H, W) 0/1 (true values; hidden cells must not be read), hidden (B, S, H, W)
    bool, aux (B, A, H, W) float, valid (B, H, W) bool, on the evaluation device (the GPU when
    there is one) → probabilities (B, S, H, W) float32 in [0, 1] on the CPU. Only hidden valid
    cells are scored.
    """

    name: str

    def predict(self, presence: torch.Tensor, hidden: torch.Tensor, aux: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor: ...


def visible_only(presence: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The presence a predictor may see: 0 where hidden or outside valid (float32)."""
    return (presence.float() * (~hidden).float() * valid.unsqueeze(1).float())


class ModelPredictor:
    """A trained model (U-Net, ViT, any registered architecture) as a :class:`Predictor`.

    Builds inputs with :func:`core.model.inputs.model_inputs` (the training encoding), drops the aux
    bands for a model trained without them, runs in chunks of ``batch_size`` under
    ``torch.no_grad`` in float32 (on CUDA without TF32: scores equal a CPU's within float rounding)
    and returns sigmoid probabilities on the CPU.
    """

    def __init__(self, model: nn.Module, name: str, in_channels: int, n_species: int,
                 device: Optional[torch.device] = None, batch_size: int = 16) -> None:
        self.model, self.name = model.eval(), name
        self.with_aux = uses_aux(in_channels, n_species)
        self.device = device or next(model.parameters()).device
        self.batch_size = batch_size
        self.model.to(self.device)
        self.calibration = None  # the card's :class:`~core.model.calibration.Calibration` (see ``from_file``)

    @classmethod
    def from_file(cls, path: str | Path, name: Optional[str] = None,
                  device: Optional[torch.device] = None) -> "ModelPredictor":
        from .model_file import load_model

        model, card = load_model(path, device)
        cfg = card.model_config
        out = cls(model, name or Path(path).stem, cfg.in_channels, cfg.classes, device)
        out.calibration = card.calibration_maps()
        return out

    def calibrate(self, probs: torch.Tensor, scenario: Optional[str]) -> torch.Tensor:
        """``probs`` on the card's calibrated scale for ``scenario`` (unchanged without one)."""
        return probs if self.calibration is None else self.calibration.apply(probs, scenario)

    @torch.no_grad()
    def predict(self, presence: torch.Tensor, hidden: torch.Tensor, aux: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        if not self.with_aux:
            aux = aux[:, :0]
        out = []
        with exact_float32(self.device):
            for i in range(0, presence.shape[0], self.batch_size):
                sl = slice(i, i + self.batch_size)
                x = model_inputs(presence[sl].to(self.device), hidden[sl].to(self.device),
                                 aux[sl].to(self.device), valid[sl].to(self.device))
                out.append(torch.sigmoid(self.model(x).float()).cpu())
        return torch.cat(out, 0)


class WholeSpeciesAuxPredictor:
    """The "aux layers only for species masked entirely" ablation, read as routing.

    For a (tile, species) whose layer is hidden over every valid cell of the tile (the "no
    records here" case) it returns the prediction of ``with_aux`` (the U-Net that sees the aux
    bands); for every other hidden cell that of ``without_aux`` (the U-Net trained without
    them). So the aux bands inform only species masked entirely.
    """

    def __init__(self, with_aux: Predictor, without_aux: Predictor, name: str = "unet_aux_whole_species"):
        self.with_aux, self.without_aux, self.name = with_aux, without_aux, name

    def predict(self, presence: torch.Tensor, hidden: torch.Tensor, aux: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        """Each model runs only when some (tile, species) needs it; cells that are not hidden
        get 0 when neither model ran over them (they are never scored)."""
        v = valid.unsqueeze(1).to(hidden.device)
        scored = (hidden & v).flatten(2).any(2)                      # (B, S): has hidden valid cells
        whole = scored & (hidden | ~v).flatten(2).all(2)              # hidden over every valid cell
        out = torch.zeros(hidden.shape, dtype=torch.float32)
        if bool(whole.any()):
            out = torch.where(whole[..., None, None].cpu(), self.with_aux.predict(presence, hidden, aux, valid), out)
        if bool((scored & ~whole).any()):
            rest = (~whole)[..., None, None].cpu()
            out = torch.where(rest, self.without_aux.predict(presence, hidden, aux, valid), out)
        return out
