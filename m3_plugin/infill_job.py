"""One infill run as plain data (:class:`InfillJob`), built from what the dock gathered
(:class:`JobRequest`: the chosen layers and values) by :func:`build_job` on the main thread: the
layers are exported to core's inputs here, the grid and the threshold come from core's rules."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from qgis.core import QgsCoordinateReferenceSystem, QgsMapLayer, QgsRasterLayer, QgsRectangle, QgsVectorLayer

from . import layer_sources as ls
from .core.data.grid import Grid
from .core.inference.flagging import FlagRule
from .core.inference.layer_inputs import LayerInputs, PointRecords, VectorShapes

SITES_MARGIN_M = 200_000.0  # known sites are exported this far around the run's grid


@dataclass
class InfillJob:
    """Everything a run needs, as plain data."""

    name: str
    folder: Path
    inputs: LayerInputs
    region: VectorShapes
    hide_species: list[str]
    model_paths: list[str]
    grid: Grid                 # the model's cells around the region (core.inference.layer_inputs.region_grid)
    draws: int
    batch_size: int
    device: str
    flag_rule: "FlagRule"      # which cells are flagged (core.inference.flagging): the threshold is set after the run
    validated_threshold: float  # the models' validated threshold for this kind of question (for reference)
    scale_note: str = ""        # what a number on the map means (calibrated or not)
    calibrated: bool = False    # whether every model of the run is calibrated
    sites: Optional[PointRecords] = None
    sites_layer_id: str = ""
    find_clusters: bool = True
    cluster_min_area_km2: float = 25.0
    cluster_min_distance_km: float = 10.0
    aux_only_map: bool = False          # also the aux-only map of the hidden species (core.inference.aux_map)
    label_field: str = "nearest_site"   # the clusters' label (a field of the clusters layer)
    settings: Optional[dict] = None     # what the user asked, for the report
    threshold: Optional[float] = None   # the flag rule's threshold, set once the run's map is known


@dataclass
class JobRequest:
    """What the dock gathered for a run: the models, the layers chosen per row, the options."""

    cards: list                                   # the ensemble's model cards (core.model.model_file)
    model_paths: list[str]
    hidden: list[str]
    region: VectorShapes
    region_text: str
    minerals: dict[str, tuple[Optional[QgsMapLayer], Any]]   # species → (layer, band or commodity field)
    aux: dict[str, tuple[Optional[QgsMapLayer], int]]        # aux band → (layer, band)
    outline: Optional[QgsVectorLayer] = None
    sites: Optional[tuple[QgsVectorLayer, str, str]] = None   # (layer, commodity field, name field)
    draws: int = 1
    batch_size: int = 4
    device: str = "auto"
    device_text: str = ""
    flag_share: float = 0.01                      # the top share of the region flagged
    threshold_override: Optional[float] = None    # a fixed probability instead
    find_clusters: bool = True
    cluster_min_area_km2: float = 25.0
    cluster_min_distance_km: float = 10.0
    aux_only_map: bool = False
    run_base: Optional[Path] = None               # where run folders go (None: the M3 cache)


def job_threshold(cards: list, hidden: list[str]) -> float:
    """The ensemble's validated threshold for this kind of question (a region with some or all
    species hidden): what :func:`core.inference.infer.infill` writes into the prediction
    (:func:`core.model.model_file.ensemble_threshold`), shown beside the run's own threshold."""
    from .core.masks.hiding import hiding_scenario
    from .core.model.model_file import ensemble_threshold

    return ensemble_threshold(cards, hiding_scenario(hidden, True, cards[0].species))


def run_folder(base: Optional[Path], name: str) -> Path:
    """A new folder for a run called ``name`` under ``base`` (the M3 cache's runs folder for None)."""
    from .core.data import defaults

    base = Path(base or defaults.cache_dir() / "runs")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    folder, n = base / slug, 1
    while folder.exists():
        n += 1
        folder = base / f"{slug}_{n}"
    return folder


def build_job(req: JobRequest) -> InfillJob:
    """The run as plain data: the layers exported on the model's grid around the region (and the known
    sites a margin around it); an :class:`InputError` says what is missing."""
    from .core.errors import InputError
    from .core.inference.layer_inputs import as_region, region_grid

    card = req.cards[0]
    grid = region_grid(card, as_region(req.region))
    qcrs = QgsCoordinateReferenceSystem.fromWkt(grid.crs.to_wkt())
    left, bottom, right, top = grid.bounds
    extent = (QgsRectangle(left, bottom, right, top), qcrs)
    points: dict[tuple[str, str], PointRecords] = {}
    minerals = {}
    for sym, (layer, choice) in req.minerals.items():
        if layer is None:
            raise InputError(f"No layer chosen for {sym}. Pick a presence raster or a point layer of records "
                             "in Mineral layers (or click Load example data).")
        if isinstance(layer, QgsRasterLayer):
            minerals[sym] = ls.raster_band(layer, int(choice or 1))
        else:
            key = (layer.id(), choice or "")
            if key not in points:
                points[key] = ls.point_records(layer, choice or "", extent)
            minerals[sym] = points[key]
    aux = {}
    for name, (layer, band) in req.aux.items():
        if layer is None:
            aux[name] = None  # left blank: LayerInputs.check_complete decides whether the model allows it
        elif isinstance(layer, QgsRasterLayer):
            aux[name] = ls.raster_band(layer, int(band or 1))
        else:
            aux[name] = ls.layer_shapes(layer)
    outline = ls.layer_shapes(req.outline, extent=extent) if req.outline is not None else None
    inputs = LayerInputs(list(card.species), minerals, card.aux_band_objects(), aux, outline,
                         blank_aux_allowed=card.tolerates_blank_aux)
    inputs.check_complete()
    sites, sites_id = None, ""
    if req.sites is not None:
        layer, field_name, name_field = req.sites
        # wider than the grid, so that distances from clusters to the nearest site are right
        m = SITES_MARGIN_M
        sites = ls.point_records(layer, field_name, (QgsRectangle(left - m, bottom - m, right + m, top + m), qcrs),
                                 name_field)
        sites_id = layer.id()
    what = ", ".join(req.hidden) if req.hidden else "all species"
    name = f"M3 infill {what} {time.strftime('%H:%M:%S')}"
    validated = job_threshold(req.cards, req.hidden)
    rule = FlagRule(share=req.flag_share, threshold=req.threshold_override)
    settings = {"model": ", ".join(Path(p).name for p in req.model_paths), "hidden species": what,
                "region": req.region_text, "mask draws per model": req.draws,
                "known sites": req.sites[0].name() if sites is not None else "none"}
    replaced = [n for n, (layer, band) in req.aux.items() if layer is not None and not (
        isinstance(layer, QgsRasterLayer) and ls.band_description(layer, int(band or 1)) == f"aux_{n}")]
    if replaced:
        settings["aux layers replaced by yours"] = ", ".join(replaced)
    return InfillJob(name=name, folder=run_folder(req.run_base, name.replace(", ", "-")), inputs=inputs,
                     region=req.region, hide_species=list(req.hidden), model_paths=list(req.model_paths), grid=grid,
                     draws=req.draws, batch_size=req.batch_size, device=req.device, flag_rule=rule,
                     validated_threshold=validated, scale_note=req.cards[0].scale_note,
                     calibrated=all(c.calibrated for c in req.cards),
                     sites=sites, sites_layer_id=sites_id, find_clusters=req.find_clusters,
                     cluster_min_area_km2=req.cluster_min_area_km2,
                     cluster_min_distance_km=req.cluster_min_distance_km, aux_only_map=req.aux_only_map,
                     settings=settings)
