"""Positive-unlabeled (PU) learning with two M3 instances: records = presence × observation.

An empty cell of a presence layer means "nobody recorded anything here", not "no mineral". A
:class:`PUModel` explains the records of species ``s`` at a cell as

    P(record_s) = σ(presence_s) · σ(observation)

- the **presence instance** is the ordinary M3 model (any registered architecture, with its
  context features): it sees the visible records, the hidden indicators and the aux bands, and
  its logits are the model's output: ``predict``, ``evaluate``, the dock and the Processing
  algorithms write and score its probability, as for any model;
- the **observation instance** is a small U-Net (ResNet-18 encoder cut to 3 stages, thin decoder)
  plus a linear head that sees only :class:`core.model.coverage.CoverageFeatures`: where records
  of any species are visible, how dense they are around each cell at several scales, and which
  cells are hidden. It sees no aux band and no hidden record (checked in ``tests/test_pu.py``).
  Its output is **one map shared by all species** (a survey records whatever it finds: coverage
  is a property of who looked, not of what was there). A per-species observation fed with each
  species' own visible records would be the neighbour-density baseline and could explain each
  species' records on its own, leaving nothing to the presence instance.

How the split is pinned (the product alone does not identify its factors):

1. inputs: the observation instance cannot see the aux layers nor tell species apart, so what
   varies between species or follows the terrain must come from the presence instance;
2. a target-group term (the ``target_group`` weight of the ``pu`` model option; Phillips et al.
   2009's target-group background: the records of all species together measure survey effort):
   on hidden cells, σ(observation) is also trained by BCE to give the chance that a record of any
   species is there. Then σ(presence_s) ≈ P(record_s) / P(any record): how likely a survey that
   records something here records species ``s``.

The loss of the records is the house loss (:mod:`core.training.loss`) applied to P(record)
through :func:`record_logits`, with the Dice and recall weights at 0 by default (``train --pu``,
preset ``quick_pu``: ``core.training.presets.PU_LOSS``): BCE on P(record) on hidden cells, the
likelihood of the presence-observation model of occupancy studies (a record needs both), a PU
risk that treats empty cells as unlabeled, not negative. Dice and recall on the product are
what saturated the presence instance: P(record) can never exceed σ(observation), so they keep
pushing σ(presence) up everywhere, to 1 where its gradient vanishes (seed 0 of ``quick`` with
``pu``, default stack: validation AUPRC 0.002-0.004, threshold 1.0).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .context import HEAD_GAIN
from .coverage import CoverageFeatures

PU_OPTION = "pu"  # the model option that makes a PUModel (core.model.models.build_model)
DEFAULT_SPEC: dict[str, Any] = {"sigmas": [2, 8, 24], "encoder_depth": 3, "decoder_channels": [32, 16, 8],
                                "target_group": 1.0}
LOG_P_MAX = math.log1p(-1e-6)  # P(record) at most 1 - 1e-6, so its logit stays finite
OUTPUTS = ("presence", "observation", "record")


def pu_spec(value: Any) -> dict[str, Any]:
    """The observation instance's settings: :data:`DEFAULT_SPEC` updated with ``value`` (a dict,
    or true for the defaults). Raises ValueError for unknown keys or bad values."""
    spec = dict(DEFAULT_SPEC)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(DEFAULT_SPEC))
        if unknown:
            raise ValueError(f"the {PU_OPTION} model option takes {sorted(DEFAULT_SPEC)}, not {unknown}")
        spec.update(value)
    elif value is not True:
        raise ValueError(f"the {PU_OPTION} model option is true or a dict of {sorted(DEFAULT_SPEC)}, not {value!r}")
    if not 1 <= int(spec["encoder_depth"]) <= 5 or len(spec["decoder_channels"]) != int(spec["encoder_depth"]):
        raise ValueError(f"{PU_OPTION}: encoder_depth in 1-5 with as many decoder_channels; got {spec}")
    if float(spec["target_group"]) < 0:
        raise ValueError(f"{PU_OPTION}: target_group is a loss weight >= 0, not {spec['target_group']}")
    return spec


class ObservationModel(nn.Module):
    """(B, 2S+A, H, W) model inputs → (B, 1, H, W) observation logits, from coverage features only."""

    def __init__(self, n_species: int, spec: dict[str, Any]) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.coverage = CoverageFeatures(n_species, spec["sigmas"])
        depth = int(spec["encoder_depth"])
        c = self.coverage.channels
        self.unet = smp.Unet(encoder_name="resnet18", encoder_weights=None, encoder_depth=depth,
                             decoder_channels=tuple(int(v) for v in spec["decoder_channels"]),
                             in_channels=c, classes=1)
        for stage in range(depth, 5):  # the stages a shallow encoder never runs: not built, not stored
            delattr(self.unet.encoder, f"layer{stage}")
        self.head = nn.Conv2d(c, 1, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.coverage(x)
        return self.unet(f) + HEAD_GAIN * self.head(f)


def record_logits(presence_logits: torch.Tensor, observation_logits: torch.Tensor) -> torch.Tensor:
    """Logits of P(record) = σ(presence) · σ(observation) (observation (B, 1, H, W) broadcast over
    species), computed in log space in float32: ``sigmoid`` of the result is the product."""
    log_p = (F.logsigmoid(presence_logits.float()) + F.logsigmoid(observation_logits.float())).clamp_max(LOG_P_MAX)
    log_1mp = torch.where(log_p > -math.log(2.0), torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p)))
    return log_p - log_1mp


class PUModel(nn.Module):
    """Two M3 instances (see the module docstring). ``forward`` returns the presence logits (B, S,
    H, W); in training it also keeps the observation logits (B, 1, H, W) in ``last_observation``
    for the loss. ``output = "observation"`` makes ``forward`` return the observation logits
    broadcast to (B, S, H, W) instead (``predict --observation``); ``output = "record"`` the
    logits of P(record) = σ(presence) · σ(observation), what the loss fits to the records
    (``predict --record``)."""

    def __init__(self, presence: nn.Module, n_species: int, spec: dict[str, Any]) -> None:
        super().__init__()
        self.presence = presence
        self.observation = ObservationModel(n_species, spec)
        self.n_species = n_species
        self.target_group = float(spec["target_group"])
        self.last_observation: Optional[torch.Tensor] = None
        self.output = "presence"

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(presence logits (B, S, H, W), observation logits (B, 1, H, W))."""
        return self.presence(x), self.observation(x)

    def record_probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(record) (B, S, H, W): the product of the two instances' probabilities."""
        a, b = self.both(x)
        return torch.sigmoid(a.float()) * torch.sigmoid(b.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output == "record":
            return record_logits(*self.both(x))
        if self.output == "observation":
            b = self.observation(x)
            return b.expand(-1, self.n_species, -1, -1)
        logits = self.presence(x)
        self.last_observation = self.observation(x) if self.training else None
        return logits


def card_description(spec: dict[str, Any], loss: dict[str, Any]) -> dict[str, Any]:
    """What a PU model's card says of how it was trained and what each instance sees (``loss``:
    the weights of the house loss's terms, :class:`core.training.loss.LossWeights` as a dict)."""
    terms = " + ".join(f"{loss[t]:g} {name}" for t, name in (("bce", "BCE"), ("dice", "soft Dice"),
                                                               ("recall", "recall")) if loss.get(t))
    return {
        "scheme": "positive-unlabeled: P(record_s) = sigmoid(presence_s) * sigmoid(observation)",
        "presence_instance": "the M3 model of model.arch/options: visible records, hidden indicators, aux bands; "
                             "its probability is what predict, evaluate, the dock and Processing write",
        "observation_instance": "U-Net (resnet18 encoder, depth {encoder_depth}, decoder {decoder_channels}) + "
                                "linear head on coverage features of the VISIBLE records only: any-species "
                                "record indicator, share of species recorded, share of species visible, and "
                                "Gaussian share of cells with a visible record of any species (and its log, and "
                                "the visible weight) at sigmas {sigmas} cells; no aux band, no hidden record; "
                                "one map shared by all species".format(**spec),
        "loss": f"{terms or 'nothing'} on hidden cells, on P(record) = presence x observation",
        "target_group": f"weight {spec['target_group']}: BCE of sigmoid(observation) against a record of any "
                        "species on hidden cells (pins the observation instance to survey effort)",
        "observation_output": "predict --observation",
    }
