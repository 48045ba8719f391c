"""Named training configurations; every value can be overridden from the command line.

The poster's best configuration reads "N = 10K, A = 0.8, H = 152, K = 64, 30K gradient
steps". The letters are not defined in the text we have; this project reads them as:

- N = number of training tiles (``tiles``: 10,000 tiles sampled once, batches drawn from them);
- H = depth of the ResNet encoder (``encoder_depth``: resnet152);
- K = tile side in cells (``tile_size``: 64 cells of 1 mile);
- A = the masked-area fraction of the hidden region (``mask.region_fraction``: 0.8). A loss
  weight is the other plausible reading; the loss weights are separate options.
"""
from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..model.lean_input import with_lean_input

# The loss weights ``train --pu`` sets unless given: BCE on P(record) alone (core/model/pu.py).
PU_LOSS = {"loss.dice": 0.0, "loss.recall": 0.0}

# The quick preset (its reading is in PRESETS below); quick_prior and quick_pu are it with one change each.
QUICK: dict[str, Any] = {"tiles": 2000, "tile_size": 64, "encoder_depth": 18, "steps": 800, "batch_size": 8,
                         "lr": 1e-3, "warmup_steps": 40, "checkpoint_every": 200, "val_every": 200,
                         "model_options": {"decoder_channels": [128, 64, 32, 16, 16], "context_sigmas": [2, 6],
                                           "aux_sigmas": [2, 6]}}


# The lean input path (core/model/lean_input.py) chosen on validation blocks among four candidates
# (quick preset, seed 0; docs/results/lean_model/README.md): a 1 x 1 reduction of the backbone's
# inputs to 16 channels and a 3 x 3 stem; half the multiply-adds per cell and evaluation of the
# v0.4.1 model (60 k against 120 k), validation Dice and AUPRC level or higher in every scenario.
LEAN_INPUT: dict[str, Any] = {"input_reduction": 16, "stem_kernel": 3}


# The cell-block design (core/model/context.py: ContextModel's cell_shuffle): the lean input path with
# the U-Net on 2 x 2 blocks of cells (4 encoder stages, so that it still halves the cells 5 times),
# context and aux features on block means, a per-cell head on each cell's own records and aux bands.
# A draw costs about half of the lean design's on a CPU (docs/results/lean_model/README.md), a training
# step about 0.4 (quick preset, side by side), so its presets train for 3 x the steps in about the same time.
CELL_BLOCKS: dict[str, Any] = {**LEAN_INPUT, "cell_shuffle": 2, "encoder_stages": 4,
                               "decoder_channels": [64, 32, 16, 16]}
CELL_BLOCKS_STEPS = 3  # times the base preset's steps


def with_cell_blocks(config: dict[str, Any]) -> dict[str, Any]:
    """A preset's overrides with the cell-block design and :data:`CELL_BLOCKS_STEPS` times its steps."""
    return {**config, "steps": CELL_BLOCKS_STEPS * config["steps"],
            "model_options": {**config["model_options"], **CELL_BLOCKS}}


def _quick_with(overrides: dict[str, Any], **model_options: Any) -> dict[str, Any]:
    """The quick preset with these overrides and these model options added."""
    return {**QUICK, **overrides, "model_options": {**QUICK["model_options"], **model_options}}


PRESETS: dict[str, dict[str, Any]] = {
    # About 6 minutes on one CPU core (0.35 s a step): for tests, demos and `compare`. At 300 steps
    # the validation Dice was still rising steeply; 800 is where this preset's budget ends. The
    # neighbourhood-context features (core/context.py) raised validation Dice at 800 steps, seed 0,
    # from 0.024 / 0.253 / 0.262 to 0.063 / 0.496 / 0.497 (region / species / both); the aux bands'
    # local mean and spread (``aux_sigmas``) raised the mean validation AUPRC over 3 seeds with one
    # species hidden from 0.376 (no-aux U-Net 0.382) to 0.397, Dice from 0.501 (0.510) to 0.510.
    "quick": QUICK,
    # quick with the aux prior (core/context.py: AuxPrior): an aux-only branch trained on every valid
    # cell, whose logits are added to the model's. Compared with quick on the discovery test (README).
    "quick_prior": _quick_with({"loss.prior": 1.0}, aux_prior=32),
    # quick with positive-unlabeled learning (core/model/pu.py): quick's model is the presence
    # instance; a small U-Net on the visible records' coverage is the observation instance; the
    # records are fitted as presence x observation by BCE alone (PU_LOSS: with Dice and recall on
    # the product, seed 0 on the default stack, the presence map saturated at 1: validation AUPRC
    # 0.002-0.004). ``train --pu`` adds the option and PU_LOSS to any preset.
    "quick_pu": _quick_with(PU_LOSS, pu=True),
    # The poster's configuration, as read above.
    "paper": {"tiles": 10000, "tile_size": 64, "encoder_depth": 152, "steps": 30000, "batch_size": 32,
              "lr": 3e-4, "warmup_steps": 500, "checkpoint_every": 500, "val_every": 1000,
              "mask.region_fraction": 0.8},
    # The v0.4.1 model (the plugin's before v0.5, which is ``bundled_lean``): quick's model trained longer on the
    # poster's N = 10,000 tiles, each aux band blanked for half the training tiles (aux dropout 0.5:
    # over 3 seeds, validation Dice with one species hidden 0.583 / 0.563 (species / both) against
    # 0.566 / 0.559 without dropout, AUPRC level, seed spread a third; 0.25 was lower on seed 0; it
    # also lets the model run with a band a user lacks); about 22 minutes on one CPU core. See the README.
    "bundled": {"tiles": 10000, "tile_size": 64, "encoder_depth": 18, "steps": 3000, "batch_size": 8,
                "lr": 1e-3, "warmup_steps": 100, "checkpoint_every": 500, "val_every": 500,
                "aux_dropout": 0.5,
                "model_options": {"decoder_channels": [128, 64, 32, 16, 16], "context_sigmas": [2, 6],
                                  "aux_sigmas": [2, 6]}},
}
# bundled with the lean input path: the bundled model v0.5 (seed 2, chosen on validation blocks); with the
# cell blocks as well: v0.6 (seed 1, chosen on validation blocks)
PRESETS["bundled_lean"] = {**PRESETS["bundled"],
                           "model_options": with_lean_input(PRESETS["bundled"]["model_options"], LEAN_INPUT)}
PRESETS["quick_lean"] = {**QUICK, "model_options": with_lean_input(QUICK["model_options"], LEAN_INPUT)}
PRESETS["bundled_blocks"] = with_cell_blocks(PRESETS["bundled"])
PRESETS["quick_blocks"] = with_cell_blocks(QUICK)


def preset(name: str) -> dict[str, Any]:
    """The overrides of a preset (a copy)."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise InputError(f"Unknown preset '{name}'; choose one of {', '.join(PRESETS)}.") from None
