"""Scoring a model on hold-out tiles while it trains: the seeded mask draws of a hold-out part,
the hidden cells a predictor scores under them, and the pooled Dice-maximising threshold."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..masks.masking import SCENARIOS, MaskSpec, draw_masks, generator_for
from ..masks.tiles import StackTensors
from ..model.metrics import HiddenCells
from ..model.predictors import Predictor
from ..progress import Progress, check_cancelled

EVAL_SEED = 20240917  # the mask draws of evaluation; fixed so that every run scores the same masks


@dataclass
class HoldoutMasks:
    """Tiles of one part of the hold-out (val or test) and their seeded mask draws.

    For the scenarios that hide species, with one species hidden per draw, the species cycles
    over draws ((tile + draw) mod S), so that ``draws = S`` hides every species on every tile
    exactly once.
    """

    origins: np.ndarray
    tile_size: int
    spec: MaskSpec
    draws: int
    seed: int = EVAL_SEED

    def hidden(self, scenario: str, draw: int, n_species: int) -> torch.Tensor:
        """(n_tiles, S, K, K) bool hidden cells of one scenario and draw."""
        n, k = len(self.origins), self.tile_size
        spec = self.spec.only(scenario)
        forced = None
        if scenario != "region" and spec.species_k == (1, 1):
            idx = (torch.arange(n) + draw) % n_species
            forced = torch.nn.functional.one_hot(idx, n_species).bool()
        gen = generator_for(self.seed, SCENARIOS.index(scenario), draw)
        hidden, _ = draw_masks(spec, n, n_species, k, k, gen, species=forced)
        return hidden


def collect(predictor: Predictor, tensors: StackTensors, masks: HoldoutMasks, species: list[str],
            scenarios: Sequence[str] = SCENARIOS, chunk: int = 64,
            progress: Optional[Progress] = None, calibrated: bool = True) -> dict[str, HiddenCells]:
    """Run ``predictor`` on every tile, scenario and draw; collect hidden valid cells (a model's
    probabilities on its card's calibrated scale unless ``calibrated`` is False)."""
    out = {sc: HiddenCells(species) for sc in scenarios}
    origins = torch.from_numpy(masks.origins)
    for sc in scenarios:
        for d in range(masks.draws):
            hidden = masks.hidden(sc, d, len(species))
            for i in range(0, len(origins), chunk):
                check_cancelled(progress)
                batch = tensors.gather(origins[i:i + chunk], masks.tile_size)
                h = hidden[i:i + chunk].to(batch.presence.device)
                probs = predictor.predict(batch.presence, h, batch.aux, batch.valid)
                if calibrated and hasattr(predictor, "calibrate"):  # the scale the model's maps are written in
                    probs = predictor.calibrate(probs, sc)
                out[sc].add(probs, batch.presence, h, batch.valid)
            if progress is not None:
                progress.advance(1)
    return out


def pooled_threshold(cells: dict[str, HiddenCells]) -> float:
    """The Dice-maximising threshold over all scenarios' hidden cells pooled."""
    from ..model.metrics import best_dice_threshold

    arrays = [c.arrays() for c in cells.values()]
    return best_dice_threshold(np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays]))
