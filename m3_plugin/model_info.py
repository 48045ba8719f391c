"""What the dock shows about the model: the bundled model, the cards of an ensemble, a summary."""
from __future__ import annotations

from pathlib import Path


def default_model_paths() -> list[str]:
    """The bundled model when it is there (none while core's packages are missing)."""
    try:
        from .core import defaults
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
    """The card of the first model; every other model of the ensemble must fit the same data."""
    from .core.errors import ModelMismatchError
    from .core.model_file import read_card

    cards = [read_card(p) for p in paths]
    for p, c in zip(paths[1:], cards[1:]):
        if c.species != cards[0].species or c.aux_names != cards[0].aux_names or c.grid.get("resolution") != \
                cards[0].grid.get("resolution"):
            raise ModelMismatchError(f"{Path(p).name} was trained on other species, aux bands or cells than "
                                     f"{Path(paths[0]).name}; an ensemble needs models of the same data.")
    return cards[0]
