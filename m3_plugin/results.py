"""A finished run as project layers (one group per run) and the comparison table's rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from qgis.core import QgsLayerTreeGroup, QgsMapLayer, QgsProject, QgsVectorLayer
from qgis.PyQt.QtGui import QColor

from . import styles
from .core.errors import M3Error
from .layer_sources import raster_layer

if TYPE_CHECKING:
    from .core.comparison import SpeciesComparison

REGION_COLOUR = QColor(30, 30, 220)


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


def _band(path: Path, name: str) -> int:
    import rasterio

    with rasterio.open(path) as src:
        return list(src.descriptions).index(name) + 1


def run_layers(out: RunOutputs) -> list[tuple[QgsMapLayer, bool]]:
    """(layer, visible) for the run, top to bottom; raises :class:`M3Error` when one does not load."""
    layers: list[tuple[QgsMapLayer, bool]] = []
    region = QgsVectorLayer(f"{out.region}|layername=region", "hidden region", "ogr")
    styles.style_outline(region, REGION_COLOUR, 0.8, dashed=True)
    layers.append((region, True))
    if out.clusters is not None:
        clusters = QgsVectorLayer(str(out.clusters), f"discovered clusters ({out.cluster_count})", "ogr")
        styles.style_clusters(clusters)
        layers.append((clusters, True))
    for i, sym in enumerate(out.species):
        mean = raster_layer(str(out.prediction), f"{sym} mean probability")
        if mean.isValid():
            styles.style_probability(mean, out.threshold, _band(out.prediction, f"mean_{sym}"))
        layers.append((mean, i == 0))
    for sym in out.species:
        std = raster_layer(str(out.prediction), f"{sym} uncertainty (std)")
        if std.isValid():
            styles.style_uncertainty(std, out.std_max.get(sym, 0.25), _band(out.prediction, f"std_{sym}"))
        layers.append((std, False))
    bad = [layer.name() for layer, _ in layers if not layer.isValid()]
    if bad:
        raise M3Error(f"The result layers {', '.join(bad)} did not load from {out.folder}. "
                      "Check that the folder is readable and retry.")
    return layers


def add_run_group(out: RunOutputs) -> QgsLayerTreeGroup:
    """Add the run's layers in a new group at the top of the layer tree, just under the known-sites
    layer when that is a top-level layer (so the sites are drawn over the results). All or nothing."""
    project = QgsProject.instance()
    root = project.layerTreeRoot()
    layers = run_layers(out)
    index = 0
    if out.sites_layer_id:
        node = root.findLayer(out.sites_layer_id)
        if node is not None and node.parent() is root:
            index = root.children().index(node) + 1
    group = root.insertGroup(index, out.name)
    try:
        for layer, visible in layers:
            project.addMapLayer(layer, False)
            node = group.addLayer(layer)
            node.setItemVisibilityChecked(visible)
            node.setExpanded(False)
        group.setCustomProperty("m3/run_folder", str(out.folder))
    except Exception:
        remove_group(group)
        raise
    if out.sites_layer_id and index == 0:
        node = root.findLayer(out.sites_layer_id)
        if node is not None:  # inside another group: show it again at the top of the run's group
            group.insertLayer(0, node.layer())
    return group


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
    """Table cells: species, sites in region, sites flagged, recall, flagged area (km²), share flagged."""
    out = []
    for r in rows:
        recall = "—" if r.recall is None else f"{r.recall:.0%}"
        out.append([r.species, str(r.sites_in_region), str(r.sites_flagged), recall,
                    f"{r.flagged_area_km2:,.0f}", f"{r.flagged_share:.0%}"])
    return out


COMPARISON_HEADERS = ["Species", "Sites in region", "In flagged cells", "Recall", "Flagged km²", "Flagged share"]
