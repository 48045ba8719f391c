"""Scores on hidden cells: Dice, recall, precision at a threshold, area under the
precision-recall curve, and the Dice-maximising threshold. Plain numpy, exact (no binning)."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

METRICS = ("dice", "recall", "precision", "auprc")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def threshold_scores(probs: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """Dice, recall and precision of ``probs >= threshold`` against 0/1 ``truth``."""
    pred = probs >= threshold
    t = truth.astype(bool)
    tp = float(np.count_nonzero(pred & t))
    fp = float(np.count_nonzero(pred & ~t))
    fn = float(np.count_nonzero(~pred & t))
    return {"dice": _ratio(2 * tp, 2 * tp + fp + fn), "recall": _ratio(tp, tp + fn),
            "precision": _ratio(tp, tp + fp)}


def _ranked(probs: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with cumulative true and false positives at each."""
    order = np.argsort(-probs, kind="stable")
    p, y = probs[order], truth[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(p) != 0), len(p) - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return p[last], tp, fp


def average_precision(probs: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, ties grouped);
    NaN when there is no positive."""
    n_pos = int(np.count_nonzero(truth))
    if n_pos == 0 or len(probs) == 0:
        return float("nan")
    _, tp, fp = _ranked(probs, truth)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_curve(probs: np.ndarray, truth: np.ndarray,
                           max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each distinct threshold (descending), thinned to at most
    ``max_points`` (the first and last kept) for plotting; empty without positives."""
    n_pos = int(np.count_nonzero(truth))
    if n_pos == 0 or len(probs) == 0:
        return np.zeros(0), np.zeros(0)
    _, tp, fp = _ranked(probs, truth)
    recall, precision = tp / n_pos, tp / (tp + fp)
    if len(recall) > max_points:
        keep = np.unique(np.linspace(0, len(recall) - 1, max_points).round().astype(int))
        recall, precision = recall[keep], precision[keep]
    return recall, precision


def best_dice_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """The threshold (predict ``>=``) that maximises Dice; 0.5 when there is no positive."""
    n_pos = int(np.count_nonzero(truth))
    if n_pos == 0 or len(probs) == 0:
        return 0.5
    thresholds, tp, fp = _ranked(probs, truth)
    dice = 2 * tp / (tp + fp + n_pos)
    return float(thresholds[int(np.argmax(dice))])


def scores(probs: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, Any]:
    """All metrics plus the counts they rest on."""
    out: dict[str, Any] = threshold_scores(probs, truth, threshold)
    out["auprc"] = average_precision(probs, truth)
    out["cells"] = int(len(probs))
    out["positives"] = int(np.count_nonzero(truth))
    return out


class HiddenCells:
    """Collects (probability, truth) of hidden valid cells, per species."""

    def __init__(self, species: list[str]) -> None:
        self.species = list(species)
        self._probs: list[list[np.ndarray]] = [[] for _ in species]
        self._truth: list[list[np.ndarray]] = [[] for _ in species]

    def add(self, probs: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> None:
        """probs, target (B, S, H, W); hidden (B, S, H, W) bool; valid (B, H, W) bool."""
        m = (hidden & valid.unsqueeze(1)).cpu()
        probs, target = probs.float().cpu(), target.cpu()
        for i in range(len(self.species)):
            sel = m[:, i]
            if sel.any():
                self._probs[i].append(probs[:, i][sel].numpy())
                self._truth[i].append(target[:, i][sel].numpy().astype(np.uint8))

    def arrays(self, species: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
        idx = range(len(self.species)) if species is None else [self.species.index(species)]
        p = [a for i in idx for a in self._probs[i]]
        y = [a for i in idx for a in self._truth[i]]
        if not p:
            return np.zeros(0, np.float32), np.zeros(0, np.uint8)
        return np.concatenate(p), np.concatenate(y)

    def best_threshold(self) -> float:
        return best_dice_threshold(*self.arrays())

    def report(self, threshold: float) -> dict[str, Any]:
        """{"overall": pooled over species, "species_mean": mean of the species' scores (those
        with positives), "per_species": {...}}."""
        per = {s: scores(*self.arrays(s), threshold) for s in self.species}
        mean = {}
        for k in METRICS:
            vals = [v[k] for v in per.values() if v["positives"] > 0 and not math.isnan(v[k])]
            mean[k] = float(np.mean(vals)) if vals else float("nan")
        return {"overall": scores(*self.arrays(), threshold), "species_mean": mean, "per_species": per}
