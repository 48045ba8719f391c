"""Map features as plain data: the small interface through which the plugin (or any caller) feeds
core with vector layers, and the one rule for each feature → record and feature → shape decision.

A caller hands over an iterable of :data:`Feature` — a GeoJSON geometry (``None`` or empty when the
feature has none) and its attributes — and gets core's inputs back: :class:`PointRecords` (site
points with their commodity text) or :class:`VectorShapes` (geometries in a CRS). Core never sees
a Qt or QGIS object.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from .records import NO_COMMODITY, Records
from .species import SpeciesCatalog

Geometry = dict[str, Any]                               # a GeoJSON geometry
Feature = tuple[Optional[Geometry], Mapping[str, Any]]  # (geometry, attributes)

# field names that hold a site's commodities / its name, most likely first (matched in any case)
COMMODITY_FIELD_NAMES = ("commodities", "commodity", "commod1", "commods", "minerals", "mineral")
NAME_FIELD_NAMES = ("name", "site_name", "sitename")


@dataclass
class RasterBand:
    """Band ``band`` (1-based) of a GDAL raster file; ``name`` is what the user calls it."""

    path: str
    band: int = 1
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{Path(self.path).name} band {self.band}"


@dataclass
class PointRecords:
    """Points in WGS84 lon/lat with the commodity text of each (e.g. ``"Au; Ag"``)."""

    lon: np.ndarray
    lat: np.ndarray
    commodities: list[str]
    names: list[str] = field(default_factory=list)
    name: str = ""


@dataclass
class VectorShapes:
    """GeoJSON geometries in ``crs`` (a WKT or ``EPSG:`` string)."""

    geometries: list[Geometry]
    crs: str
    name: str = ""


def guess_commodity_field(names: Sequence[str]) -> str:
    """The field most likely to hold commodities: the first of :data:`COMMODITY_FIELD_NAMES` the
    layer has (any case), else the first field whose name contains ``commod``; '' when none."""
    lower = {n.lower(): n for n in names}
    for cand in COMMODITY_FIELD_NAMES:
        if cand in lower:
            return lower[cand]
    return next((n for n in names if "commod" in n.lower()), "")


def name_field_for(names: Sequence[str], requested: Optional[str] = None) -> str:
    """The field that names the sites: ``requested`` when the layer has it; '' (asked for no names)
    stays ''; otherwise (None, or a field the layer lacks) the first of :data:`NAME_FIELD_NAMES`
    the layer has (any case), '' when none."""
    if requested == "":
        return ""
    if requested and requested in names:
        return requested
    lower = {n.lower(): n for n in names}
    return next((lower[c] for c in NAME_FIELD_NAMES if c in lower), "")


def is_empty(geometry: Optional[Geometry]) -> bool:
    """Whether a GeoJSON geometry is missing or has no coordinates."""
    if not geometry:
        return True
    if geometry.get("type") == "GeometryCollection":
        return not any(not is_empty(g) for g in geometry.get("geometries") or [])
    return not geometry.get("coordinates")


def site_point(geometry: Optional[Geometry]) -> Optional[tuple[float, float]]:
    """The one location of a site feature: a point's coordinates; for a multipoint, its **first**
    point (a location that was recorded, where the centroid of scattered points may be none);
    None for an empty or non-point geometry."""
    if is_empty(geometry):
        return None
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point":
        return float(coords[0]), float(coords[1])
    if kind == "MultiPoint":
        return float(coords[0][0]), float(coords[0][1])
    return None


def records_from_features(features: Iterable[Feature], commodity_field: str, name_field: str = "",
                          name: str = "") -> PointRecords:
    """Site points from features in WGS84 lon/lat (see :func:`site_point`): the ``commodity_field``
    text of each, and its ``name_field`` text ('' : no names). Features without a point are skipped."""
    lon, lat, comms, names = [], [], [], []
    for geometry, attributes in features:
        point = site_point(geometry)
        if point is None:
            continue
        value = attributes.get(commodity_field)
        lon.append(point[0])
        lat.append(point[1])
        comms.append("" if value is None else str(value))
        names.append(str(attributes.get(name_field) or "") if name_field else "")
    return PointRecords(np.array(lon, float), np.array(lat, float), comms, names, name)


def shapes_from_features(features: Iterable[Feature], crs: str, name: str = "") -> VectorShapes:
    """The features' non-empty geometries as core shapes in ``crs``."""
    return VectorShapes([g for g, _ in features if not is_empty(g)], crs, name)


def records_from_points(points: PointRecords, catalog: SpeciesCatalog) -> Records:
    """Records of the catalog's species among the points (commodities matched as in CSV files;
    points naming no species counted with their spelling: ``Records.unmatched_note()``)."""
    lon = np.asarray(points.lon, float)
    lat = np.asarray(points.lat, float)
    names = points.names or [""] * len(lon)
    keep, rows = [], []
    unmatched: Counter = Counter()
    for i, text in enumerate(points.commodities):
        found = catalog.match(text or "")
        if not found:
            unmatched[(text or "").strip() or NO_COMMODITY] += 1
        elif np.isfinite(lon[i]) and np.isfinite(lat[i]):
            keep.append(i)
            rows.append([s in found for s in catalog.symbols])
    species = np.array(rows, bool).reshape(len(rows), len(catalog.symbols))
    return Records(lon[keep], lat[keep], species, catalog.symbols, [names[i] for i in keep],
                   [points.commodities[i] for i in keep], source=points.name,
                   skipped_no_species=sum(unmatched.values()), unmatched_spellings=dict(unmatched))
