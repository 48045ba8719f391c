"""A stack on a model's grid around a region, assembled from map layers (the plugin's inputs).

The QGIS side exports what lives only in QGIS (features of point, line and polygon layers) to
plain arrays and GeoJSON; raster layers are read here from their files. Everything is put on
one grid: the model's CRS and cell size, covering the region to hide plus context around it,
aligned with every other grid of that resolution (see :meth:`Grid.from_bounds`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import bounds as geometry_bounds
from scipy import ndimage

from ..data.aux_layers import fill_nearest
from ..data.features import PointRecords, RasterBand, VectorShapes, records_from_points
from ..data.grid import Grid
from ..data.rasterize import geometry_mask, presence_bands
from ..data.species import SpeciesCatalog, catalog_for
from ..data.stack import STACK_TAG, AuxBand, Stack
from ..data.vectors import reproject_geometries
from ..errors import InputError
from ..masks.hiding import GeometryRegion

if TYPE_CHECKING:
    from ..model.model_file import ModelCard

MineralSource = Union[RasterBand, PointRecords]
AuxSource = Union[RasterBand, VectorShapes]  # a vector source means "distance to its lines, km"
# An aux band given as None is left blank (its mean, 0 after normalisation): only for a model trained
# with aux dropout (ModelCard.tolerates_blank_aux).


def to_crs(text: str | CRS) -> CRS:
    """A rasterio CRS from WKT / ``EPSG:`` text, or an :class:`InputError` saying how to fix it."""
    if isinstance(text, CRS):
        return text
    try:
        crs = CRS.from_user_input(text)
    except Exception:  # rasterio raises CRSError; an empty string raises others
        crs = None
    if crs is None or not crs.to_wkt():
        raise InputError(f"Unknown coordinate reference system {text!r}. Set the layer's CRS "
                         "(Layer Properties > Source) and retry.")
    return crs


def as_region(shapes: VectorShapes) -> GeometryRegion:
    """The shapes as the region to hide (see :mod:`core.masks.hiding`)."""
    if not shapes.geometries:
        raise InputError("The region to hide is empty: draw a rectangle or polygon, select features, "
                         "or choose the map extent.")
    return GeometryRegion(list(shapes.geometries), to_crs(shapes.crs), shapes.name or "region")


def context_grid(region: GeometryRegion, crs: str | CRS, resolution: float, margin_cells: int,
                 min_cells: int = 1) -> Grid:
    """The grid covering the region plus ``margin_cells`` of context on each side, at least
    ``min_cells`` on each side (grown around its centre)."""
    crs = to_crs(crs)
    try:
        left, bottom, right, top = region.bounds_in(crs)
    except Exception as e:  # rasterio/GDAL transform errors
        raise InputError(f"The region cannot be transformed to the model's CRS {crs.to_string()} ({e}). "
                         "Draw it in a map CRS that covers the model's area.") from None
    if not all(np.isfinite([left, bottom, right, top])):
        raise InputError(f"The region lies outside the area where the model's CRS {crs.to_string()} "
                         "is defined. Choose a region inside the model's area.")
    pad = margin_cells * resolution

    def grow(lo: float, hi: float) -> tuple[float, float]:
        need = max(0.0, min_cells * resolution - (hi - lo + 2 * pad))
        return lo - pad - need / 2, hi + pad + need / 2

    left, right = grow(left, right)
    bottom, top = grow(bottom, top)
    return Grid.from_bounds(crs, (left, bottom, right, top), resolution)


def model_context_grid(region: GeometryRegion, crs: str | CRS, resolution: float, tile_size: int) -> Grid:
    """The grid an infill of ``region`` runs on: the model's cells, half a tile (at least 16 cells)
    of context around the region, at least one tile on each side."""
    return context_grid(region, crs, resolution, max(16, tile_size // 2), tile_size)


def region_grid(card: "ModelCard", region: GeometryRegion, stack_grid: Optional[Grid] = None) -> Grid:
    """The grid an infill of ``region`` runs on (:func:`model_context_grid` with the model's tile):
    the stack's CRS and cells when the region is cut from a stack, else those of the model's card,
    which must state a projected CRS and a cell size (an :class:`InputError` says so otherwise)."""
    tile = int(card.tile_size)
    if stack_grid is not None:
        return model_context_grid(region, stack_grid.crs, stack_grid.resolution, tile)
    crs_text = card.grid.get("crs_wkt") or card.grid.get("crs")
    resolution = float(card.grid.get("resolution") or 0)
    if not crs_text or resolution <= 0:
        raise InputError("The model's card does not say its grid CRS and cell size; it cannot be applied to "
                         "map layers. Use a model trained with this version of M3.")
    crs = to_crs(crs_text)
    if not crs.is_projected:
        raise InputError(f"The model's CRS {crs.to_string()} is not projected; M3 models need a grid in metres.")
    return model_context_grid(region, crs, resolution, tile)


def window_in(outer: Grid, inner: Grid) -> tuple[int, int, int, int]:
    """(row0, col0, height, width) of ``inner`` in ``outer``: same CRS and cell size, aligned."""
    if outer.crs != inner.crs or abs(outer.resolution - inner.resolution) > 1e-6 * outer.resolution:
        raise InputError("The region's grid differs from the stack's (CRS or cell size).")
    col0 = (inner.transform.c - outer.transform.c) / outer.resolution
    row0 = (outer.transform.f - inner.transform.f) / outer.resolution
    if abs(col0 - round(col0)) > 1e-6 or abs(row0 - round(row0)) > 1e-6:
        raise InputError("The region's grid is not aligned with the stack's cells.")
    return int(round(row0)), int(round(col0)), inner.height, inner.width


def _open(path: str) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"Cannot read {path} as a raster ({e}). Use a file-based raster layer "
                         "(GeoTIFF, NetCDF, ...).") from None


def band_on_grid(src: RasterBand, grid: Grid, resampling: Resampling = Resampling.bilinear) -> np.ndarray:
    """The band resampled onto the grid: float32, NaN where the raster has no data."""
    with _open(src.path) as ds:
        if not 1 <= src.band <= ds.count:
            raise InputError(f"{src.label}: {src.path} has {ds.count} band(s), not band {src.band}.")
        if ds.crs is None:
            raise InputError(f"{src.label} has no CRS. Set the layer's CRS and retry.")
        from ..data.raster_values import band_on_grid as read_on_grid, fill_note

        reading = read_on_grid(ds, src.band, grid, resampling)
    note = fill_note(src.label, reading)
    if note:
        warnings.warn(note, stacklevel=2)
    return reading.values


def m3_stack_band(path: str, description: str) -> Optional[int]:
    """The 1-based band of an M3 stack file with this description (``presence_Au``,
    ``aux_elevation_5arcmin``, ``valid``); None when the file is not a stack or lacks it."""
    try:
        with rasterio.open(path) as ds:
            if STACK_TAG not in ds.tags():
                return None
            descriptions = list(ds.descriptions)
    except rasterio.errors.RasterioIOError:
        return None
    return descriptions.index(description) + 1 if description in descriptions else None


def is_normalised_stack_band(src: RasterBand) -> bool:
    """Whether the band is an aux band of an M3 stack (already normalised)."""
    try:
        with rasterio.open(src.path) as ds:
            return STACK_TAG in ds.tags() and (ds.descriptions[src.band - 1] or "").startswith("aux_")
    except (rasterio.errors.RasterioIOError, IndexError):
        return False


def presence_on_grid(symbol: str, src: MineralSource, grid: Grid, valid: np.ndarray,
                     catalog: SpeciesCatalog) -> np.ndarray:
    """(H, W) uint8 presence of ``symbol``: a raster's non-zero cells, or the cells holding a
    point whose commodities name the species."""
    if isinstance(src, PointRecords):
        recs = records_from_points(src, catalog.subset([symbol]))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty band in a small region is normal here
            return presence_bands(recs, grid, valid)[0]
    raw = band_on_grid(src, grid, Resampling.max)  # a raster with the grid's cells is copied as it is
    return ((np.nan_to_num(raw, nan=0.0) > 0.5) & valid).astype(np.uint8)


def distance_to_shapes_km(shapes: VectorShapes, grid: Grid) -> np.ndarray:
    """Distance (km) from each cell centre to the nearest cell crossed by the shapes, measured
    on a grid grown to hold every shape, so that shapes outside the grid still count."""
    geoms = reproject_geometries(shapes.geometries, to_crs(shapes.crs), grid.crs)
    if not geoms:
        raise InputError(f"The layer {shapes.name or ''} has no line to measure distances from.")
    b = np.array([geometry_bounds(g) for g in geoms], float)
    gl, gb, gr, gt = grid.bounds
    big = Grid.from_bounds(grid.crs, (min(gl, b[:, 0].min()), min(gb, b[:, 1].min()),
                                      max(gr, b[:, 2].max()), max(gt, b[:, 3].max())), grid.resolution)
    hit = geometry_mask(geoms, grid.crs, big, all_touched=True)
    dist = ndimage.distance_transform_edt(~hit) * grid.resolution / 1000.0
    row0 = int(round((big.transform.f - grid.transform.f) / grid.resolution))
    col0 = int(round((grid.transform.c - big.transform.c) / grid.resolution))
    return dist[row0:row0 + grid.height, col0:col0 + grid.width].astype(np.float32)


def aux_on_grid(band: AuxBand, src: Optional[AuxSource], grid: Grid, valid: np.ndarray) -> np.ndarray:
    """(H, W) float32 aux band normalised with the model's statistics, 0 outside ``valid``; all 0
    (the band's mean) when ``src`` is None (left blank)."""
    if src is None:
        return np.zeros(grid.shape, np.float32)
    if isinstance(src, VectorShapes):
        raw = distance_to_shapes_km(src, grid)
        normalised = False
    else:
        raw = band_on_grid(src, grid)
        normalised = is_normalised_stack_band(src)
        if not np.isfinite(raw[valid]).any():
            raise InputError(f"The layer {src.label} chosen for aux band '{band.name}' has no data in "
                             "the region. Choose a layer that covers the region.")
        raw = fill_nearest(raw)
    z = raw.astype(np.float32) if normalised else band.normalise(raw)
    z[~valid] = 0.0
    return z


def valid_on_grid(grid: Grid, outline: Optional[VectorShapes], stack_valid: Optional[RasterBand],
                  aux: Sequence[RasterBand]) -> np.ndarray:
    """Cells to model: inside an outline layer; else the valid band of an M3 stack; else the cells
    where every aux raster has data."""
    if outline is not None:  # no polygon near the region: no valid cell
        valid = (geometry_mask(outline.geometries, to_crs(outline.crs), grid) if outline.geometries
                 else np.zeros(grid.shape, bool))
    elif stack_valid is not None:
        valid = np.nan_to_num(band_on_grid(stack_valid, grid, Resampling.nearest)) > 0.5
    else:
        valid = np.ones(grid.shape, bool)
        for src in aux:
            valid &= np.isfinite(band_on_grid(src, grid))
    if not valid.any():
        raise InputError("No cell of the region is valid (inside the outline, with data in the aux "
                         "layers). Choose a region on land inside the data's area.")
    return valid


@dataclass
class LayerInputs:
    """Everything the model needs, as chosen in the dock."""

    species: list[str]
    minerals: dict[str, MineralSource]
    aux_bands: list[AuxBand]
    aux: dict[str, Optional[AuxSource]]
    outline: Optional[VectorShapes] = None
    blank_aux_allowed: bool = False

    @property
    def blank_aux(self) -> list[str]:
        """The aux bands left blank (no layer)."""
        return [b.name for b in self.aux_bands if b.name in self.aux and self.aux[b.name] is None]

    def stack_valid_band(self) -> Optional[RasterBand]:
        """The valid band of an M3 stack used as a source, if any."""
        for src in list(self.minerals.values()) + list(self.aux.values()):
            if isinstance(src, RasterBand):
                band = m3_stack_band(src.path, "valid")
                if band is not None:
                    return RasterBand(src.path, band, "valid")
        return None

    def check_complete(self) -> None:
        missing = [s for s in self.species if s not in self.minerals]
        if missing:
            raise InputError(f"No layer chosen for the species {', '.join(missing)}. Pick a presence raster "
                             "or a point layer of records for each (or load the example data).")
        missing = [b.name for b in self.aux_bands if b.name not in self.aux]
        if missing:
            raise InputError(f"No layer chosen for the aux band(s) {', '.join(missing)} the model expects. "
                             "Pick a raster layer for each (or load the example data).")
        if self.blank_aux and not self.blank_aux_allowed:
            raise InputError(f"No layer chosen for the aux band(s) {', '.join(self.blank_aux)}. This model was "
                             "trained with every aux band present. Pick a raster layer for each in Auxiliary "
                             "layers (or load the example data), or use a model trained with aux dropout "
                             "(train --aux-dropout, as the bundled model), which may leave a band blank.")


def assemble_stack(inputs: LayerInputs, grid: Grid) -> Stack:
    """The stack on ``grid`` from the chosen layers."""
    inputs.check_complete()
    rasters = [s for s in inputs.aux.values() if isinstance(s, RasterBand) and not is_normalised_stack_band(s)]
    valid = valid_on_grid(grid, inputs.outline, inputs.stack_valid_band(), rasters)
    catalog = catalog_for(inputs.species)
    presence = np.stack([presence_on_grid(s, inputs.minerals[s], grid, valid, catalog) for s in inputs.species])
    aux = [aux_on_grid(b, inputs.aux[b.name], grid, valid) for b in inputs.aux_bands]
    aux_arr = np.stack(aux) if aux else np.zeros((0,) + grid.shape, np.float32)
    return Stack(grid, list(inputs.species), presence, list(inputs.aux_bands), aux_arr, valid,
                 {"source": "map layers"})


def write_shapes(shapes: VectorShapes, path: str | Path, layer: str = "region") -> Path:
    """Write polygons to a GeoPackage (atomically)."""
    import json

    from ..atomic import atomic_path
    from ..data.vectors import ogr_modules

    _, ogr, osr = ogr_modules()

    path = Path(path)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(to_crs(shapes.crs).to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    with atomic_path(path) as tmp:
        tmp.unlink()
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
        lyr = ds.CreateLayer(layer, srs, ogr.wkbMultiPolygon)
        for g in shapes.geometries:
            geom = ogr.ForceToMultiPolygon(ogr.CreateGeometryFromJson(json.dumps(g)))
            feat = ogr.Feature(lyr.GetLayerDefn())
            feat.SetGeometry(geom)
            lyr.CreateFeature(feat)
        ds = None  # close
    return path
