"""Any point, polygon or line layer as aux bands: one implementation for the CLI, the plugin and
the default stack.

- Point samples (e.g. soil geochemistry) → one band per numeric field, interpolated by inverse
  distance weighting (IDW) of the 8 nearest samples, log10 for concentrations; plus a
  ``<prefix>_sample_distance_km`` band (how far the value is from a measurement).
- Categorical polygons (e.g. rock type) → one 0/1 band per category value.
- Lines with a numeric attribute (e.g. fault slip rate) → an attribute-weighted line density,
  Gaussian-smoothed.

What to make is said by a spec (:class:`PointSamplesSpec`, :class:`CategoricalPolygonsSpec`,
:class:`LineAttributeSpec`); :func:`parse_spec` reads the command-line form
``PATH::key=value::key=value`` (see :data:`SPEC_SYNTAX`). Each spec's ``bands(grid, valid)`` returns
raw bands, which :func:`core.data.build_stack.build_stack` normalises like every other aux band.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np
from rasterio.crs import CRS

from ..errors import InputError
from .grid import Grid
from .vectors import ogr_modules, reproject_geometries

Geometries = list[dict[str, Any]]
PathLike = Union[str, Path]

WGS84 = CRS.from_epsg(4326)
CSV_SUFFIXES = (".csv", ".csv.gz")
LON_NAMES = ("lon", "longitude")
LAT_NAMES = ("lat", "latitude")
IDW_NEIGHBOURS = 8
IDW_POWER = 2.0
IDW_BLOCK_CELLS = 500_000  # cells per KD-tree query block: 500k × 8 neighbours × 16 bytes = 64 MB
# Field-name suffixes that say the unit (DS-801 style ``Cu_mgkg``, ``Fe_pct``; ``slip_pref_mm_yr``).
UNIT_SUFFIXES = {"mgkg": "mg/kg", "mg_kg": "mg/kg", "ppm": "ppm", "ppb": "ppb", "pct": "%",
                 "wt_pct": "%", "gt": "g/t", "mm_yr": "mm/yr"}


class RawBand(NamedTuple):
    """A band on the grid before normalisation: values (NaN where unknown), name, units, source;
    bands of one ``group`` (a categories layer's classes) carry information together."""

    raw: np.ndarray
    name: str
    units: str
    source: str
    group: str = ""


def check_bands_vary(raws: Sequence[RawBand], valid: np.ndarray, option: str) -> None:
    """Refuse a layer that says nothing over the region: a band (or every band of a group) that
    holds one value in every valid cell (:func:`core.data.raster_values.constant_over`, the test
    of aux rasters too). ``option`` names where the layer came from, for the message."""
    from .raster_values import constant_over

    groups: dict[str, list[tuple[RawBand, Optional[float]]]] = {}
    for raw in raws:
        groups.setdefault(raw.group or raw.name, []).append((raw, constant_over(raw.raw, valid)))
    for key, members in groups.items():
        if any(value is None for _, value in members):
            continue
        if len(members) == 1:
            raw, value = members[0]
            what = f"band {raw.name} ({raw.source}) holds {value:g} in every valid cell"
        else:
            covering = [r.name for r, v in members if v == 1.0]
            detail = f"one class ({covering[0]}) covers every valid cell" if covering else \
                "no polygon covers a valid cell"
            what = f"{key}: {detail}"
        raise InputError(f"{option}: {what}, so it carries no information over the region. Leave it out "
                         f"({option} none, or the field out of fields=) or use a layer whose values vary over "
                         "the region.")


@dataclass
class Features:
    """Features of one vector layer: GeoJSON geometries, the chosen fields' values (float arrays
    for numeric fields with NaN for empty, object arrays of str otherwise), and the CRS."""

    geometries: Geometries
    values: dict[str, np.ndarray]
    crs: CRS
    source: str

    def __len__(self) -> int:
        return len(self.geometries)


# ---------------------------------------------------------------------------------------------
# Reading


def is_csv(path: PathLike) -> bool:
    return str(path).lower().endswith(CSV_SUFFIXES)


def _open_vector(path: Path) -> Any:
    gdal, _, _ = ogr_modules()
    if is_csv(path):
        name = f"/vsigzip/{path}" if str(path).lower().endswith(".gz") else str(path)
        options = [f"X_POSSIBLE_NAMES={','.join(LON_NAMES)}", f"Y_POSSIBLE_NAMES={','.join(LAT_NAMES)}",
                   "AUTODETECT_TYPE=YES", "KEEP_GEOM_COLUMNS=YES"]
    else:
        name, options = str(path), []
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # e.g. 'GeoPackage v1.4 may only be partially supported'
    try:
        ds = gdal.OpenEx(name, gdal.OF_VECTOR, open_options=options)
    except RuntimeError:
        ds = None
    finally:
        gdal.PopErrorHandler()
    if ds is None:
        raise InputError(f"Cannot open {path} as a vector file (GeoPackage, Shapefile, GeoJSON, or a CSV "
                         "with lon/lat columns).")
    return ds


def _layer(ds: Any, path: Path, layer: Optional[str]) -> Any:
    names = [ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())]
    if layer:
        if layer not in names:
            raise InputError(f"{path} has no layer {layer!r}; its layers are {', '.join(names) or 'none'}.")
        return ds.GetLayerByName(layer)
    if len(names) > 1:
        raise InputError(f"{path} has {len(names)} layers ({', '.join(names)}); say which one "
                         f"(e.g. '{path}::layer={names[0]}').")
    if not names:
        raise InputError(f"{path} has no layer.")
    return ds.GetLayer(0)


def _field_index(available: list[str], name: str, path: Path) -> int:
    if name in available:
        return available.index(name)
    folded = [a.lower() for a in available]
    if folded.count(name.lower()) == 1:
        return folded.index(name.lower())
    raise InputError(f"{path} has no field {name!r}; its fields are {', '.join(available) or 'none'}.")


def describe_source(path: PathLike, layer: Optional[str] = None, where: Optional[str] = None) -> str:
    text = Path(path).name + (f" layer {layer}" if layer else "")
    return text + (f" where {where}" if where else "")


def read_features(path: PathLike, layer: Optional[str] = None, fields: Sequence[str] = (),
                  where: Optional[str] = None, optional_fields: Sequence[str] = ()) -> Features:
    """Features of a vector layer with the values of ``fields`` (and of ``optional_fields`` that exist).

    GeoPackage, Shapefile, GeoJSON and whatever else GDAL's OGR reads; ``where`` is an OGR attribute
    filter (SQL ``WHERE`` syntax, e.g. ``horizon = 'C'``). A ``.csv`` or ``.csv.gz`` file is a point
    layer in WGS84 lon/lat whose coordinates are the columns ``lon``/``lat`` or
    ``longitude``/``latitude`` (any case). Features without geometry are skipped.
    """
    gdal, ogr, _ = ogr_modules()
    path = Path(path)
    if not path.exists():
        raise InputError(f"Vector file {path} does not exist.")
    ds = _open_vector(path)
    lyr = _layer(ds, path, layer)
    if is_csv(path):
        if lyr.GetGeomType() == ogr.wkbNone:
            raise InputError(f"{path} has no coordinate columns: a CSV of points needs columns lon and lat "
                             "(or longitude and latitude), in WGS84 degrees.")
        crs = WGS84
    else:
        srs = lyr.GetSpatialRef()
        if srs is None:
            raise InputError(f"{path} has no coordinate reference system; assign one (e.g. in QGIS: "
                             "Layer Properties → Source → Assigned CRS, then save) and retry.")
        crs = CRS.from_wkt(srs.ExportToWkt())
    defn = lyr.GetLayerDefn()
    available = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    wanted = {f: _field_index(available, f, path) for f in fields}
    wanted.update({f: available.index(f) for f in optional_fields if f in available and f not in wanted})
    numeric_types = (ogr.OFTInteger, ogr.OFTInteger64, ogr.OFTReal)
    numeric = {f: defn.GetFieldDefn(i).GetType() in numeric_types for f, i in wanted.items()}
    bad_filter = InputError(f"The filter {where!r} is not valid for {path} (OGR SQL, e.g. \"horizon = 'C'\"; "
                            f"fields: {', '.join(available)}).")
    geoms: Geometries = []
    cols: dict[str, list[Any]] = {f: [] for f in wanted}
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # a bad filter fails here or (GeoPackage) when read
    gdal.ErrorReset()
    try:
        if where:
            try:
                if lyr.SetAttributeFilter(where):
                    raise bad_filter
            except RuntimeError:
                raise bad_filter from None
        lyr.ResetReading()
        for feat in lyr:
            g = feat.GetGeometryRef()
            if g is None or g.IsEmpty():
                continue
            geoms.append(json.loads(g.ExportToJson()))
            for f, i in wanted.items():
                known = feat.IsFieldSetAndNotNull(i)
                cols[f].append((feat.GetFieldAsDouble(i) if known else np.nan) if numeric[f]
                               else (feat.GetFieldAsString(i) if known else ""))
        failed = gdal.GetLastErrorType() >= gdal.CE_Failure
    finally:
        gdal.PopErrorHandler()
    if failed and where and not geoms:
        raise bad_filter
    if not geoms:
        raise InputError(f"{describe_source(path, layer, where)} has no features with a geometry"
                         + (" (check the filter)." if where else "."))
    values = {f: np.asarray(v, float) if numeric[f] else np.asarray(v, object) for f, v in cols.items()}
    return Features(geoms, values, crs, describe_source(path, layer, where))


def numeric_values(values: np.ndarray, name: str, source: str) -> np.ndarray:
    """A field's values as floats (text that reads as a number is converted; empty is NaN)."""
    if values.dtype != object:
        return values.astype(float)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v.strip():
            try:
                out[i] = float(v)
            except ValueError:
                raise InputError(f"Field {name} of {source} is not numeric (it holds {v!r}); choose a numeric "
                                 "field.") from None
    return out


def check_degrees(lon: np.ndarray, lat: np.ndarray, source: str) -> None:
    """Refuse WGS84 points whose coordinates are not degrees in range, saying when they look
    swapped or projected (the records' wording: :func:`core.data.records.coordinates_note`)."""
    from .records import coordinates_note

    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    if not bad.any():
        return
    swapped = int((bad & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)).sum())
    projected = int((bad & (np.maximum(np.abs(lon), np.abs(lat)) > 1000)).sum())
    note = coordinates_note(int(bad.sum()), swapped, projected)
    raise InputError(f"{source}: {int(bad.sum())} of {len(lon)} points have coordinates out of range for WGS84 "
                     f"degrees (longitude in [-180, 180], latitude in [-90, 90]){'; ' + note if note else ''}. A CSV "
                     "of points needs WGS84 lon and lat columns.")


def point_coordinates(geoms: Geometries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y of each point and the index of its feature (a MultiPoint gives one point per part)."""
    xs, ys, idx = [], [], []
    for i, g in enumerate(geoms):
        kind = g.get("type")
        parts = [g["coordinates"]] if kind == "Point" else g["coordinates"] if kind == "MultiPoint" else None
        if parts is None:
            raise InputError(f"Point samples must be points; found a {kind}. Use a point layer (or the "
                             "polygons' centroids).")
        for p in parts:
            xs.append(p[0])
            ys.append(p[1])
            idx.append(i)
    return np.asarray(xs, float), np.asarray(ys, float), np.asarray(idx, np.int64)


# ---------------------------------------------------------------------------------------------
# Point samples → bands


@dataclass
class GriddedSamples:
    """Point samples on a grid: one band per field, the distance (km) from each cell centre to the
    nearest sample, and the number of samples each band used. NaN outside the computed cells."""

    bands: dict[str, np.ndarray]
    distance_km: np.ndarray
    used: dict[str, int] = field(default_factory=dict)


def _cell_blocks(grid: Grid, cells: np.ndarray, block_cells: int):
    """Row blocks of the grid: (row slice, flat indices of computed cells in the block, x, y of their centres)."""
    rows_per_block = max(1, block_cells // max(1, grid.width))
    for r0 in range(0, grid.height, rows_per_block):
        r1 = min(grid.height, r0 + rows_per_block)
        rr, cc = np.nonzero(cells[r0:r1])
        if len(rr) == 0:
            continue
        x, y = grid.cell_centres(rr + r0, cc)
        yield slice(r0, r1), rr, cc, np.column_stack([x, y])


def idw_weights(dist: np.ndarray, power: float = IDW_POWER) -> np.ndarray:
    """Normalised inverse-distance weights of each row's neighbours; a neighbour at distance 0
    takes all the weight (shared equally with others at distance 0), so samples are reproduced."""
    with np.errstate(divide="ignore"):
        w = 1.0 / dist ** power
    exact = ~np.isfinite(w)
    hit = exact.any(axis=1)
    w[hit] = exact[hit].astype(float)
    return w / w.sum(axis=1, keepdims=True)


def grid_point_samples(x: np.ndarray, y: np.ndarray, values: dict[str, np.ndarray], grid: Grid, *,
                       log: bool = True, k: int = IDW_NEIGHBOURS, power: float = IDW_POWER,
                       cells: Optional[np.ndarray] = None,
                       block_cells: int = IDW_BLOCK_CELLS) -> GriddedSamples:
    """Interpolate point samples onto the grid's cell centres.

    ``x``, ``y``: sample coordinates in the grid's CRS (metres). For each field, samples whose value
    is NaN (or, with ``log``, ≤ 0) are dropped and the rest log10-transformed when ``log``. The value
    of a cell is the inverse-distance-weighted mean (weights 1/d**power, power 2) of the ``k`` = 8
    nearest usable samples (a scipy ``cKDTree`` over all samples, so samples outside a small grid
    count); a cell centre on a sample takes that sample's value. Values below a detection limit are
    used as the file stores them (DS-801: half the limit, flagged by ``<field>_cens`` = 1, the usual
    substitution). ``distance_km`` is the distance from each cell centre to the nearest sample with
    at least one usable value. Only ``cells`` (default: all) are computed, by row blocks of about
    ``block_cells`` cells; the tree is queried once per distinct set of usable samples and its
    neighbours and weights are reused for every field with that set.
    """
    from scipy.spatial import cKDTree

    x, y = np.asarray(x, float), np.asarray(y, float)
    located = np.isfinite(x) & np.isfinite(y)
    usable: dict[str, np.ndarray] = {}
    data: dict[str, np.ndarray] = {}
    for name, v in values.items():
        v = np.asarray(v, float)
        ok = located & np.isfinite(v) & ((v > 0) if log else True)
        if not ok.any():
            raise InputError(f"No usable sample of {name}: every value is empty"
                             + (" or ≤ 0 (log10 needs positive values; use log=no for other data)." if log else "."))
        usable[name] = ok
        with np.errstate(divide="ignore", invalid="ignore"):
            data[name] = np.log10(v) if log else v
    cells = np.ones(grid.shape, bool) if cells is None else cells
    out = {name: np.full(grid.shape, np.nan, np.float32) for name in values}
    distance = np.full(grid.shape, np.nan, np.float32)
    any_usable = np.any(np.stack(list(usable.values())), axis=0) if usable else located
    if not any_usable.any():
        raise InputError("No sample has coordinates and a value.")
    groups: dict[bytes, list[str]] = {}
    for name, ok in usable.items():
        groups.setdefault(np.packbits(ok).tobytes(), []).append(name)
    sets = [(usable[names[0]], names) for names in groups.values()]
    if not any(np.array_equal(ok, any_usable) for ok, _ in sets):
        sets.append((any_usable, []))  # the distance band only
    for ok, names in sets:
        idx_all = np.flatnonzero(ok)
        tree = cKDTree(np.column_stack([x[idx_all], y[idx_all]]))
        kk = min(k, len(idx_all))
        fields = [data[n][idx_all] for n in names]
        for rows, rr, cc, centres in _cell_blocks(grid, cells, block_cells):
            dist, nb = tree.query(centres, k=kk, workers=-1)
            dist, nb = dist.reshape(len(centres), kk), nb.reshape(len(centres), kk)
            if np.array_equal(ok, any_usable):
                distance[rows][rr, cc] = dist[:, 0] / 1000.0
            w = idw_weights(dist, power)
            for n, v in zip(names, fields):
                out[n][rows][rr, cc] = (w * v[nb]).sum(axis=1)
    return GriddedSamples(out, distance, {n: int(ok.sum()) for n, ok in usable.items()})


# ---------------------------------------------------------------------------------------------
# Categorical polygons → one-hot bands


def category_label(value: Any) -> str:
    """A category value as it appears in a band name: 100.0 → '100', 'Sand and gravel' → 'Sand_and_gravel'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return re.sub(r"[^0-9A-Za-z.+-]+", "_", str(value)).strip("_") or "blank"


def _has_value(v: Any) -> bool:
    return not (v is None or (isinstance(v, str) and not v.strip())
                or (isinstance(v, (float, np.floating)) and math.isnan(v)))


def one_hot_polygons(geoms: Geometries, crs: CRS, categories: np.ndarray, grid: Grid,
                     prefix: str = "category") -> list[tuple[str, Any, np.ndarray]]:
    """One 0/1 band per distinct category (sorted): 1 where the cell centre is inside a polygon
    of that category. Returns ``(band name '<prefix>_<value>', value, band)``. Polygons without a
    category are left out (with a warning)."""
    from rasterio.features import rasterize

    cats = np.asarray(categories, object)
    if len(cats) != len(geoms):
        raise ValueError(f"{len(geoms)} geometries but {len(cats)} category values")
    has = np.array([_has_value(v) for v in cats], bool)
    if not has.all():
        warnings.warn(f"{int((~has).sum())} of {len(cats)} polygons have no category; they are left out.",
                      stacklevel=2)
    distinct = sorted({v for v, h in zip(cats, has) if h},
                      key=lambda v: (0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v)))
    if not distinct:
        raise InputError("No polygon has a category value.")
    proj = reproject_geometries(geoms, crs, grid.crs)
    out = []
    for value in distinct:
        shapes = [(g, 1) for g, v, h in zip(proj, cats, has) if h and v == value]
        band = rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8",
                         all_touched=False).astype(np.float32)
        out.append((f"{prefix}_{category_label(value)}", value, band))
    return out


# ---------------------------------------------------------------------------------------------
# Lines with a numeric attribute → density


def _line_parts(g: dict[str, Any]) -> list[np.ndarray]:
    kind = g.get("type")
    if kind == "LineString":
        return [np.asarray(g["coordinates"], float)[:, :2]]
    if kind == "MultiLineString":
        return [np.asarray(p, float)[:, :2] for p in g["coordinates"] if len(p) > 1]
    if kind == "GeometryCollection":
        return [p for sub in g["geometries"] for p in _line_parts(sub)]
    raise InputError(f"A line attribute needs lines; found a {kind}. Use a line layer.")


def line_pieces(coords: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and lengths of pieces no longer than ``step`` that make up a polyline."""
    p0, p1 = coords[:-1], coords[1:]
    seg = np.hypot(*(p1 - p0).T)
    n = np.maximum(1, np.ceil(seg / step)).astype(np.int64)
    which = np.repeat(np.arange(len(seg)), n)
    j = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = (j + 0.5) / n[which]
    mids = p0[which] + t[:, None] * (p1 - p0)[which]
    return mids, seg[which] / n[which]


def line_attribute_density(geoms: Geometries, crs: CRS, weights: np.ndarray, grid: Grid,
                           sigma_km: float = 10.0) -> np.ndarray:
    """Attribute-weighted line density (attribute × km of line per km²), Gaussian-smoothed.

    Each line is burned into every cell it crosses with its attribute × (its length in that cell,
    km) / (cell area, km²), lengths measured in the grid's CRS (pieces of 1/8 cell); overlapping
    lines add up; so the band times the cell area sums to Σ attribute × length. Then
    ``scipy.ndimage.gaussian_filter`` with σ = ``sigma_km`` (in cells), computed on the grid padded
    by 4 σ so that lines just outside a small grid count as they do on a large one. A NaN
    attribute counts as 0 (with a warning).
    """
    from scipy import ndimage

    w = np.asarray(weights, float)
    if len(w) != len(geoms):
        raise ValueError(f"{len(geoms)} geometries but {len(w)} weights")
    missing = ~np.isfinite(w)
    if missing.any():
        warnings.warn(f"{int(missing.sum())} of {len(w)} lines have no value; they count as 0.", stacklevel=2)
        w = np.where(missing, 0.0, w)
    res = grid.resolution
    sigma = sigma_km * 1000.0 / res
    pad = int(math.ceil(4.0 * sigma)) + 1 if sigma > 0 else 0
    big = grid.window(-pad, -pad, grid.height + 2 * pad, grid.width + 2 * pad)
    mids, burn = [np.zeros((0, 2))], [np.zeros(0)]
    for g, wi in zip(reproject_geometries(geoms, crs, grid.crs), w):
        for coords in _line_parts(g):
            if wi != 0 and len(coords) > 1:
                m, lengths = line_pieces(coords, res / 8.0)
                mids.append(m)
                burn.append(wi * lengths / 1000.0)
    xy, km = np.concatenate(mids), np.concatenate(burn)
    rows, cols, inside = big.cell_of(xy[:, 0], xy[:, 1])
    acc = np.bincount(rows[inside] * big.width + cols[inside], weights=km[inside], minlength=big.height * big.width)
    dens = acc.reshape(big.shape) / (res / 1000.0) ** 2
    if sigma > 0:
        dens = ndimage.gaussian_filter(dens, sigma, mode="constant", cval=0.0, truncate=4.0)
    return dens[pad:pad + grid.height, pad:pad + grid.width].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Specs


def field_label(name: str) -> tuple[str, str]:
    """A field's name without a unit suffix, and the unit: ``Cu_mgkg`` → (``Cu``, ``mg/kg``)."""
    low = name.lower()
    for suffix, unit in sorted(UNIT_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if low.endswith("_" + suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1], unit
    return name, ""


def _stem(path: PathLike) -> str:
    name = Path(path).name
    for ext in (".csv.gz", ".csv", ".gpkg", ".shp", ".geojson", ".json", ".gz"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_") or "layer"


@dataclass(frozen=True)
class PointSamplesSpec:
    """Point samples → one band per numeric field (IDW of the 8 nearest samples; log10 when ``log``,
    values ≤ 0 dropped) named ``<prefix>_<field without unit suffix>``, plus
    ``<prefix>_sample_distance_km``. ``prefix`` defaults to the file's name."""

    path: PathLike
    fields: tuple[str, ...]
    layer: Optional[str] = None
    where: Optional[str] = None
    log: bool = True
    prefix: Optional[str] = None
    option = "--points"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.fields:
            raise InputError(f"Name the numeric fields of {Path(self.path).name} to grid (fields=A,B).")

    @property
    def band_prefix(self) -> str:
        return self.prefix or _stem(self.path)

    def band_names(self) -> list[str]:
        return [f"{self.band_prefix}_{field_label(f)[0]}" for f in self.fields] + \
            [f"{self.band_prefix}_sample_distance_km"]

    def bands(self, grid: Grid, valid: Optional[np.ndarray] = None) -> list[RawBand]:
        """The bands on ``grid`` (computed on ``valid`` cells when given, NaN elsewhere)."""
        from rasterio.warp import transform as transform_points

        cens = [f"{f}_cens" for f in self.fields]
        feats = read_features(self.path, self.layer, self.fields, self.where, optional_fields=cens)
        lon, lat, owner = point_coordinates(feats.geometries)
        if feats.crs == WGS84:
            check_degrees(lon, lat, feats.source)
        try:
            x, y = transform_points(feats.crs, grid.crs, lon, lat)
        except Exception as e:  # noqa: BLE001 — rasterio/PROJ raise their own errors for coordinates off the CRS
            raise InputError(f"The points of {feats.source} cannot be carried into the grid's CRS ({e}); check that "
                             "their coordinates are in the layer's CRS.") from None
        values = {f: numeric_values(feats.values[f], f, feats.source)[owner] for f in self.fields}
        gridded = grid_point_samples(np.asarray(x), np.asarray(y), values, grid, log=self.log, cells=valid)
        how = f"IDW of the {IDW_NEIGHBOURS} nearest samples, power {IDW_POWER:g}"
        out = []
        for f, name in zip(self.fields, self.band_names()):
            unit = field_label(f)[1]
            censored = ""
            if f"{f}_cens" in feats.values:
                c = numeric_values(feats.values[f"{f}_cens"], f"{f}_cens", feats.source)[owner]
                censored = f", {int(np.nansum(c == 1))} below detection (as half the limit)"
            units = (f"log10 {unit}" if unit else "log10") if self.log else unit
            source = (f"{feats.source}: {f}, {gridded.used[f]} samples{censored}; "
                      f"{'log10, ' if self.log else ''}{how}")
            out.append(RawBand(gridded.bands[f], name, units, source))
        out.append(RawBand(gridded.distance_km, self.band_names()[-1], "km",
                           f"distance to the nearest sample of {feats.source}"))
        return out


@dataclass(frozen=True)
class CategoricalPolygonsSpec:
    """Polygons with a category field → one 0/1 band per category value, ``<prefix>_<value>``
    (1 where the cell centre is inside a polygon of that category). ``prefix`` defaults to the
    field's name in lower case."""

    path: PathLike
    field: str
    layer: Optional[str] = None
    where: Optional[str] = None
    prefix: Optional[str] = None
    option = "--categories"

    @property
    def band_prefix(self) -> str:
        return self.prefix or self.field.lower()

    def bands(self, grid: Grid, valid: Optional[np.ndarray] = None) -> list[RawBand]:
        feats = read_features(self.path, self.layer, (self.field,), self.where)
        group = f"{feats.source}: field {self.field}"
        return [RawBand(band, name, "1 inside, 0 outside",
                        f"{feats.source}: cell centre in a polygon with {self.field} = {category_label(value)}", group)
                for name, value, band in one_hot_polygons(feats.geometries, feats.crs, feats.values[self.field],
                                                          grid, self.band_prefix)]


@dataclass(frozen=True)
class LineAttributeSpec:
    """Lines with a numeric field → one band ``name`` (default ``<field>_density``): the
    attribute-weighted line density, Gaussian-smoothed with σ ``sigma_km``."""

    path: PathLike
    field: str
    layer: Optional[str] = None
    where: Optional[str] = None
    sigma_km: float = 10.0
    name: Optional[str] = None
    option = "--line-attribute"

    def __post_init__(self) -> None:
        if not (self.sigma_km >= 0):
            raise InputError(f"sigma_km must be ≥ 0 (km); got {self.sigma_km}.")

    @property
    def band_name(self) -> str:
        return self.name or f"{re.sub(r'[^0-9A-Za-z]+', '_', self.field).strip('_')}_density"

    def bands(self, grid: Grid, valid: Optional[np.ndarray] = None) -> list[RawBand]:
        feats = read_features(self.path, self.layer, (self.field,), self.where)
        w = numeric_values(feats.values[self.field], self.field, feats.source)
        dens = line_attribute_density(feats.geometries, feats.crs, w, grid, self.sigma_km)
        unit = field_label(self.field)[1] or self.field
        smooth = f"Gaussian-smoothed, σ {self.sigma_km:g} km" if self.sigma_km > 0 else "not smoothed"
        return [RawBand(dens, self.band_name, f"{unit} × km/km² ({smooth})",
                        f"{feats.source}: {self.field} × length of {len(feats)} lines per km², {smooth}")]


VectorAuxSpec = Union[PointSamplesSpec, CategoricalPolygonsSpec, LineAttributeSpec]

# ---------------------------------------------------------------------------------------------
# Command-line spec strings

SPEC_SEPARATOR = "::"
SPEC_SYNTAX = (
    "A layer spec is PATH followed by '::key=value' options (split on '::' only, so paths with ':' "
    "such as C:\\data\\x.gpkg work). Options: layer=NAME (GeoPackage layer), where=SQL "
    "(OGR attribute filter, e.g. where=horizon = 'C'); --points: fields=A,B (required), log=yes|no "
    "(default yes), prefix=P; --categories: field=F (required), prefix=P; --line-attribute: "
    "field=F (required), sigma_km=KM (default 10), name=N. 'none' drops the default layer.")
_KEYS = {"points": ("layer", "where", "fields", "log", "prefix"),
         "categories": ("layer", "where", "field", "prefix"),
         "line-attribute": ("layer", "where", "field", "sigma_km", "name")}
_TRUE, _FALSE = ("yes", "true", "1", "on"), ("no", "false", "0", "off")


def parse_spec(text: str, kind: str) -> VectorAuxSpec:
    """A spec from its command-line form, ``PATH::key=value::key=value``; ``kind`` is ``points``,
    ``categories`` or ``line-attribute`` (see :data:`SPEC_SYNTAX`)."""
    if kind not in _KEYS:
        raise ValueError(f"unknown kind {kind!r}")
    parts = text.split(SPEC_SEPARATOR)
    path = parts[0].strip()
    if not path:
        raise InputError(f"--{kind} {text!r}: no file. Write PATH::key=value..., e.g. "
                         f"{'soil.gpkg::fields=Cu_mgkg,Zn_mgkg' if kind == 'points' else 'layer.gpkg::field=TYPE'}.")
    opts: dict[str, str] = {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise InputError(f"--{kind} {text!r}: option {part!r} is not key=value.")
        if key not in _KEYS[kind]:
            raise InputError(f"--{kind} {text!r}: unknown option {key!r}; options: {', '.join(_KEYS[kind])}.")
        if key in opts:
            raise InputError(f"--{kind} {text!r}: option {key!r} given twice.")
        opts[key] = value.strip()
    common = {"layer": opts.get("layer") or None, "where": opts.get("where") or None}
    if kind == "points":
        fields = tuple(f.strip() for f in opts.get("fields", "").split(",") if f.strip())
        if not fields:
            raise InputError(f"--points {text!r}: name the numeric fields to grid, "
                             f"e.g. {path}::fields=Cu_mgkg,Zn_mgkg.")
        log = opts.get("log", "yes").lower()
        if log not in _TRUE + _FALSE:
            raise InputError(f"--points {text!r}: log must be yes or no, not {opts['log']!r}.")
        return PointSamplesSpec(path, fields, log=log in _TRUE, prefix=opts.get("prefix") or None, **common)
    if not opts.get("field"):
        raise InputError(f"--{kind} {text!r}: name the field, e.g. {path}::field=NAME.")
    if kind == "categories":
        return CategoricalPolygonsSpec(path, opts["field"], prefix=opts.get("prefix") or None, **common)
    try:
        sigma = float(opts.get("sigma_km", "10"))
    except ValueError:
        raise InputError(f"--line-attribute {text!r}: sigma_km must be a number of km, "
                         f"not {opts['sigma_km']!r}.") from None
    return LineAttributeSpec(path, opts["field"], sigma_km=sigma, name=opts.get("name") or None, **common)


def parse_specs(texts: Optional[Sequence[str]], kind: str,
                default: Sequence[VectorAuxSpec]) -> list[VectorAuxSpec]:
    """The specs of a repeatable option: ``None`` (not given) → ``default``; ``none`` entries → nothing."""
    if texts is None:
        return list(default)
    return [parse_spec(t, kind) for t in texts if t.strip().lower() != "none"]
