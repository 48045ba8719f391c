"""A finished run as project layers (one group per run, read at a glance) and the comparison
table's rows. Top to bottom: the known sites of the hidden species (small outlined dots), the hidden
region (an outline), the discovered clusters (by species, labelled), the mean probability per hidden
species (the first one shown), the aux-only map per hidden species when asked (hidden) and the
uncertainty (hidden)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from qgis.core import QgsLayerTreeGroup, QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtGui import QColor

from . import styles
from .core.errors import M3Error
from .layer_sources import raster_layer

if TYPE_CHECKING:
    from .core.inference.site_comparison import SpeciesComparison
    from .core.evaluation.run_summary import SpeciesScores

REGION_COLOUR = QColor(30, 30, 220)
KNOWN_SITES_TABLE = "known_sites"
REGION_LAYER_NAME = "hidden region"


@dataclass
class RunOutputs:
    """What a finished infill wrote, and what the dock shows about it."""

    name: str
    folder: Path
    prediction: Path                      # GeoTIFF with bands mean_<sp>, std_<sp>
    species: list[str]
    threshold: float
    region: Path                          # GeoPackage of the hidden region
    clusters: Optional[Path] = None       # GeoPackage of discovered clusters
    cluster_count: int = 0
    std_max: dict[str, float] = field(default_factory=dict)
    comparison: list["SpeciesComparison"] = field(default_factory=list)
    sites_layer_id: str = ""
    summary: str = ""
    known_sites: Optional[Path] = None    # GeoPackage: the known sites naming a hidden species
    known_sites_count: int = 0
    scores: list["SpeciesScores"] = field(default_factory=list)  # for the table, the curve, the slider
    settings: dict[str, Any] = field(default_factory=dict)        # what the run was asked (the report)
    label_field: str = "nearest_site"     # the clusters' label
    aux_only: Optional[Path] = None       # GeoTIFF: the aux-only map of the hidden species (mean_<sp>)
    aux_only_range: dict[str, tuple[float, float]] = field(default_factory=dict)  # its colour stretch
    flag_text: str = ""                   # how the run's threshold was chosen, in words
    validated_threshold: float = float("nan")  # the models' validated threshold for this question
    scale_note: str = ""                  # what a number on the map means
    calibrated: bool = False              # whether the map's numbers are calibrated probabilities
    mean_max: dict[str, float] = field(default_factory=dict)   # each map's highest value (colour stretch)


def _band(path: Path, name: str) -> int:
    import rasterio

    with rasterio.open(path) as src:
        return list(src.descriptions).index(name) + 1


def probability_name(sym: str) -> str:
    return f"{sym} mean probability"


def aux_only_name(sym: str) -> str:
    return f"{sym} aux-only map (no record as input)"


def run_layers(out: RunOutputs) -> list[tuple[QgsMapLayer, bool]]:
    """(layer, visible) for the run, top to bottom; raises :class:`M3Error` when one does not load."""
    layers: list[tuple[QgsMapLayer, bool]] = []
    if out.known_sites is not None:
        what = ", ".join(out.species)
        sites = QgsVectorLayer(f"{out.known_sites}|layername={KNOWN_SITES_TABLE}",
                               f"known {what} sites ({out.known_sites_count})", "ogr")
        styles.style_sites(sites, 2.0, QColor(0, 230, 255), hollow=True)
        layers.append((sites, True))
    region = QgsVectorLayer(f"{out.region}|layername=region", REGION_LAYER_NAME, "ogr")
    styles.style_outline(region, REGION_COLOUR, 0.8, dashed=True)
    layers.append((region, True))
    if out.clusters is not None:
        clusters = QgsVectorLayer(str(out.clusters), f"discovered clusters ({out.cluster_count})", "ogr")
        if clusters.isValid():
            styles.style_clusters(clusters, out.species, out.label_field)
        layers.append((clusters, True))
    for i, sym in enumerate(out.species):
        mean = raster_layer(str(out.prediction), probability_name(sym))
        if mean.isValid():
            styles.style_probability(mean, out.threshold, _band(out.prediction, f"mean_{sym}"), sym,
                                     top=out.mean_max.get(sym, 1.0), calibrated=out.calibrated)
        layers.append((mean, True))  # every hidden species' map in view (each is transparent below its threshold)
    if out.aux_only is not None:
        for sym in out.species:
            if sym not in out.aux_only_range:
                continue
            aux = raster_layer(str(out.aux_only), aux_only_name(sym))
            if aux.isValid():
                styles.style_ranking(aux, _band(out.aux_only, f"mean_{sym}"), sym, *out.aux_only_range[sym])
            layers.append((aux, False))
    for sym in out.species:
        std = raster_layer(str(out.prediction), f"{sym} uncertainty (std)")
        if std.isValid():
            styles.style_uncertainty(std, out.std_max.get(sym, 0.25), _band(out.prediction, f"std_{sym}"), sym)
        layers.append((std, False))
    bad = [layer.name() for layer, _ in layers if not layer.isValid()]
    if bad:
        raise M3Error(f"The result layers {', '.join(bad)} did not load from {out.folder}. "
                      "Check that the folder is readable and retry.")
    return layers


def add_run_group(out: RunOutputs, hide_layer_ids: Iterable[str] = ()) -> QgsLayerTreeGroup:
    """Add the run's layers in a new group at the top of the layer tree and hide the layers whose
    ids are given (e.g. the stack whose presence bands show the hidden truth). All or nothing."""
    project = QgsProject.instance()
    root = project.layerTreeRoot()
    layers = run_layers(out)
    group = root.insertGroup(0, out.name)
    try:
        for layer, visible in layers:
            project.addMapLayer(layer, False)
            node = group.addLayer(layer)
            node.setItemVisibilityChecked(visible)
            node.setExpanded(visible)
        group.setCustomProperty("m3/run_folder", str(out.folder))
        # the legends of what is shown, at once; toggled, since QGIS 3.22's tree view does not hear a
        # group expanded before its layers were added
        group.setExpanded(False)
        group.setExpanded(True)
    except Exception:
        remove_group(group)
        raise
    for layer_id in hide_layer_ids:
        node = root.findLayer(layer_id)
        if node is not None:
            node.setItemVisibilityChecked(False)
    return group


def probability_layers(group: QgsLayerTreeGroup) -> dict[str, QgsRasterLayer]:
    """The run group's mean-probability layers by species."""
    out = {}
    for node in group.findLayers():
        name = node.name()
        if name.endswith(" mean probability") and isinstance(node.layer(), QgsRasterLayer):
            out[name[:-len(" mean probability")]] = node.layer()
    return out


def remove_group(group: QgsLayerTreeGroup) -> None:
    """Remove a run group and the layers that only it holds."""
    project = QgsProject.instance()
    root = project.layerTreeRoot()
    ids = [n.layerId() for n in group.findLayers()]
    parent = group.parent() or root
    parent.removeChildNode(group)
    for layer_id in ids:
        if root.findLayer(layer_id) is None:
            project.removeMapLayer(layer_id)


def comparison_rows(rows: list["SpeciesComparison"]) -> list[list[str]]:
    """Table cells (no baseline: a run without scores), as :data:`COMPARISON_HEADERS`."""
    from .core.evaluation.run_summary import percent

    out = []
    for r in rows:
        lift = (r.recall / r.flagged_share) if r.recall is not None and r.flagged_share > 0 else None
        out.append([r.species, str(r.sites_in_region), str(r.sites_flagged), percent(r.recall),
                    f"{r.flagged_area_km2:,.0f}", percent(r.flagged_share), "—",
                    "—" if lift is None else f"× {lift:.1f}"])
    return out


COMPARISON_HEADERS = ["Species", "Known sites in region", "Sites in flagged cells", "Share of sites",
                      "Flagged area km²", "Share of region", "Baseline share of sites", "Lift over random"]
