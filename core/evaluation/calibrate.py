"""Fitting a model's calibration on its validation blocks and checking it on its test blocks.

Per masking scenario (and pooled, for maps with nothing hidden) the model's raw probabilities on
the validation blocks' hidden cells are fitted by each method of :mod:`core.model.calibration`;
the method is chosen by cross-fitted log loss on the two halves of the validation tiles (never on
the test blocks), refitted on all of them, and the Dice-best threshold re-derived on the
calibrated scale. The test blocks then give the expected calibration error (ECE) before and after,
the reliability diagram and the scores at the old and new thresholds. The weights are copied
unchanged; the card gains the calibration.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..atomic import atomic_path, check_writable
from ..data.stack import Stack
from ..errors import InputError
from ..masks.masking import SCENARIOS, MaskSpec
from ..masks.tiles import HoldoutSplit, StackTensors
from ..model.calibration import (ECE_BINS, FITTERS, POOLED, Calibration, choose_method,
                                 expected_calibration_error, reliability)
from ..model.metrics import HiddenCells, average_precision, best_dice_threshold, threshold_scores
from ..model.model_file import ModelCard, card_path, read_card
from ..model.predictors import ModelPredictor
from ..progress import Progress
from ..training.validation import EVAL_SEED, HoldoutMasks, collect
from .evaluate import holdout_masks


def _pairs(cells: HiddenCells) -> tuple[np.ndarray, np.ndarray]:
    p, y = cells.arrays()
    return p.astype(np.float64), y.astype(np.uint8)


def _scores(p: np.ndarray, y: np.ndarray, t: float) -> dict[str, float]:
    s = threshold_scores(p, y, t)
    return {"threshold": float(t), "dice": float(s["dice"]), "recall": float(s["recall"]),
            "precision": float(s["precision"]), "auprc": float(average_precision(p, y)),
            "flagged_share": float(np.mean(p >= t)) if len(p) else float("nan")}


def fit_calibration(predictor: ModelPredictor, tensors: StackTensors, val: HoldoutMasks, species: list[str],
                    progress: Optional[Progress] = None, log: Callable[[str], None] = print
                    ) -> tuple[Calibration, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The calibration of ``predictor`` fitted on the validation masks ``val``; also returns the
    raw validation (probability, truth) pairs per scenario."""
    halves = [HoldoutMasks(val.origins[k::2], val.tile_size, val.spec, val.draws, val.seed) for k in (0, 1)]
    raw: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {sc: [] for sc in SCENARIOS}
    for half in halves:
        cells = collect(predictor, tensors, half, species, progress=progress, calibrated=False)
        for sc in SCENARIOS:
            raw[sc].append(_pairs(cells[sc]))
    groups = {sc: np.concatenate([np.full(len(p), k, np.int8) for k, (p, _) in enumerate(raw[sc])])
              for sc in SCENARIOS}
    pairs = {sc: (np.concatenate([p for p, _ in raw[sc]]), np.concatenate([y for _, y in raw[sc]]))
             for sc in SCENARIOS}
    pairs[POOLED] = (np.concatenate([pairs[sc][0] for sc in SCENARIOS]),
                     np.concatenate([pairs[sc][1] for sc in SCENARIOS]))
    groups[POOLED] = np.concatenate([groups[sc] for sc in SCENARIOS])
    maps, thresholds, choice = {}, {}, {}
    for sc, (p, y) in pairs.items():
        if not y.any():
            raise InputError(f"The validation blocks hold no recorded site among the hidden cells of the '{sc}' "
                             "scenario: nothing to calibrate on. Use a stack with more records or more "
                             "validation blocks (train --val-fraction).")
        method, cross = choose_method(p, y, groups[sc])
        maps[sc] = FITTERS[method](p, y)
        thresholds[sc] = best_dice_threshold(maps[sc].apply_numpy(p), y)
        choice[sc] = {"method": method, "cross_fitted": cross, "cells": int(len(p)), "positives": int(y.sum())}
        log(f"  {sc:<8} {method:<11} (cross-fitted log loss: "
            + ", ".join(f"{m} {cross[m + '_log_loss']:.5f}" for m in FITTERS)
            + f"); threshold {thresholds[sc]:.4f}")
    info = {"fitted_on": f"hidden valid cells of the validation blocks ({len(val.origins)} tiles x {val.draws} "
                         f"mask draws per scenario, seed {val.seed})",
            "chosen_by": "lowest cross-fitted log loss between the two halves of the validation tiles",
            "thresholds": thresholds, "choice": choice}
    return Calibration(maps, info), pairs


def calibrate_model(stack: Stack, model_path: str | Path, out: str | Path, report: Optional[str | Path] = None,
                    draws: Optional[int] = None, seed: int = EVAL_SEED, device: Optional[torch.device] = None,
                    progress: Optional[Progress] = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit the calibration of the model at ``model_path`` on its validation blocks, check it on its
    test blocks, and write the model with the calibrated card to ``out`` (and the check's JSON to
    ``report``). Returns the check."""
    model_path, out = Path(model_path), Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"Model files end in .safetensors; got {out}.")
    for p in (out, card_path(out)) + ((Path(report),) if report else ()):
        check_writable(p)
    card, check = calibrated_card(stack, model_path, draws, seed, device, progress, log)
    check["out"] = str(out)
    _write_model(model_path, out, card)
    log(f"wrote {out} (same weights; the card carries the calibration)")
    if report is not None:
        with atomic_path(report) as tmp:
            tmp.write_text(json.dumps(check, indent=1, default=float))
        log(f"wrote {report}")
    return check


def calibrated_card(stack: Stack, model_path: str | Path, draws: Optional[int] = None, seed: int = EVAL_SEED,
                    device: Optional[torch.device] = None, progress: Optional[Progress] = None,
                    log: Callable[[str], None] = print) -> tuple[ModelCard, dict[str, Any]]:
    """The card of the model at ``model_path`` with its calibration fitted on the validation blocks,
    and the check on the test blocks (ECE before and after, reliability, scores)."""
    model_path = Path(model_path)
    card = read_card(model_path)
    card.check_stack(stack)
    stack = card.fit_stack(stack)
    split = HoldoutSplit.from_dict(card.data["holdout"]["split"])
    spec = MaskSpec.from_dict(card.masking).only("region", species_k=1)
    draws = draws or len(stack.species)
    min_valid = float(card.training.get("min_valid", 0.25))
    k = card.tile_size
    val = holdout_masks(stack, split, k, "val", min_valid, spec, draws, seed)
    test = holdout_masks(stack, split, k, "test", min_valid, spec, draws, seed)
    if len(val.origins) < 2 or len(test.origins) == 0:
        raise InputError("The hold-out split has too few validation or test tiles with enough land to calibrate "
                         "on; train with a larger --val-fraction / --test-fraction or a smaller --block-size.")
    tensors = StackTensors(stack, device or torch.device("cpu"))
    species = list(stack.species)
    predictor = ModelPredictor.from_file(model_path, device=tensors.device)
    predictor.calibration = None  # fit on the network's own output, whatever the card held
    if progress is not None:
        progress.start(3 * len(SCENARIOS) * draws, "calibrate (mask draws)")
    log(f"calibrating {model_path.name} on {len(val.origins)} validation tiles, checking on {len(test.origins)} "
        f"test tiles ({draws} mask draws per scenario)")
    calibration, val_pairs = fit_calibration(predictor, tensors, val, species, progress, log)
    test_cells = collect(predictor, tensors, test, species, progress=progress, calibrated=False)
    if progress is not None:
        progress.close()
    test_pairs = {sc: _pairs(test_cells[sc]) for sc in SCENARIOS}
    test_pairs[POOLED] = (np.concatenate([test_pairs[sc][0] for sc in SCENARIOS]),
                          np.concatenate([test_pairs[sc][1] for sc in SCENARIOS]))
    raw_thresholds = card.metrics.get("validation", {}).get("thresholds", {})
    check: dict[str, Any] = {"model": str(model_path), "ece_bins": ECE_BINS,
                             "test_tiles": int(len(test.origins)), "val_tiles": int(len(val.origins)),
                             "draws": draws, "mask_seed": seed, "scenarios": {}}
    for sc, (p, y) in test_pairs.items():
        chosen = calibration.maps[sc]
        q = chosen.apply_numpy(p)
        # every method fitted on the validation cells, scored here for the record (not chosen here)
        by_method = {m: expected_calibration_error(fit(*val_pairs[sc]).apply_numpy(p), y) for m, fit in FITTERS.items()}
        check["scenarios"][sc] = {
            "method": chosen.method, "cells": int(len(p)), "positives": int(y.sum()),
            "base_rate": float(y.mean()) if len(y) else float("nan"),
            "ece_before": expected_calibration_error(p, y), "ece_after": expected_calibration_error(q, y),
            "ece_after_by_method": by_method,
            "reliability_before": reliability(p, y), "reliability_after": reliability(q, y),
            "scores_before": _scores(p, y, float(raw_thresholds.get(sc, card.threshold))),
            "scores_after": _scores(q, y, calibration.info["thresholds"][sc]),
        }
        r = check["scenarios"][sc]
        log(f"  test {sc:<8} ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f} ({chosen.method}; "
            + ", ".join(f"{m} {v:.4f}" for m, v in by_method.items()) + f"); Dice "
            f"{r['scores_before']['dice']:.3f} -> {r['scores_after']['dice']:.3f}, flagged share "
            f"{r['scores_before']['flagged_share']:.4f} -> {r['scores_after']['flagged_share']:.4f}")
    card.calibration = {**calibration.to_dict(),
                        "test_ece": {sc: {"before": v["ece_before"], "after": v["ece_after"]}
                                     for sc, v in check["scenarios"].items()}}
    return card, check


def _write_model(src: Path, out: Path, card: ModelCard) -> None:
    from dataclasses import asdict

    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    with atomic_path(card_path(out)) as tmp:
        tmp.write_text(json.dumps(asdict(card), indent=2))
