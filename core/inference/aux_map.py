"""The aux-only map as a product map: per species, gradient boosting on the stack's aux bands
(:mod:`core.evaluation.aux_boosting`), written in predict's GeoTIFF layout.

One implementation for ``train_cli.py aux-map`` and the Processing algorithm *Aux-only map*. It
takes no record as input: a map of what the aux layers say, which the discovery test (README)
finds ranks some held-out surveys better than M3's maps; ``combine-maps`` (*Combine maps*) adds
it to M3's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.stack import Stack
from ..errors import InputError
from ..progress import Progress


@dataclass
class AuxMap:
    """Per species, the mean and spread over the fits' seeds of the aux-only probability."""

    species: list[str]
    mean: np.ndarray        # (S, H, W), NaN outside valid cells
    std: np.ndarray
    method: str
    seeds: int


def make_aux_map(stack: Stack, species: Optional[Sequence[str]] = None, seeds: int = 1, out_of_fold: int = 0,
                 fold_block: int = 64, progress: Optional[Progress] = None) -> AuxMap:
    """Fit and map each species (default: all the stack's); ``out_of_fold`` K ≥ 2 maps each of K
    spatial folds (blocks of ``fold_block`` cells) with a fit on the others."""
    from ..evaluation.aux_boosting import aux_boosting_maps, out_of_fold_maps

    if seeds < 1:
        raise InputError("Give at least 1 seed for the aux-only map.")
    if out_of_fold == 1 or out_of_fold < 0:
        raise InputError("Out of fold takes K >= 2 folds (or 0 for one fit on all cells).")
    if not stack.aux_bands:
        raise InputError("The stack has no aux band; the aux-only map needs some (build it with aux layers).")
    species = list(species or stack.species)
    unknown = [s for s in species if s not in stack.species]
    if unknown:
        raise InputError(f"The stack has no species {unknown}; it has {stack.species}.")
    targets = np.stack([stack.presence[stack.species.index(s)].astype(bool) for s in species])
    method = "aux-only gradient boosting"
    if out_of_fold:
        mean, std = out_of_fold_maps(stack, targets, list(range(seeds)), out_of_fold, fold_block, progress)
        method += f", out of fold ({out_of_fold} spatial folds of {fold_block}-cell blocks)"
    else:
        mean, std = aux_boosting_maps(stack, targets, list(range(seeds)), progress=progress)
    return AuxMap(species, mean, std, method, seeds)


def write_aux_map(aux_map: AuxMap, stack: Stack, out: str | Path) -> None:
    """Write the map in predict's layout (mean_*/std_* bands), tagged with the stack it came from."""
    from ..data.prediction_io import prediction_file
    from ..data.stack import stack_fingerprint

    tags = {"species": aux_map.species, "models": [], "draws": 0, "evaluations": aux_map.seeds,
            "hide": "nothing: aux-only gradient boosting (no model, no record as input)",
            "method": aux_map.method, "aux_bands": stack.aux_names, "seeds": aux_map.seeds,
            "stack": stack_fingerprint(stack)}  # clusters and combine-maps check their stack
    with prediction_file(out, stack.grid, aux_map.species, tags) as writer:
        writer.write_rows(0, aux_map.mean, aux_map.std)


def sklearn_missing() -> bool:
    """True when scikit-learn, which the aux-only map fits with, cannot be imported."""
    import importlib.util

    return importlib.util.find_spec("sklearn") is None
