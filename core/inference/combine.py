"""Prediction maps as one: per species, the sum of their log-odds.

Each map's odds are multiplied, as independent pieces of evidence (no weight fitted): e.g. M3's
infill map, which knows the records around a cell, with the aux-only map (``aux-map``), which
knows what the aux layers say. On the discovery test this combination was chosen on validation
surveys (README). The result ranks cells; it is not a calibrated probability, so it carries no
threshold and no spread (its ``std_*`` bands are NaN).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..data.prediction_io import prediction_file, read_band, read_prediction_info

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds, with probabilities clipped to [EPS, 1 - EPS]; NaN stays NaN."""
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


def combined_probability(maps: Sequence[np.ndarray]) -> np.ndarray:
    """sigmoid(Σ logit(p_i)); NaN where any map has none."""
    z = sum(logit(np.asarray(m, np.float64)) for m in maps)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def combine_predictions(paths: Sequence[str | Path], out: str | Path) -> list[str]:
    """Write the combined map of prediction GeoTIFFs made on the same grid and stack into ``out``;
    returns its species (those every map holds, in the first map's order)."""
    if len(paths) < 2:
        raise InputError("Give at least two prediction GeoTIFFs to combine.")
    infos = [read_prediction_info(p) for p in paths]
    grid0, species0, meta0 = infos[0]
    for p, (grid, _, meta) in zip(paths[1:], infos[1:]):
        if (grid.crs != grid0.crs or grid.transform != grid0.transform or grid.shape != grid0.shape):
            raise InputError(f"{p} is on another grid than {paths[0]}: combine maps made on the same stack "
                             "(run predict and aux-map with the same --stack).")
        if meta.get("stack") and meta0.get("stack") and meta["stack"] != meta0["stack"]:
            raise InputError(f"{p} was made on another stack than {paths[0]} (their stack fingerprints differ): "
                             "combine maps made on the same stack.")
    species = [s for s in species0 if all(s in sp for _, sp, _ in infos[1:])]
    if not species:
        raise InputError(f"The maps share no species: {[sp for _, sp, _ in infos]}.")
    mean = np.stack([combined_probability([read_band(p, f"mean_{s}") for p in paths]) for s in species])
    std = np.full_like(mean, np.nan)
    tags: dict[str, Any] = {"species": species, "method": "combined: sum of the maps' log-odds",
                            "combined": [str(p) for p in paths], "draws": 0, "models": [],
                            "hide": meta0.get("hide", ""),
                            "note": "ranks cells; not a calibrated probability: no threshold, no spread"}
    if meta0.get("stack"):
        tags["stack"] = meta0["stack"]
    with prediction_file(out, grid0, species, tags) as writer:
        writer.write_rows(0, mean, std)
    return species
