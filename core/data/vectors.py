"""Vector files (GeoPackage, Shapefile, GeoJSON...) through GDAL's OGR: geometries as GeoJSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from rasterio.crs import CRS

from ..errors import InputError, SetupError


def ogr_modules() -> tuple[Any, Any, Any]:
    """GDAL's Python bindings (gdal, ogr, osr), which read and write vector files; a clear error
    where they are missing (e.g. a pip-only GPU image)."""
    try:
        from osgeo import gdal, ogr, osr
    except ImportError:
        raise SetupError("Reading and writing vector files (the CONUS outline, the faults, GeoPackages) needs "
                         "GDAL's Python bindings, which are not installed here: run scripts/setup.sh (it "
                         "installs Debian's python3-gdal with QGIS), or install GDAL's Python package that "
                         "matches the system GDAL (pip install GDAL==$(gdal-config --version)).") from None
    return gdal, ogr, osr


def read_geometries(path: str | Path, layer: Optional[str] = None) -> tuple[list[dict[str, Any]], CRS]:
    """All geometries of a layer as GeoJSON dicts, and the layer's CRS."""
    gdal, ogr, _ = ogr_modules()

    path = Path(path)
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # e.g. 'GeoPackage v1.4 may only be partially supported'
    try:
        ds = ogr.Open(str(path))
    finally:
        gdal.PopErrorHandler()
    if ds is None:
        raise InputError(f"Cannot open {path} as a vector file (GeoPackage, Shapefile, GeoJSON...).")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        raise InputError(f"{path} has no layer {layer!r}.")
    srs = lyr.GetSpatialRef()
    if srs is None:
        raise InputError(f"{path} has no coordinate reference system; assign one (e.g. in QGIS) and retry.")
    crs = CRS.from_wkt(srs.ExportToWkt())
    geoms = []
    for feat in lyr:
        g = feat.GetGeometryRef()
        if g is not None and not g.IsEmpty():
            geoms.append(json.loads(g.ExportToJson()))
    if not geoms:
        raise InputError(f"{path} has no geometries.")
    return geoms, crs


def reproject_geometries(geoms: list[dict[str, Any]], src: CRS, dst: CRS) -> list[dict[str, Any]]:
    from rasterio.warp import transform_geom

    if src == dst:
        return geoms
    return [transform_geom(src, dst, g) for g in geoms]
