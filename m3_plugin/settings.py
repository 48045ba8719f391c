"""The dock's choices that persist between QGIS sessions (QgsSettings, under ``m3/``)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from qgis.core import QgsSettings

PREFIX = "m3/"
REGION_MODES = ("drawn", "selection", "extent")
DEVICES = ("auto", "cpu")


@dataclass
class DockSettings:
    """What the user set in the dock last time. An empty ``model_paths`` means the bundled model."""

    model_paths: list[str] = field(default_factory=list)
    draws: int = 10
    batch_size: int = 8
    device: str = "auto"
    threshold: Optional[float] = None  # a fixed probability; None: flag the top share of the region
    flag_percent: float = 1.0          # the top share of the region flagged, in per cent
    output_dir: str = ""                # "": the cache folder
    hidden_species: list[str] = field(default_factory=list)
    region_mode: str = "drawn"
    sites_field: str = ""
    name_field: str = ""
    find_clusters: bool = True
    cluster_min_area_km2: float = 25.0
    cluster_min_distance_km: float = 10.0
    aux_only_map: bool = False

    @classmethod
    def load(cls, settings: Optional[QgsSettings] = None) -> "DockSettings":
        """Read the stored settings; a missing or unreadable value keeps its default."""
        s = settings or QgsSettings()
        out = cls()
        for f in fields(cls):
            key = PREFIX + f.name
            if not s.contains(key):
                continue
            raw = s.value(key)
            try:
                setattr(out, f.name, _parse(f.name, raw, getattr(out, f.name)))
            except (TypeError, ValueError):
                pass
        if out.region_mode not in REGION_MODES:
            out.region_mode = "drawn"
        if out.device not in DEVICES:
            out.device = "auto"
        out.draws = max(1, out.draws)
        out.batch_size = max(1, out.batch_size)
        return out

    def save(self, settings: Optional[QgsSettings] = None) -> None:
        s = settings or QgsSettings()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = "\n".join(value)
            elif value is None:
                value = ""
            s.setValue(PREFIX + f.name, value)


def _parse(name: str, raw, default):
    if name in ("model_paths", "hidden_species"):
        if isinstance(raw, (list, tuple)):
            return [str(v) for v in raw if str(v)]
        return [v for v in str(raw or "").split("\n") if v]
    if name == "threshold":
        return float(raw) if str(raw).strip() else None
    if isinstance(default, bool):
        return str(raw).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return str(raw or "")
