"""Project layers turned into core's plain inputs (on the main thread, before a task starts), and
the guesses that pre-fill the dock's combo boxes by name."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Optional

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeatureRequest, QgsGeometry,
                       QgsMapLayer, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer, QgsWkbTypes)

from .core.errors import InputError
from .qt_compat import LINE_GEOMETRY, POINT_GEOMETRY, POLYGON_GEOMETRY, WKB_MULTIPOINT, WKB_POINT

# core.inference.layer_inputs needs numpy and rasterio: imported where used, so that the dock loads (and says
# what to install) in a QGIS without them
if TYPE_CHECKING:
    from .core.inference.layer_inputs import PointRecords, RasterBand, VectorShapes

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


def crs_text(crs: QgsCoordinateReferenceSystem, what: str) -> str:
    """The CRS as WKT for core; an :class:`InputError` when the layer has none."""
    if not crs.isValid():
        raise InputError(f"{what} has no coordinate reference system. Set it in Layer Properties > Source "
                         "and retry.")
    authid = crs.authid()
    return authid if authid.upper().startswith("EPSG:") else crs.toWkt()


def raster_layer(path: str, name: str) -> QgsRasterLayer:
    """A GDAL raster layer made without GDAL writing a ``.aux.xml`` statistics file beside ``path``
    (QGIS computes statistics for the first renderer; the plugin's own files stay as shipped)."""
    from osgeo import gdal

    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        return QgsRasterLayer(str(path), name, "gdal")
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)


def band_description(layer: QgsRasterLayer, band: int) -> str:
    """``presence_Au`` from QGIS's band name ``Band 01: presence_Au``; '' when the band has none."""
    name = layer.bandName(band)
    return name.split(": ", 1)[1] if ": " in name else ""


def raster_bands(layer: QgsRasterLayer) -> list[tuple[int, str]]:
    """(band number, label) of every band."""
    return [(b, layer.bandName(b)) for b in range(1, layer.bandCount() + 1)]


def raster_band(layer: QgsRasterLayer, band: int) -> "RasterBand":
    """A file-based raster layer's band as a core source."""
    from .core.inference.layer_inputs import RasterBand

    if layer is None or not layer.isValid():
        raise InputError("A chosen raster layer is missing or broken. Choose it again.")
    if layer.providerType() != "gdal":
        raise InputError(f"The layer '{layer.name()}' is not a raster file ({layer.providerType()}). Save it as "
                         "a GeoTIFF (Export > Save As...) and use that.")
    crs_text(layer.crs(), f"The layer '{layer.name()}'")
    return RasterBand(layer.source(), band, f"'{layer.name()}' {layer.bandName(band)}")


def _request(layer: QgsVectorLayer, extent: Optional[tuple[QgsRectangle, QgsCoordinateReferenceSystem]],
             attributes: Iterable[str] = ()) -> QgsFeatureRequest:
    request = QgsFeatureRequest()
    names = [a for a in attributes if a]
    if names:
        request.setSubsetOfAttributes(names, layer.fields())
    else:
        request.setNoAttributes()
    if extent is not None:
        rect, crs = extent
        try:
            tr = QgsCoordinateTransform(crs, layer.crs(), QgsProject.instance())
            request.setFilterRect(tr.transformBoundingBox(rect))
        except Exception:  # QgsCsException: the extent is not representable in the layer's CRS
            pass
    return request


def features(source, crs: QgsCoordinateReferenceSystem, request: Optional[QgsFeatureRequest] = None,
             to_crs: Optional[QgsCoordinateReferenceSystem] = None, attributes: Iterable[str] = ()):
    """A layer's or feature source's features as core's plain :data:`core.data.features.Feature` pairs:
    (GeoJSON geometry, in ``to_crs`` when given, else in ``crs``; the ``attributes`` asked for).
    A feature whose geometry cannot be transformed is left out."""
    tr = QgsCoordinateTransform(crs, to_crs, QgsProject.instance()) if to_crs is not None else None
    names = [a for a in attributes if a]
    for feat in (source.getFeatures(request) if request is not None else source.getFeatures()):
        geom = feat.geometry()
        if geom is None or geom.isEmpty():
            yield None, {}
            continue
        if tr is not None:
            geom = QgsGeometry(geom)
            try:
                geom.transform(tr)
            except Exception:  # QgsCsException
                continue
        yield geometry_json(geom), {n: feat[n] for n in names}


def site_points(source, crs: QgsCoordinateReferenceSystem, field: str, name_field: Optional[str] = None,
                request: Optional[QgsFeatureRequest] = None, name: str = "") -> "PointRecords":
    """Site points of a point layer or feature source as lon/lat with the ``field`` text and the
    names (``name_field``; None: a field called like a name; '': none): core's rules
    (:func:`core.data.features.records_from_features`, :func:`core.data.features.name_field_for`)."""
    from .core.data.features import name_field_for, records_from_features

    name_field = name_field_for([f.name() for f in source.fields()], name_field)
    if request is not None:
        request.setSubsetOfAttributes([a for a in (field, name_field) if a], source.fields())
    return records_from_features(features(source, crs, request, WGS84, (field, name_field)), field, name_field,
                                 name)


def point_records(layer: QgsVectorLayer, field: str,
                  extent: Optional[tuple[QgsRectangle, QgsCoordinateReferenceSystem]] = None,
                  name_field: Optional[str] = None) -> "PointRecords":
    """The layer's points (those within ``extent`` when given) as lon/lat with the ``field`` text and
    the ``name_field`` text (None: a field called like a name; '': no names)."""
    if layer is None or not layer.isValid():
        raise InputError("A chosen point layer is missing or broken. Choose it again.")
    if layer.geometryType() != POINT_GEOMETRY:
        raise InputError(f"The layer '{layer.name()}' is not a point layer; choose a layer of site points.")
    if layer.fields().indexOf(field) < 0:
        raise InputError(f"The layer '{layer.name()}' has no field '{field}'. Choose its commodity field.")
    crs_text(layer.crs(), f"The layer '{layer.name()}'")
    return site_points(layer, layer.crs(), field, name_field, _request(layer, extent, (field,)), layer.name())


def source_shapes(source, crs: QgsCoordinateReferenceSystem, name: str,
                  request: Optional[QgsFeatureRequest] = None) -> "VectorShapes":
    """A layer's or feature source's geometries as core shapes in its CRS (empty ones left out)."""
    from .core.data.features import shapes_from_features

    return shapes_from_features(features(source, crs, request), crs_text(crs, f"The layer '{name}'"), name)


def layer_shapes(layer: QgsVectorLayer, selected_only: bool = False,
                 extent: Optional[tuple[QgsRectangle, QgsCoordinateReferenceSystem]] = None) -> "VectorShapes":
    """A vector layer's geometries (all, or the selected ones) as GeoJSON in the layer's CRS."""
    if layer is None or not layer.isValid():
        raise InputError("A chosen vector layer is missing or broken. Choose it again.")
    crs_text(layer.crs(), f"The layer '{layer.name()}'")
    if selected_only:
        shapes = source_shapes(_Selection(layer), layer.crs(), layer.name())
        if not shapes.geometries:
            raise InputError(f"No feature of '{layer.name()}' is selected. Select the polygons of the region "
                             "(Select Features tool) or choose another region.")
        return shapes
    return source_shapes(layer, layer.crs(), layer.name(), _request(layer, extent))


class _Selection:
    """A layer's selected features, read like a feature source."""

    def __init__(self, layer: QgsVectorLayer) -> None:
        self.layer = layer

    def getFeatures(self, request=None):  # noqa: N802 (QGIS API)
        return self.layer.getSelectedFeatures(request) if request is not None else self.layer.getSelectedFeatures()

    def fields(self):
        return self.layer.fields()


def geometry_shapes(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem, name: str = "region") -> "VectorShapes":
    """One geometry (a drawn region, the map extent) as core shapes."""
    from .core.inference.layer_inputs import VectorShapes

    if geometry is None or geometry.isEmpty():
        raise InputError("The region to hide is empty: draw a rectangle or polygon on the map, or choose "
                         "another region.")
    return VectorShapes([geometry_json(geometry)], crs_text(crs, "The map"), name)


def geometry_json(geometry: QgsGeometry) -> dict:
    """A geometry as GeoJSON; points (and multipoints) built from their coordinates exactly."""
    import json

    kind = QgsWkbTypes.flatType(geometry.wkbType())
    if kind == WKB_POINT:
        p = geometry.asPoint()
        return {"type": "Point", "coordinates": [p.x(), p.y()]}
    if kind == WKB_MULTIPOINT:
        return {"type": "MultiPoint", "coordinates": [[p.x(), p.y()] for p in geometry.asMultiPoint()]}
    return json.loads(geometry.asJson(17))


# -- guesses that pre-fill the combo boxes -------------------------------------------------------------

def normalised_name(text: str) -> str:
    """``Gravity Disturbance (10 arcmin).tif`` → ``gravitydisturbance10arcmin``."""
    text = re.sub(r"\.(tif|tiff|nc|vrt|img|gpkg|shp)$", "", text.strip().lower())
    return re.sub(r"[^a-z0-9]", "", text)


def project_layers(kind: type) -> list[QgsMapLayer]:
    """Valid project layers of a class, in layer-tree order."""
    root = QgsProject.instance().layerTreeRoot()
    return [l for l in root.layerOrder() if isinstance(l, kind) and l.isValid()] or \
        [l for l in QgsProject.instance().mapLayers().values() if isinstance(l, kind) and l.isValid()]


def find_stack_band(description: str) -> Optional[tuple[QgsRasterLayer, int]]:
    """A project raster (an M3 stack) with a band of this description."""
    for layer in project_layers(QgsRasterLayer):
        for band in range(1, layer.bandCount() + 1):
            if band_description(layer, band) == description:
                return layer, band
    return None


def commodity_field(layer: QgsVectorLayer) -> str:
    """The field of a point layer most likely to hold commodities (:func:`core.data.features.guess_commodity_field`)."""
    from .core.data.features import guess_commodity_field

    return guess_commodity_field([f.name() for f in layer.fields()])


def is_point_layer(layer: QgsMapLayer) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.geometryType() == POINT_GEOMETRY


def is_line_layer(layer: QgsMapLayer) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.geometryType() == LINE_GEOMETRY


def is_polygon_layer(layer: QgsMapLayer) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.geometryType() == POLYGON_GEOMETRY


def guess_mineral_source(symbol: str) -> Optional[tuple[QgsMapLayer, object]]:
    """(layer, band or field) for a species: a stack's ``presence_<symbol>`` band, a raster named
    for the species, else a point layer with a commodity field."""
    hit = find_stack_band(f"presence_{symbol}")
    if hit:
        return hit
    for layer in project_layers(QgsRasterLayer):
        if normalised_name(layer.name()) in {normalised_name(symbol), f"presence{normalised_name(symbol)}"}:
            return layer, 1
    for layer in project_layers(QgsVectorLayer):
        if is_point_layer(layer) and commodity_field(layer):
            return layer, commodity_field(layer)
    return None


def guess_aux_source(band_name: str) -> Optional[tuple[QgsMapLayer, int]]:
    """(layer, band) for an aux band: a raster layer of the same name, a stack's ``aux_<name>``
    band, or (for a distance band such as ``fault_distance_km``) a line layer whose name shares a word."""
    want = normalised_name(band_name)
    for layer in project_layers(QgsRasterLayer):
        if normalised_name(layer.name()) == want or normalised_name(layer.source().rsplit("/", 1)[-1]) == want:
            return layer, 1
    hit = find_stack_band(f"aux_{band_name}")
    if hit:
        return hit
    if "distance" in band_name:
        words = [w for w in re.split(r"[^a-z]+", band_name.lower()) if w and w not in ("distance", "km", "dist")]
        for layer in project_layers(QgsVectorLayer):
            lname = layer.name().lower()
            if is_line_layer(layer) and any(w.rstrip("s") in lname for w in words):
                return layer, 0
    return None


def guess_outline() -> Optional[QgsVectorLayer]:
    """A polygon layer named like an outline (``outline``, ``boundary``)."""
    for layer in project_layers(QgsVectorLayer):
        if is_polygon_layer(layer) and any(w in layer.name().lower() for w in ("outline", "boundary")):
            return layer
    return None
