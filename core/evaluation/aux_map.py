"""The aux-only map as a product map: per species, gradient boosting on the stack's aux bands
(:mod:`core.evaluation.aux_boosting`), written in predict's GeoTIFF layout.

One implementation for ``train_cli.py aux-map``, the Processing algorithm *Aux-only map* and the
dock's "aux-only map beside M3's" (:func:`aux_map_around`). It
takes no record as input: a map of what the aux layers say, which the discovery test (README)
finds ranks some held-out surveys better than M3's maps; ``combine-maps`` (*Combine maps*) adds
it to M3's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..data.stack import Stack
from ..errors import InputError
from ..progress import Progress

if TYPE_CHECKING:
    from ..data.grid import Grid
    from ..masks.hiding import GeometryRegion
    from ..inference.layer_inputs import LayerInputs


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
    from .aux_boosting import aux_boosting_maps, out_of_fold_maps

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


def region_aux_map(stack: Stack, species: Sequence[str], hidden_cells: np.ndarray, seed: int = 0,
                   progress: Optional[Progress] = None) -> np.ndarray:
    """(S, H, W) aux-only probability of each species on ``hidden_cells`` (H × W bool; NaN
    elsewhere), fitted on the stack's other valid cells only: it never sees the records of the
    region it is compared on (the dock's "aux-only map beside M3's"). Cancel through
    ``progress.cancelled()`` (looked at during each fit)."""
    from .aux_boosting import AuxBoosting, aux_features

    rows, cols = np.nonzero(hidden_cells & stack.valid)
    out = np.full((len(species),) + stack.grid.shape, np.nan, np.float32)
    if not len(rows):
        return out
    x = aux_features(stack, rows, cols)
    for i, sym in enumerate(species):
        target = stack.presence[stack.species.index(sym)].astype(bool)
        out[i, rows, cols] = AuxBoosting.fit(stack, target, seed, cells=~hidden_cells, progress=progress).predict(x)
    return out


def aux_map_around(inputs: "LayerInputs", region: "GeometryRegion", grid: "Grid", hidden: np.ndarray,
                   species: Sequence[str], seed: int = 0, progress: Optional[Progress] = None) -> np.ndarray:
    """(S, H, W) aux-only map of ``species`` on the ``hidden`` cells of a run's ``grid`` (NaN
    elsewhere), fitted on the map layers' cells around it: the region grown on every side by the
    run grid's larger side, less the hidden cells (a run's own grid holds too few records to fit)."""
    from ..inference.layer_inputs import assemble_stack, context_grid, window_in

    wide = context_grid(region, grid.crs, grid.resolution, max(grid.height, grid.width))
    stack = assemble_stack(inputs, wide)
    r0, c0, h, w = window_in(wide, grid)
    cells = np.zeros(wide.shape, bool)
    cells[r0:r0 + h, c0:c0 + w] = hidden
    return region_aux_map(stack, species, cells, seed, progress)[:, r0:r0 + h, c0:c0 + w]
