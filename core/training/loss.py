"""The training loss: BCE + soft Dice + a recall term, on hidden valid cells only.

Occurrence data has no true negatives (no record is not no mineral), so the loss leans on
overlap (Dice) and on finding the hidden records (recall) as well as on calibrated
probabilities (BCE).

Each term is a sum of per-cell or per-(tile, species) contributions divided by a count that
depends on the data only. The trainer sums the counts over all micro-batches and ranks before
dividing, so that a batch split over processes or micro-batches gives the same gradient as
the whole batch at once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

TERMS = ("bce", "dice", "recall")


@dataclass
class LossWeights:
    """Weights of the three terms, the BCE weight of positive cells, and the weight of the aux
    prior's own loss (:func:`prior_sum`; used only by a model with an aux prior)."""

    bce: float = 1.0
    dice: float = 1.0
    recall: float = 0.5
    pos_weight: float = 1.0
    prior: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def presence_within(presence: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, S, H, W) target "a record of the species within ``radius`` cells" (a square of side
    2·radius + 1; the tile's edge counts as no record): the coarser-scale training target of
    ``train --target-radius``. ``radius`` 0 returns ``presence`` itself."""
    if radius <= 0:
        return presence
    pooled = F.max_pool2d(presence.float(), 2 * radius + 1, stride=1, padding=radius)
    return pooled.to(presence.dtype)


def loss_counts(target: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Normalisers of the three terms (float64, shape (3,)): hidden valid cells; (tile, species)
    pairs with any hidden positive cell (for Dice and for recall)."""
    m = hidden & valid.unsqueeze(1)
    with_pos = (m & (target > 0.5)).flatten(2).any(2).sum()
    return torch.stack([m.sum(), with_pos, with_pos]).double()


def loss_sums(logits: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor,
              weights: LossWeights, smooth: float = 1.0) -> torch.Tensor:
    """Sums of the three terms' contributions, shape (3,), float32, differentiable.

    logits, target (B, S, H, W); hidden (B, S, H, W) bool; valid (B, H, W) bool.
    Dice and recall are soft (probabilities, not thresholds) and per (tile, species), over the
    pairs whose hidden cells hold a record: on a pair without any, smoothed Dice would be
    1 - 1/(sum p + 1), whose pull of every cell towards 0 swamps the other terms and drives all
    probabilities to ~1e-3. False positives there are BCE's to punish.
    """
    logits = logits.float()
    y = target.float()
    m = (hidden & valid.unsqueeze(1)).float()
    pw = torch.tensor(weights.pos_weight, dtype=logits.dtype, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none", pos_weight=pw)
    bce_sum = (bce * m).sum()

    p = torch.sigmoid(logits) * m
    inter = (p * y).flatten(2).sum(2)
    p_sum = p.flatten(2).sum(2)
    y_sum = (y * m).flatten(2).sum(2)
    has_pos = y_sum > 0
    dice = 1 - (2 * inter + smooth) / (p_sum + y_sum + smooth)
    dice_sum = torch.where(has_pos, dice, torch.zeros_like(dice)).sum()
    recall = 1 - inter / y_sum.clamp_min(1.0)
    recall_sum = torch.where(has_pos, recall, torch.zeros_like(recall)).sum()
    return torch.stack([bce_sum, dice_sum, recall_sum])


def combine(sums: torch.Tensor, counts: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """The weighted loss from term sums and (global) counts; a term with count 0 adds 0."""
    w = torch.tensor([weights.bce, weights.dice, weights.recall], dtype=sums.dtype, device=sums.device)
    c = counts.to(sums.device, sums.dtype)
    return (w * sums / c.clamp_min(1.0)).sum()


def masked_loss(logits: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor,
                weights: LossWeights = LossWeights()) -> torch.Tensor:
    """The loss of one batch on its own (no cross-process normalisation)."""
    return combine(loss_sums(logits, target, hidden, valid, weights),
                   loss_counts(target, hidden, valid), weights)


def prior_sum(prior_logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over every valid cell and species (hidden or not) of the aux prior's BCE against the
    records: the prior sees no record, so it may learn from all of them. The trainer divides by
    the global number of valid (cell, species) pairs."""
    bce = F.binary_cross_entropy_with_logits(prior_logits.float(), target.float(), reduction="none")
    return (bce * valid.unsqueeze(1).float()).sum()


def target_group_cells(hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: valid cells where any species is hidden (those the target-group term scores)."""
    return hidden.any(1) & valid


def target_group_sum(observation_logits: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor,
                     valid: torch.Tensor) -> torch.Tensor:
    """Sum over valid cells where any species is hidden of the BCE of a PU model's observation
    logits (B, 1, H, W) against "a record of any species is here" (core.model.pu: the target-group
    pin of the observation instance). The trainer divides by the global count of those cells."""
    any_record = (target > 0.5).any(1).float()
    bce = F.binary_cross_entropy_with_logits(observation_logits[:, 0].float(), any_record, reduction="none")
    return (bce * target_group_cells(hidden, valid).float()).sum()
