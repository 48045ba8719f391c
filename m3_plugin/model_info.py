"""What the dock shows about the model: the bundled model, the cards of an ensemble, a summary."""
from __future__ import annotations

from pathlib import Path


def default_model_paths() -> list[str]:
    """The bundled model when it is there (none while core's packages are missing)."""
    try:
        from .core.data import defaults
    except ImportError:
        return []

    return [str(defaults.BUNDLED_MODEL)] if defaults.BUNDLED_MODEL.exists() else []


def card_text(card, paths: list[str]) -> str:
    """A short description of a model card for the dock."""
    g = card.grid
    cfg = card.model_config
    lines = [f"<b>{Path(paths[0]).name}</b>" + (f" + {len(paths) - 1} more" if len(paths) > 1 else ""),
             f"Species: {', '.join(card.species)}",
             f"Aux bands: {', '.join(card.aux_names) or 'none'}",
             f"Cells: {float(g.get('resolution', 0)):g} m in {g.get('crs', '?')}; tiles of {card.tile_size}; "
             f"{cfg.arch} resnet{cfg.encoder_depth}",
             scale_text(card)]
    val = (card.metrics or {}).get("validation", card.metrics or {})
    # the raw pooled threshold is not one a run uses: the validated thresholds are shown above
    nums = [(k, v) for k, v in val.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k != "threshold"]
    if nums:
        lines.append("Validation: " + ", ".join(f"{k} {v:.3g}" for k, v in nums[:6]))
    return "<br>".join(lines)


def scale_text(card) -> str:
    """What the model's numbers mean, and its validated thresholds per question, for the card."""
    names = {"region": "region hidden", "species": "species hidden", "both": "species in a region"}
    thresholds = ", ".join(f"{names[sc]} {card.threshold_for(sc):.3g}" for sc in names)
    if card.calibrated:
        ece = card.calibration.get("test_ece", {})
        worst = max((v.get("after", 0.0) for v in ece.values() if isinstance(v, dict)), default=float("nan"))
        return (f"Probabilities: calibrated on validation blocks (test ECE ≤ {worst:.4f}). "
                f"Validated thresholds: {thresholds}")
    return f"Scores: not calibrated (no fixed number means the same twice). Validated thresholds: {thresholds}"


def read_cards(paths: list[str]):
    """The cards of an ensemble's models, checked to fit the same data (:func:`core.model.model_file.read_ensemble_cards`)."""
    from .core.model.model_file import read_ensemble_cards

    return read_ensemble_cards(paths)
