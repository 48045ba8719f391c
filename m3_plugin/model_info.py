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
             f"Threshold: {card.threshold:.2f}"]
    val = (card.metrics or {}).get("validation", card.metrics or {})
    nums = [(k, v) for k, v in val.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums:
        lines.append("Validation: " + ", ".join(f"{k} {v:.3g}" for k, v in nums[:6]))
    return "<br>".join(lines)


def read_cards(paths: list[str]):
    """The cards of an ensemble's models, checked to fit the same data (:func:`core.model.model_file.read_ensemble_cards`)."""
    from .core.model.model_file import read_ensemble_cards

    return read_ensemble_cards(paths)
