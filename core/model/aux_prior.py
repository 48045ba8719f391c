"""The aux prior's map: what a model's aux-only branch (:class:`core.model.context.AuxPrior`) says
about every cell from the aux bands alone, with no record as input.

It is the model's own answer to "where would records be, given the terrain, geochemistry and
geology", beside its infill map (which leans on the records around each cell). On the
discovery test (README) the two rank held-out surveys differently; the product offers both.
The map of an ensemble is the mean and standard deviation of its members' priors. The prior of
a cell depends on the aux bands within ``3 σ`` of it (the aux features' widest scale), so the
grid is done in strips of rows with that many rows of halo: the result equals one pass over the
whole grid.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..data.prediction_io import prediction_file
from ..data.stack import Stack, stack_fingerprint
from ..data.stack_sources import open_stack_source
from ..errors import InputError
from ..progress import Progress, SilentProgress, check_cancelled
from .model_file import ModelCard, load_model

STRIP = 256


def has_aux_prior(card: ModelCard) -> bool:
    return bool(card.model_config.options.get("aux_prior"))


def prior_probabilities(net: torch.nn.Module, window: Stack) -> np.ndarray:
    """(S, H, W) probabilities of the model's aux prior on a stack window (its aux bands those of
    the model, see :meth:`ModelCard.fit_stack`)."""
    s = len(window.species)
    h, w = window.grid.shape
    x = torch.zeros(1, 2 * s + len(window.aux_bands), h, w)
    x[0, 2 * s:] = torch.from_numpy(np.ascontiguousarray(window.aux, dtype=np.float32))
    with torch.inference_mode():
        return torch.sigmoid(net.prior_logits(x))[0].numpy()


def halo_rows(card: ModelCard) -> int:
    sigmas = card.model_config.options.get("aux_sigmas") or [0]
    return int(math.ceil(3 * max(sigmas))) + 1


def aux_prior_map(stack: Stack | str | Path, model_paths: Sequence[str | Path], out: Optional[str | Path] = None,
                  progress: Optional[Progress] = None) -> tuple[Optional[np.ndarray], Optional[np.ndarray], float]:
    """Mean and spread over the models of their aux priors on the whole stack, NaN outside
    valid cells; written to ``out`` (a prediction GeoTIFF: ``mean_<sp>``, ``std_<sp>``) when
    given, else returned. Returns (mean, std, seconds)."""
    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    if out is not None:
        from ..output_paths import check_outputs

        check_outputs({"the output": out}, inputs={"stack": stack if isinstance(stack, (str, Path)) else None,
                                                   "model": list(model_paths)})
    loaded = [load_model(p, torch.device("cpu")) for p in model_paths]
    if not loaded:
        raise InputError("Give at least one model file.")
    for p, (_, card) in zip(model_paths, loaded):
        if not has_aux_prior(card):
            raise InputError(f"{p} has no aux prior (train it with --preset quick_prior, or the model option "
                             "aux_prior=32 and --loss-prior 1).")
    source = open_stack_source(stack)
    try:
        for _, card in loaded:
            card.check_stack(source)
        g = source.grid
        species = list(source.species)
        halo = max(halo_rows(c) for _, c in loaded)
        strips = list(range(0, g.height, STRIP))
        progress.start(len(strips) * len(loaded), "aux prior map")
        tags = {"species": species, "models": [Path(p).name for p in model_paths], "draws": 1,
                "hide": "nothing: the aux prior alone (no record)", "evaluations": len(loaded),
                "stack": stack_fingerprint(source)}
        mean_all = std_all = None
        if out is None:
            mean_all = np.full((len(species),) + g.shape, np.nan, np.float32)
            std_all = np.full((len(species),) + g.shape, np.nan, np.float32)
        with (prediction_file(out, g, species, tags) if out is not None else contextlib.nullcontext()) as writer:
            for r in strips:
                h = min(STRIP, g.height - r)
                top = max(0, r - halo)
                win = source.read_window(top, 0, h + (r - top) + halo, g.width)
                probs = []
                for net, card in loaded:
                    check_cancelled(progress)
                    probs.append(prior_probabilities(net, card.fit_stack(win))[:, r - top:r - top + h])
                    progress.advance(1)
                valid = win.valid[r - top:r - top + h]
                mean = np.where(valid, np.mean(probs, axis=0), np.nan).astype(np.float32)
                std = np.where(valid, np.std(probs, axis=0), np.nan).astype(np.float32)
                if writer is not None:
                    writer.write_rows(r, mean, std)
                else:
                    mean_all[:, r:r + h], std_all[:, r:r + h] = mean, std
        return mean_all, std_all, time.perf_counter() - t0
    finally:
        progress.close()
        if source is not stack:
            source.close()
