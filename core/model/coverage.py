"""Survey-coverage features: what the observation instance of a PU model sees
(:mod:`core.model.pu`).

They are computed from the model inputs' visible-presence and hidden-indicator channels only
(:func:`core.model.inputs.model_inputs` fills hidden cells with ``HIDDEN_FILL``), never from the
aux bands nor from hidden records, so nothing hidden leaks into the observation instance and the
aux layers stay the presence instance's alone. Per cell:

- whether any species is recorded there among the visible cells (any-species indicator);
- the share of species recorded there among the visible ones (richness of the visible records);
- the share of species visible there (the visibility mask);
- per smoothing scale σ (cells): the Gaussian-weighted share of cells with a visible record of
  any species among visible cells, its logarithm (far from records it falls with the distance to
  the nearest one: a smooth stand-in for a distance-to-record band), and the Gaussian weight of
  visible cells.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .context import FEATURES_PER_SCALE, GaussianScales, shares_at_scales

CELL_FEATURES = 3


class CoverageFeatures(GaussianScales):
    """(B, 2S+A, H, W) model inputs → (B, 3 + 3·len(sigmas), H, W) coverage features."""

    def __init__(self, n_species: int, sigmas: Sequence[float]) -> None:
        if not sigmas:
            raise ValueError("coverage features need at least one sigma")
        super().__init__(sigmas, "coverage")
        self.n_species = n_species

    @property
    def channels(self) -> int:
        return CELL_FEATURES + FEATURES_PER_SCALE * len(self.sigmas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.n_species
        visible_presence = x[:, :s].float()                    # hidden cells hold HIDDEN_FILL (0)
        visible = 1.0 - x[:, s:2 * s].float()
        any_record = visible_presence.amax(1, keepdim=True)
        richness = visible_presence.sum(1, keepdim=True) / s
        visible_share = visible.mean(1, keepdim=True)
        out = [any_record, richness, visible_share]
        out += shares_at_scales(any_record * visible_share, visible_share, self.kernels())
        return torch.cat(out, dim=1).to(x.dtype)
