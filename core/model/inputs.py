"""The model's input encoding, shared by training, evaluation and inference."""
from __future__ import annotations

import torch

HIDDEN_FILL = 0.0  # value of a hidden presence cell in the visible-presence channels


def model_inputs(presence: torch.Tensor, hidden: torch.Tensor, aux: torch.Tensor,
                 valid: torch.Tensor) -> torch.Tensor:
    """Stack (B, 2S+A, H, W) inputs: visible presence (hidden cells = ``HIDDEN_FILL``), one
    hidden-indicator channel per species, and the aux bands; everything 0 outside ``valid``.

    presence (B, S, H, W) 0/1, hidden (B, S, H, W) bool, aux (B, A, H, W), valid (B, H, W) bool.
    """
    v = valid.unsqueeze(1).to(aux.dtype if aux.is_floating_point() else torch.float32)  # float even with no aux band
    p = presence.to(v.dtype)
    h = hidden.to(v.dtype)
    visible = torch.where(hidden, torch.full_like(p, HIDDEN_FILL), p) * v
    return torch.cat([visible, h * v, aux.to(v.dtype) * v], dim=1)


def uses_aux(model_in_channels: int, n_species: int) -> bool:
    """Whether a model of ``model_in_channels`` inputs takes aux bands (2S channels: it does not)."""
    return model_in_channels != 2 * n_species


def draw_inputs(presence: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The per-draw part of :func:`model_inputs`, (B, 2S, H, W) float32: visible presence and
    hidden indicators, 0 outside ``valid``. The same values; for 0/1 presence held as integers
    or bools (the stack's uint8) built from bool steps and one conversion per half, a third of
    the float steps' time per mask draw."""
    if presence.is_floating_point() or HIDDEN_FILL != 0.0:
        return model_inputs(presence, hidden, presence.new_zeros((presence.shape[0], 0) + presence.shape[2:]), valid)
    s = presence.shape[1]
    inside = valid.unsqueeze(1)
    out = torch.empty((presence.shape[0], 2 * s) + tuple(presence.shape[2:]), dtype=torch.float32,
                      device=presence.device)
    shown = torch.logical_not(hidden).logical_and_(inside)
    out[:, :s].copy_(shown.logical_and_(presence.bool()))
    out[:, s:].copy_(hidden & inside)
    return out
