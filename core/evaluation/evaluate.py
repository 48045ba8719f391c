"""Evaluation on the held-out test blocks, per masking scenario.

Every predictor (trained models of several seeds, baselines) is scored on the same tiles with
the same seeded mask draws, on hidden valid cells only. The probability threshold of a model
comes from its card (chosen on validation blocks at the end of training); a baseline's is
chosen on the validation blocks here. Nothing is tuned on the test blocks.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, check_writable
from ..data.stack import Stack
from ..errors import InputError
from ..masks.masking import SCENARIOS, MaskSpec
from ..masks.tiles import HoldoutSplit, StackTensors, holdout_tiles, train_frequency
from ..model.metrics import METRICS, HiddenCells
from ..model.model_file import ModelCard, read_card
from ..model.predictors import ModelPredictor, Predictor
from ..progress import Progress
from ..training.validation import EVAL_SEED, HoldoutMasks, collect, pooled_threshold
from .baselines import FrequencyPredictor



def holdout_masks(stack: Stack, split: HoldoutSplit, tile_size: int, part: str, min_valid: float, spec: MaskSpec,
                  draws: int, seed: int = EVAL_SEED) -> HoldoutMasks:
    """The ``part`` ('val' or 'test') tiles of ``split`` with their seeded mask draws."""
    return HoldoutMasks(holdout_tiles(stack, split, tile_size, part, min_valid), tile_size, spec, draws, seed)


@dataclass
class Scored:
    """One predictor's test reports per scenario, the thresholds they were scored at, and the
    hidden cells behind them. ``threshold`` is the single threshold when one was used for every
    scenario, NaN when each scenario had its own (then see ``thresholds``)."""

    reports: dict[str, dict[str, Any]]
    threshold: float
    cells: dict[str, HiddenCells]
    thresholds: dict[str, float] = field(default_factory=dict)


def score_predictor(predictor: Predictor, tensors: StackTensors, test: HoldoutMasks, val: HoldoutMasks,
                    species: list[str], threshold: float | dict[str, float] | None = None,
                    progress: Optional[Progress] = None, per_scenario: bool = False) -> Scored:
    """Score any predictor (model, kriging, baseline) on the test masks at ``threshold`` (one
    value, or one per scenario); when None, at the Dice-best threshold on the validation masks
    (never on the test blocks), pooled over scenarios or, with ``per_scenario``, for each. The one
    scoring path of ``evaluate``, ``compare`` and ``sweep``."""
    if threshold is None:
        if len(val.origins):
            val_cells = collect(predictor, tensors, val, species, progress=progress)
            threshold = {sc: c.best_threshold() for sc, c in val_cells.items()} if per_scenario \
                else pooled_threshold(val_cells)
        else:
            threshold = 0.5
    cells = collect(predictor, tensors, test, species, progress=progress)
    per = dict(threshold) if isinstance(threshold, dict) else {sc: float(threshold) for sc in cells}
    single = float("nan") if isinstance(threshold, dict) else float(threshold)
    return Scored({sc: c.report(per[sc]) for sc, c in cells.items()}, single, cells, per)


def random_draw_report(cells: HiddenCells, frequency: dict[str, float]) -> dict[str, Any]:
    """Expected scores of drawing each hidden cell present with probability = the species'
    training frequency (the frequency baseline read as a random guess at the base rate).
    AUPRC of such a guess is the share of positives."""
    def one(stats: list[tuple[float, int, int]]) -> dict[str, float]:
        tp = sum(f * p for f, p, _ in stats)
        pred = sum(f * c for f, _, c in stats)
        pos = sum(p for _, p, _ in stats)
        cells_ = sum(c for _, _, c in stats)
        nan = float("nan")
        return {"dice": 2 * tp / (pred + pos) if pred + pos > 0 else nan,
                "recall": tp / pos if pos else nan, "precision": tp / pred if pred > 0 else nan,
                "auprc": pos / cells_ if pos and cells_ else nan, "cells": cells_, "positives": pos}

    per = {}
    for s in cells.species:
        p, y = cells.arrays(s)
        per[s] = one([(frequency[s], int(y.sum()), len(y))])
    overall = one([(frequency[s], per[s]["positives"], per[s]["cells"]) for s in cells.species])
    mean = {k: float(np.nanmean([v[k] for v in per.values() if v["positives"] > 0] or [np.nan]))
            for k in METRICS}
    return {"overall": overall, "species_mean": mean, "per_species": per}


def card_thresholds(card: ModelCard) -> dict[str, float]:
    """Per-scenario thresholds chosen on validation blocks (stored by the trainer), falling back
    to the card's pooled threshold."""
    return {sc: card.threshold_for(sc) for sc in SCENARIOS}


def _mean_std(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "values": values}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "values": values}


def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std (ddof=1) over several reports of the same predictor (seeds)."""
    out: dict[str, Any] = {"overall": {}, "species_mean": {}, "per_species": {}}
    for key in ("overall", "species_mean"):
        out[key] = {m: _mean_std([r[key][m] for r in reports]) for m in METRICS}
    for s in reports[0]["per_species"]:
        out["per_species"][s] = {m: _mean_std([r["per_species"][s][m] for r in reports]) for m in METRICS}
        out["per_species"][s]["positives"] = reports[0]["per_species"][s]["positives"]
    return out


def _consistent_cards(paths: Sequence[Path], stack: Stack) -> list[ModelCard]:
    cards = [read_card(p) for p in paths]
    for c in cards:
        c.check_stack(stack)
    first = cards[0]
    for p, c in zip(paths, cards):
        if c.aux_names != first.aux_names:
            raise InputError(f"{p} reads other aux bands than {paths[0]}; evaluate models of one configuration "
                             "together (seeds), or each on its own.")
        if c.tile_size != first.tile_size or c.data.get("holdout") != first.data.get("holdout"):
            raise InputError(f"{p} was trained with another tile size or hold-out split than {paths[0]}; "
                             "models compared together must share both (same --tile-size and --split-seed).")
    return cards


def evaluate_models(stack: Stack, model_paths: Sequence[str | Path], out: Optional[str | Path] = None,
                    spec: Optional[MaskSpec] = None, draws: Optional[int] = None, seed: int = EVAL_SEED,
                    device: Optional[torch.device] = None, label: Optional[str] = None,
                    progress: Optional[Progress] = None, log=print) -> dict[str, Any]:
    """Score models (seeds of one configuration) and the frequency baselines on the test
    blocks; print a table; write JSON to ``out`` when given. Returns the result dict."""
    if out is not None:
        check_writable(out)
    paths = [Path(p) for p in model_paths]
    if not paths:
        raise InputError("Give at least one model file (--models a.safetensors b.safetensors ...).")
    cards = _consistent_cards(paths, stack)
    card = cards[0]
    stack = card.fit_stack(stack)
    split = HoldoutSplit.from_dict(card.data["holdout"]["split"])
    stored = card.data["holdout"].get("test_blocks")
    if stored is not None and split.summary(stack.valid)["test_blocks"] != stored:
        raise InputError("The stack's test blocks differ from those the model was trained with (the stack's "
                         "valid cells changed). Evaluate on the stack the model was trained on.")
    spec = spec or MaskSpec.from_dict(card.masking).only("region", species_k=1)
    spec.validate(len(stack.species))
    draws = draws or len(stack.species)
    k = card.tile_size
    min_valid = float(card.training.get("min_valid", 0.25))
    test = holdout_masks(stack, split, k, "test", min_valid, spec, draws, seed)
    val = holdout_masks(stack, split, k, "val", min_valid, spec, draws, seed)
    if len(test.origins) == 0:
        raise InputError("The hold-out split has no test tile with enough land; use a smaller --block-size or "
                         "a larger --test-fraction when training.")
    tensors = StackTensors(stack, device or torch.device("cpu"))
    species = list(stack.species)
    freq = train_frequency(stack, split)
    log(f"evaluating {len(paths)} model(s) on {len(test.origins)} test tiles of {k} cells "
        f"(hold-out blocks of {split.block_size}, split seed {split.seed}), {draws} mask draws per scenario, "
        f"region fraction {spec.region_fraction}, {spec.species_k[0]}-{spec.species_k[1]} species hidden")
    steps = (len(paths) + 1) * len(SCENARIOS) * draws + len(SCENARIOS) * draws
    if progress is not None:
        progress.start(steps, "evaluate")

    model_reports, thresholds = [], {}
    for p, c in zip(paths, cards):
        pred = ModelPredictor.from_file(p, device=tensors.device)
        thresholds[str(p)] = card_thresholds(c)
        model_reports.append(score_predictor(pred, tensors, test, val, species, thresholds[str(p)], progress).reports)

    base = score_predictor(FrequencyPredictor(freq, species), tensors, test, val, species, progress=progress,
                           per_scenario=True)
    base_t, base_cells = base.thresholds, base.cells
    thresholds["frequency"] = base_t
    if progress is not None:
        progress.close()

    arch = card.model.get("arch", "model")
    label = label or (f"unet-resnet{card.model.get('encoder_depth')}" if arch == "unet" else arch)
    result: dict[str, Any] = {
        "models": [str(p) for p in paths], "label": label, "tile_size": k, "test_tiles": int(len(test.origins)),
        "val_tiles": int(len(val.origins)), "draws": draws, "mask": spec.to_dict(), "mask_seed": seed,
        "holdout": card.data["holdout"], "train_frequency": freq, "thresholds": thresholds,
        "scenarios": {}}
    for sc in SCENARIOS:
        result["scenarios"][sc] = {
            label: aggregate([r[sc] for r in model_reports]),
            "frequency": aggregate([base_cells[sc].report(base_t[sc])]),
            "frequency_draw": aggregate([random_draw_report(base_cells[sc], freq)]),
        }
    log(format_table(result))
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=float))
        log(f"wrote {out}")
    return result


ROW_NAMES = {"frequency": "frequency baseline (threshold on val)",
             "frequency_draw": "frequency baseline (random draw)"}


def _cell(v: dict[str, Any]) -> str:
    if math.isnan(v["mean"]):
        return "n/a"
    return f"{v['mean']:.3f} ± {v['std']:.3f}" if len(v["values"]) > 1 else f"{v['mean']:.3f}"


def format_table(result: dict[str, Any]) -> str:
    """Overall scores per scenario and predictor, then Dice and recall per species."""
    label = result["label"]
    n = len(result["models"])
    lines = [f"Held-out test blocks: {result['test_tiles']} tiles x {result['draws']} mask draws per scenario; "
             f"hidden valid cells only, pooled over species; mean ± std over {n} model file(s); "
             "thresholds per scenario chosen on validation blocks"]
    head = f"{'scenario':<9} {'predictor':<40} " + " ".join(f"{m:>15}" for m in METRICS)
    lines += [head, "-" * len(head)]
    for sc, rows in result["scenarios"].items():
        for i, (name, rep) in enumerate(rows.items()):
            shown = f"{name} ({n} seeds)" if name == label else ROW_NAMES.get(name, name)
            lines.append(f"{sc if i == 0 else '':<9} {shown:<40} "
                         + " ".join(f"{_cell(rep['overall'][m]):>15}" for m in METRICS))
    lines.append("")
    lines.append(f"Dice / recall per species ({label} mean | frequency baseline thresholded on val):")
    scs = list(result["scenarios"])
    lines.append(f"{'species':<8}" + "".join(f"{sc:>36}" for sc in scs))
    species = list(result["scenarios"][scs[0]][label]["per_species"])
    for s in species:
        row = f"{s:<8}"
        for sc in scs:
            m = result["scenarios"][sc][label]["per_species"][s]
            b = result["scenarios"][sc]["frequency"]["per_species"][s]
            cell = (f"{m['dice']['mean']:.3f}/{m['recall']['mean']:.3f} | "
                    f"{b['dice']['mean']:.3f}/{b['recall']['mean']:.3f}")
            row += cell.rjust(36)
        lines.append(row)
    return "\n".join(lines)
