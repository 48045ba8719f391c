"""Species interdependence learned by a model: how much hiding species j hurts species i.

On held-out tiles, species i is hidden over the whole tile (the "species" scenario) either
alone or together with species j; the matrix entry (i, j) is the drop of i's score (AUPRC, and
Dice at the model's threshold) when j is hidden too. A large drop means the model predicts i
from j's records: it has learned that they occur together. Scores come from
:mod:`core.model.metrics`, the same code that scores every other comparison.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..masks.tiles import StackTensors
from ..model.metrics import scores
from ..model.predictors import Predictor
from ..progress import Progress, check_cancelled


def _hidden_cells(predictor: Predictor, tensors: StackTensors, origins: torch.Tensor, tile_size: int,
                  hide: list[int], n_species: int, chunk: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Probabilities and truth of the valid cells of each species in ``hide``, with the species
    in ``hide`` hidden over every tile."""
    probs: dict[int, list[np.ndarray]] = {i: [] for i in hide}
    truth: dict[int, list[np.ndarray]] = {i: [] for i in hide}
    for start in range(0, len(origins), chunk):
        batch = tensors.gather(origins[start:start + chunk], tile_size)
        b = len(batch)
        hidden = torch.zeros(b, n_species, tile_size, tile_size, dtype=torch.bool, device=batch.presence.device)
        hidden[:, hide] = True
        p = predictor.predict(batch.presence, hidden, batch.aux, batch.valid)
        v = batch.valid.cpu()
        for i in hide:
            probs[i].append(p[:, i][v].float().numpy())
            truth[i].append(batch.presence[:, i].cpu()[v].numpy().astype(np.uint8))
    return {i: (np.concatenate(probs[i]), np.concatenate(truth[i])) for i in hide}


def species_interdependence(predictor: Predictor, tensors: StackTensors, origins: np.ndarray, tile_size: int,
                            species: list[str], threshold: float, chunk: int = 64,
                            progress: Optional[Progress] = None) -> dict[str, Any]:
    """Scores of each species hidden alone and with each other species, and their drops.

    Returns ``{"species", "alone": {metric: [S]}, "pair": {metric: [[S x S]]}, "drop": {metric:
    [[S x S]]}}`` with metrics ``auprc`` and ``dice``; ``pair[m][i][j]`` is species i's score when
    i and j are hidden (diagonal: i alone), ``drop = alone - pair`` (diagonal 0).
    One forward pass per species and one per pair (both species of a pair are scored from it).
    """
    n = len(species)
    o = torch.from_numpy(np.asarray(origins))
    metrics = ("auprc", "dice")
    pair = {m: np.full((n, n), np.nan) for m in metrics}
    if progress is not None:
        progress.start(n + n * (n - 1) // 2, "interdependence")

    def record(i: int, j: int, p: np.ndarray, y: np.ndarray) -> None:
        sc = scores(p, y, threshold)
        for m in metrics:
            pair[m][i, j] = sc[m]

    for i in range(n):
        check_cancelled(progress)
        p, y = _hidden_cells(predictor, tensors, o, tile_size, [i], n, chunk)[i]
        record(i, i, p, y)
        if progress is not None:
            progress.advance(1)
    for i in range(n):
        for j in range(i + 1, n):
            check_cancelled(progress)
            cells = _hidden_cells(predictor, tensors, o, tile_size, [i, j], n, chunk)
            record(i, j, *cells[i])
            record(j, i, *cells[j])
            if progress is not None:
                progress.advance(1)
    if progress is not None:
        progress.close()
    alone = {m: np.diag(pair[m]).copy() for m in metrics}
    drop = {m: alone[m][:, None] - pair[m] for m in metrics}
    return {"species": list(species), "tiles": int(len(o)), "threshold": float(threshold),
            "alone": {m: alone[m].tolist() for m in metrics},
            "pair": {m: pair[m].tolist() for m in metrics},
            "drop": {m: drop[m].tolist() for m in metrics}}
