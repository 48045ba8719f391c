"""The aux-only map as a product map: per species, gradient boosting on the stack's aux bands
(:mod:`core.inference.aux_boosting`), written in predict's GeoTIFF layout.

One implementation for ``train_cli.py aux-map``, the Processing algorithm *Aux-only map* and the
dock's "aux-only map beside M3's" (:func:`aux_map_around`). It takes no record as input: a map of
what the aux layers say, which the discovery test (README) finds ranks some held-out surveys better
than M3's maps; ``combine-maps`` (*Combine maps*) adds it to M3's.

An extent limits the work (:func:`read_for_extent`): only its cells are mapped, and only they and
the cells around them (grown on every side by the extent's larger side, as the dock grows a hidden
region: :data:`FIT_MARGIN`) are read and fitted on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..data.stack import Stack
from ..errors import InputError
from ..progress import Progress
from .aux_boosting import Window

if TYPE_CHECKING:
    from ..data.grid import Grid
    from ..masks.hiding import GeometryRegion
    from .layer_inputs import LayerInputs

FIT_MARGIN = 1.0        # the fit window: the mapped window grown on every side by this × its larger side
METHOD = "aux-only gradient boosting"


@dataclass
class AuxMap:
    """Per species, the mean and spread over the fits' seeds of the aux-only probability, on the
    stack's ``window`` (row0, col0, height, width; None: the whole stack)."""

    species: list[str]
    mean: np.ndarray        # (S, H, W), NaN outside valid cells
    std: np.ndarray
    method: str
    seeds: int
    window: Optional[Window] = None


def make_aux_map(stack: Stack, species: Optional[Sequence[str]] = None, seeds: int = 1, out_of_fold: int = 0,
                 fold_block: int = 64, progress: Optional[Progress] = None,
                 window: Optional[Window] = None) -> AuxMap:
    """Fit and map each species (default: all the stack's) on the stack's valid cells; with
    ``window``, map only that window (the fit still learns from the whole stack given: read it
    with :func:`read_for_extent`). ``out_of_fold`` K ≥ 2 maps each of K spatial folds (blocks of
    ``fold_block`` cells) with a fit on the others."""
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
    method = METHOD
    if out_of_fold:
        mean, std = out_of_fold_maps(stack, targets, list(range(seeds)), out_of_fold, fold_block, progress)
        if window is not None:
            r0, c0, h, w = window
            mean, std = mean[:, r0:r0 + h, c0:c0 + w], std[:, r0:r0 + h, c0:c0 + w]
        method += f", out of fold ({out_of_fold} spatial folds of {fold_block}-cell blocks)"
    else:
        mean, std = aux_boosting_maps(stack, targets, list(range(seeds)), window, progress)
    if window is not None:
        method += ", fitted on the extent and the cells around it"
    return AuxMap(species, mean, std, method, seeds, window)


def write_aux_map(aux_map: AuxMap, stack: Stack, out: str | Path) -> None:
    """Write the map in predict's layout (mean_*/std_* bands) on its window of the stack, tagged
    with that stack (window) it came from."""
    from ..data.prediction_io import prediction_file
    from ..data.stack import stack_fingerprint

    mapped = stack.window(*aux_map.window) if aux_map.window is not None else stack
    tags = {"species": aux_map.species, "models": [], "draws": 0, "evaluations": aux_map.seeds,
            "hide": "nothing: aux-only gradient boosting (no model, no record as input)",
            "method": aux_map.method, "aux_bands": stack.aux_names, "seeds": aux_map.seeds,
            "stack": stack_fingerprint(mapped)}  # clusters and combine-maps check their stack
    with prediction_file(out, mapped.grid, aux_map.species, tags) as writer:
        writer.write_rows(0, aux_map.mean, aux_map.std)


def extent_window(grid: "Grid", extent: Sequence[float], crs=None) -> Window:
    """(row0, col0, height, width) of the grid's cells that ``extent`` (left, bottom, right, top in
    ``crs``, default the grid's) overlaps; an :class:`InputError` when it overlaps none."""
    left, bottom, right, top = (float(v) for v in extent)
    if not (left < right and bottom < top):
        raise InputError(f"The extent {left:g}, {bottom:g}, {right:g}, {top:g} is empty: give left < right "
                         "and bottom < top (left bottom right top).")
    if crs is not None and str(crs):
        from rasterio.crs import CRS
        from rasterio.warp import transform_bounds

        try:
            crs = CRS.from_user_input(crs)
            if crs != grid.crs:
                left, bottom, right, top = transform_bounds(crs, grid.crs, left, bottom, right, top, densify_pts=21)
        except Exception as e:  # rasterio/GDAL transform errors
            raise InputError(f"The extent cannot be transformed to the stack's CRS ({e}).") from None
    t, res = grid.transform, grid.resolution
    values = ((left - t.c) / res, (right - t.c) / res, (t.f - top) / res, (t.f - bottom) / res)
    if not all(math.isfinite(v) for v in values):
        raise InputError("The extent lies outside the area where the stack's CRS is defined.")
    c0, c1 = max(0, math.floor(values[0])), min(grid.width, math.ceil(values[1]))
    r0, r1 = max(0, math.floor(values[2])), min(grid.height, math.ceil(values[3]))
    if r0 >= r1 or c0 >= c1:
        gl, gb, gr, gt = grid.bounds
        raise InputError(f"The extent does not overlap the stack (the stack covers {gl:.0f}, {gb:.0f}, {gr:.0f}, "
                         f"{gt:.0f} in {grid.crs.to_string()}): choose an extent on the stack's area.")
    return r0, c0, r1 - r0, c1 - c0


def fit_window(shape: tuple[int, int], window: Window, margin: float = FIT_MARGIN) -> Window:
    """The window the map of ``window`` is fitted on: it grown on every side by ``margin`` × its
    larger side, clipped to the grid (the dock's choice for a hidden region: the nearest window;
    docs/results/discovery/combinations_and_model_changes, part E)."""
    r0, c0, h, w = window
    pad = int(math.ceil(margin * max(h, w)))
    fr0, fc0 = max(0, r0 - pad), max(0, c0 - pad)
    fr1, fc1 = min(shape[0], r0 + h + pad), min(shape[1], c0 + w + pad)
    return fr0, fc0, fr1 - fr0, fc1 - fc0


def read_for_extent(path: str | Path, extent: Optional[Sequence[float]] = None,
                    crs=None) -> tuple[Stack, Optional[Window]]:
    """The stack to fit on and the window of it to map: the whole stack and None without an
    extent; else only the cells around the extent (:func:`fit_window`), read alone from the file,
    and the extent's window in them."""
    if extent is None:
        return Stack.read(path), None
    from ..data.stack_sources import GeoTiffStackSource

    source = GeoTiffStackSource(path)
    try:
        mapped = extent_window(source.grid, extent, crs)
        fr0, fc0, fh, fw = fit_window(source.grid.shape, mapped)
        stack = source.read_window(fr0, fc0, fh, fw)
    finally:
        source.close()
    r0, c0, h, w = mapped
    return stack, (r0 - fr0, c0 - fc0, h, w)


def sklearn_missing() -> bool:
    """True when scikit-learn, which the aux-only map fits with, cannot be imported."""
    import importlib.util

    return importlib.util.find_spec("sklearn") is None


def region_aux_map(stack: Stack, species: Sequence[str], hidden_cells: np.ndarray, seed: int = 0,
                   progress: Optional[Progress] = None) -> np.ndarray:
    """(S, H, W) aux-only probability of each species on ``hidden_cells`` (H × W bool; NaN
    elsewhere), fitted on the stack's other valid cells only: it never sees the records of the
    region it is compared on (the dock's "aux-only map beside M3's"). Cancel through
    ``progress.cancelled()`` (looked at during each fit and between strips)."""
    from .aux_boosting import aux_boosting_maps

    if not (hidden_cells & stack.valid).any():
        return np.full((len(species),) + stack.grid.shape, np.nan, np.float32)
    targets = np.stack([stack.presence[stack.species.index(s)].astype(bool) for s in species])
    mean, _ = aux_boosting_maps(stack, targets, [seed], progress=progress, fit_on=~hidden_cells, map_on=hidden_cells)
    return mean


def aux_map_around(inputs: "LayerInputs", region: "GeometryRegion", grid: "Grid", hidden: np.ndarray,
                   species: Sequence[str], seed: int = 0, progress: Optional[Progress] = None) -> np.ndarray:
    """(S, H, W) aux-only map of ``species`` on the ``hidden`` cells of a run's ``grid`` (NaN
    elsewhere), fitted on the map layers' cells around it: the region grown on every side by the
    run grid's larger side, less the hidden cells (a run's own grid holds too few records to fit)."""
    from .layer_inputs import assemble_stack, context_grid, window_in

    wide = context_grid(region, grid.crs, grid.resolution, max(grid.height, grid.width))
    stack = assemble_stack(inputs, wide)
    r0, c0, h, w = window_in(wide, grid)
    cells = np.zeros(wide.shape, bool)
    cells[r0:r0 + h, c0:c0 + w] = hidden
    return region_aux_map(stack, species, cells, seed, progress)[:, r0:r0 + h, c0:c0 + w]
