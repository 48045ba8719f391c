"""Model files: weights as safetensors plus a JSON card. Loading never unpickles."""
from __future__ import annotations

import json
import subprocess
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..atomic import atomic_path
from ..data.stack import AuxBand, Stack, normalisation_differences
from ..errors import InputError, ModelMismatchError
from .models import ModelConfig, build_model

CARD_VERSION = 1


@dataclass
class ModelCard:
    """Everything needed to rebuild a model and apply it to a stack, and what it scored."""

    species: list[str]
    aux_bands: list[dict[str, Any]]
    grid: dict[str, Any]              # {"crs": ..., "resolution": ...} the model was trained on
    tile_size: int
    model: dict[str, Any]             # ModelConfig.to_dict()
    masking: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5            # probability threshold chosen on validation blocks
    git_commit: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    format_version: int = CARD_VERSION
    # per-scenario maps to calibrated probabilities and the thresholds on that scale
    # (:mod:`core.model.calibration`); empty for a card written before calibration
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def aux_names(self) -> list[str]:
        return [b["name"] for b in self.aux_bands]

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def threshold_for(self, scenario: Optional[str]) -> float:
        """The threshold chosen on validation blocks for a masking scenario, on the scale the
        model's maps are written in: the calibrated one when the card carries a calibration; the
        pooled one for None or when the card has no per-scenario thresholds."""
        if self.calibration:
            per = self.calibration.get("thresholds", {})
            return float(per.get(scenario or "pooled", per.get("pooled", self.threshold)))
        per = self.metrics.get("validation", {}).get("thresholds", {})
        return float(per.get(scenario, self.threshold)) if scenario else float(self.threshold)

    @property
    def calibrated(self) -> bool:
        """Whether the model's maps are calibrated probabilities (see :attr:`scale_note`)."""
        return bool(self.calibration)

    def calibration_maps(self):
        """The card's :class:`~core.model.calibration.Calibration`, or None."""
        from .calibration import Calibration

        return Calibration.from_dict(self.calibration) if self.calibration else None

    @property
    def scale_note(self) -> str:
        """What a number on this model's maps means, in words for the legend and the report."""
        from .calibration import RAW_NOTE, SCALE_NOTE

        return SCALE_NOTE if self.calibrated else RAW_NOTE

    @property
    def tolerates_blank_aux(self) -> bool:
        """Whether the model was trained with aux bands blanked at random (``aux_dropout``), so
        that a band the user cannot supply may be left blank."""
        return float(self.training.get("aux_dropout") or 0) > 0

    def aux_band_objects(self) -> list[AuxBand]:
        return [AuxBand(**b) for b in self.aux_bands]

    @property
    def takes_aux(self) -> bool:
        """False for a model trained without aux bands (it reads none of the stack's)."""
        from .inputs import uses_aux

        return uses_aux(int(self.model["in_channels"]), int(self.model["classes"]))

    def aux_index(self, stack_aux_names: list[str]) -> Optional[list[int]]:
        """Where the model's aux bands are among a stack's (the stack may hold more bands, in any
        order): None when they are the stack's own, in order, or the model takes none."""
        names = list(stack_aux_names)
        if not self.takes_aux or names == self.aux_names:
            return None
        missing = [n for n in self.aux_names if n not in names]
        if missing:
            raise ModelMismatchError(
                f"The model reads {len(self.aux_names)} aux band(s); the stack lacks {len(missing)} of them: "
                f"{', '.join(missing)} (it has {', '.join(names) or 'none'}). Build the stack with the model's "
                "aux layers: for a model trained on the embedded layers, as the bundled one, build-stack "
                "without --aux, --points, --categories, --line-attribute and --faults adds them (--records "
                "keeps your records); or train a model on your stack (train --stack), or use a matching model.")
        return [names.index(n) for n in self.aux_names]

    def fit_stack(self, stack: Stack) -> Stack:
        """The stack as the model reads it: checked (:meth:`check_stack`), its aux bands those
        of the model, in the model's order."""
        self.check_stack(stack)
        index = self.aux_index(stack.aux_names)
        return stack if index is None else stack.select_aux([stack.aux_names[i] for i in index])

    def check_stack(self, stack: Stack) -> None:
        """Raise :class:`ModelMismatchError` when the stack's species differ, it lacks one of the
        model's aux bands (more bands are fine: see :meth:`fit_stack`) or its cells differ."""
        if list(stack.species) != list(self.species):
            raise ModelMismatchError(
                f"The model was trained on species {self.species} but the stack has {stack.species}. "
                "Build the stack with the model's species (build-stack --species ...) or use a matching model.")
        self.aux_index(stack.aux_names)
        res = self.grid.get("resolution")
        if res and abs(stack.grid.resolution - float(res)) > 1e-6 * float(res):
            raise ModelMismatchError(
                f"The model was trained at {res} m cells but the stack has {stack.grid.resolution} m. "
                "Build the stack at the model's resolution (build-stack --resolution).")
        differ = normalisation_differences(self.aux_band_objects(), stack.aux_bands) if self.takes_aux else []
        if differ:
            raise ModelMismatchError(
                f"The stack's aux bands were z-scored with other statistics than the model's: {'; '.join(differ[:5])}"
                f"{f' and {len(differ) - 5} more' if len(differ) > 5 else ''}. A stack built over another outline "
                "(or from other rasters) normalises its bands over its own region, so the model would read shifted "
                "values. Build the stack with the model's outline and aux layers, or train a model on this stack.")


def git_commit() -> str:
    """The current commit of the source tree, or '' outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def card_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_model(path: str | Path, model: nn.Module, card: ModelCard, half: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its card (.json) atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"Model files end in .safetensors; got {path}.")
    module = model.module if hasattr(model, "module") else model
    tensors = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "m3", "card": card_path(path).name})
    with atomic_path(card_path(path)) as tmp:
        tmp.write_text(json.dumps(asdict(card), indent=2))
    return path


def read_card(path: str | Path) -> ModelCard:
    path = Path(path)
    cp = card_path(path)
    if not path.exists():
        raise InputError(f"No model file at {path}. Train one with: python train_cli.py train --out {path}")
    if not cp.exists():
        raise InputError(f"The model {path} has no card {cp} beside it; copy the .json card with the weights.")
    try:
        text = json.loads(cp.read_text())
        if not isinstance(text, dict):
            raise TypeError(f"it holds a JSON {type(text).__name__}, not an object")
        known = {f.name for f in fields(ModelCard)}  # fields of newer versions are left aside
        card = ModelCard(**{k: v for k, v in text.items() if k in known})
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"The model card {cp} is not a valid M3 card ({e}).") from None
    problems = card_problems(card)
    if problems:
        raise InputError(f"The model card {cp} is not a valid M3 card: {'; '.join(problems)}. Use the card "
                         "written with the weights by train.")
    return card


def check_ensemble(cards: list[ModelCard], names: list[str]) -> None:
    """Raise :class:`ModelMismatchError` unless every model of an ensemble fits the same data as
    the first: the same species, aux bands and cell size."""
    first = cards[0]
    for name, card in zip(names[1:], cards[1:]):
        if card.species != first.species or card.aux_names != first.aux_names or \
                card.grid.get("resolution") != first.grid.get("resolution"):
            raise ModelMismatchError(f"{Path(name).name} was trained on other species, aux bands or cells than "
                                     f"{Path(names[0]).name}; an ensemble needs models of the same data.")


def read_ensemble_cards(paths: list[str | Path]) -> list[ModelCard]:
    """The cards of an ensemble's model files, checked to fit the same data (:func:`check_ensemble`)."""
    cards = [read_card(p) for p in paths]
    check_ensemble(cards, [str(p) for p in paths])
    return cards


def ensemble_threshold(cards: list[ModelCard], scenario: Optional[str] = None) -> float:
    """The probability threshold of an ensemble's prediction: the mean over its models of each one's
    validation threshold for the masking scenario (:meth:`ModelCard.threshold_for`; the pooled one
    for None). The one rule for the threshold written into a prediction and used on it."""
    import numpy as np

    return float(np.mean([c.threshold_for(scenario) for c in cards]))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _aux_band_problems(bands: list[dict[str, Any]]) -> list[str]:
    """Each aux band needs a finite ``mean`` and a finite positive ``std`` (how the model's inputs
    were z-scored); ``units`` and ``source`` are text."""
    bad = []
    for b in bands:
        if not _is_finite(b.get("mean")):
            bad.append(f"aux band {b['name']}: mean must be a finite number, not {b.get('mean')!r}")
        if not _is_finite(b.get("std")) or b["std"] <= 0:
            bad.append(f"aux band {b['name']}: std must be a finite positive number, not {b.get('std')!r}")
        unknown = set(b) - {"name", "mean", "std", "units", "source"}
        wrong = [k for k in ("units", "source") if k in b and not isinstance(b[k], str)]
        if unknown or wrong:
            bad.append(f"aux band {b['name']}: {'unknown fields ' + str(sorted(unknown)) if unknown else ''}"
                       f"{'; ' if unknown and wrong else ''}{' and '.join(wrong) + ' must be text' if wrong else ''}")
    return bad


def _section_problems(card: ModelCard) -> list[str]:
    """The card's grid, masking, training settings, hold-out split and thresholds, as the code
    that reads them needs them (each checked where it is present)."""
    from ..masks.masking import MaskSpec
    from ..masks.tiles import HoldoutSplit

    bad = []
    grid = card.grid if isinstance(card.grid, dict) else {}
    if "resolution" in grid and (not _is_finite(grid["resolution"]) or grid["resolution"] <= 0):
        bad.append(f"grid.resolution must be a cell size in metres (a positive number), not {grid['resolution']!r}")
    for key in ("crs", "crs_wkt"):
        if key in grid and not (isinstance(grid[key], str) and grid[key]):
            bad.append(f"grid.{key} must be a CRS in text (e.g. 'EPSG:5070'), not {grid[key]!r}")
    masking = card.masking if isinstance(card.masking, dict) else {}
    if masking:
        known = {f.name for f in fields(MaskSpec)}
        try:
            MaskSpec.from_dict({k: v for k, v in masking.items() if k in known})
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, InputError) as e:
            bad.append(f"masking is not a valid masking configuration ({e})")
    training = card.training if isinstance(card.training, dict) else {}
    for key in ("aux_dropout", "min_valid"):
        if training.get(key) is not None and not _is_finite(training[key]):
            bad.append(f"training.{key} must be a number, not {training[key]!r}")
    holdout = card.data.get("holdout") if isinstance(card.data, dict) else None
    if holdout is not None:
        try:
            split = holdout["split"]
            if not isinstance(split, dict):
                raise TypeError("not a JSON object")
            HoldoutSplit.from_dict(split)
        except (TypeError, ValueError, KeyError, InputError) as e:
            bad.append(f"data.holdout.split is not a hold-out split ({e})")
    validation = card.metrics.get("validation", {}) if isinstance(card.metrics, dict) else {}
    per = validation.get("thresholds", {}) if isinstance(validation, dict) else None
    if not isinstance(per, dict) or not all(_is_finite(v) and 0.0 <= v <= 1.0 for v in per.values()):
        bad.append("metrics.validation.thresholds must map scenarios to probabilities between 0 and 1")
    return bad


def card_problems(card: ModelCard) -> list[str]:
    """What is wrong with a card's fields (types, ranges, architecture and its options); empty
    when nothing is."""
    from .models import MODEL_BUILDERS, unknown_model_options

    bad = []
    if not isinstance(card.species, list) or not card.species or not all(isinstance(s, str) and s
                                                                        for s in card.species):
        bad.append(f"species must be a list of symbols, not {card.species!r}")
    if not isinstance(card.aux_bands, list) or not all(isinstance(b, dict) and isinstance(b.get("name"), str)
                                                       for b in card.aux_bands):
        bad.append("aux_bands must be a list of bands with a name")
    else:
        bad += _aux_band_problems(card.aux_bands)
    bad += _section_problems(card)
    if not _is_int(card.tile_size) or card.tile_size <= 0:
        bad.append(f"tile_size must be a positive whole number of cells, not {card.tile_size!r}")
    if not _is_number(card.threshold) or not 0.0 <= float(card.threshold) <= 1.0:
        bad.append(f"threshold must be a probability between 0 and 1, not {card.threshold!r}")
    for name in ("grid", "masking", "training", "metrics", "data", "calibration"):
        if not isinstance(getattr(card, name), dict):
            bad.append(f"{name} must be a JSON object")
    if isinstance(card.calibration, dict) and card.calibration:
        from .calibration import Calibration

        try:
            Calibration.from_dict(card.calibration)
        except ValueError as e:
            bad.append(f"calibration: {e}")
        th = card.calibration.get("thresholds", {})
        if not isinstance(th, dict) or not all(_is_number(v) and 0.0 <= float(v) <= 1.0 for v in th.values()):
            bad.append("calibration.thresholds must map scenarios to probabilities between 0 and 1")
    model = card.model
    if not isinstance(model, dict):
        return bad + ["model must be a JSON object"]
    unknown_keys = set(model) - {"arch", "in_channels", "classes", "encoder_depth", "options"}
    if unknown_keys:
        bad.append(f"model has unknown fields {sorted(unknown_keys)}")
    arch = model.get("arch", "unet")
    if arch not in MODEL_BUILDERS:
        bad.append(f"model.arch '{arch}' is not an architecture of this version (known: {', '.join(MODEL_BUILDERS)})")
    for name in ("in_channels", "classes"):
        if not _is_int(model.get(name)) or model[name] <= 0:
            bad.append(f"model.{name} must be a positive whole number, not {model.get(name)!r}")
    if "encoder_depth" in model and not _is_int(model["encoder_depth"]):
        bad.append(f"model.encoder_depth must be a whole number, not {model['encoder_depth']!r}")
    options = model.get("options", {})
    if not isinstance(options, dict):
        bad.append("model.options must be a JSON object")
    elif arch in MODEL_BUILDERS:
        unknown = unknown_model_options(arch, options)
        if unknown:
            bad.append(f"model.options {unknown} are not options of the '{arch}' architecture")
    if _is_int(model.get("classes")) and isinstance(card.species, list) and model["classes"] != len(card.species):
        bad.append(f"model.classes ({model['classes']}) is not the number of species ({len(card.species)})")
    return bad


def load_model(path: str | Path, device: Optional[torch.device] = None) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model from its card and load the safetensors weights (float32, eval mode)."""
    from safetensors.torch import load_file

    card = read_card(path)
    try:
        model = build_model(card.model_config)
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise InputError(f"The model card {card_path(path)} describes a model this version cannot build ({e}).") from None
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise InputError(f"{path} is not a readable safetensors file ({e}).") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensors of other sizes than the card's layers
        sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise ModelMismatchError(
            f"The weights in {path} do not fit the layer sizes in its card {card_path(path).name} "
            f"({len(sizes)} tensors of other sizes, e.g. {sizes[0] if sizes else e}). Use the card written with "
            "these weights.") from None
    if missing or unexpected:
        raise ModelMismatchError(f"The weights in {path} do not fit the architecture in its card "
                                 f"(missing {len(missing)}, unexpected {len(unexpected)} tensors).")
    model.eval()
    if device is not None:
        model.to(device)
    return model, card
