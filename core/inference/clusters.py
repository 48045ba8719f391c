"""Discovered clusters: connected regions of high mean probability with no record of that species
nearby — where the map says a mineral should be but nobody has recorded one (the "resources
hidden by record keeping" the method is about).

A cluster is a set of 8-connected cells with mean probability >= ``threshold``, of at least
``min_area_km2``, and with no known record of the species within ``min_distance_km`` of any of
its cells. Each is described by its area, peak and mean probability, centroid (lon/lat), the
distance from its nearest cell to the nearest record of any species, and that record's site name
and commodities. Clusters are found one species band at a time (one band in memory).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
from rasterio.crs import CRS

from ..atomic import atomic_path
from ..data.grid import Grid
from ..data.prediction_io import read_band, read_prediction_info
from ..data.records import Records
from ..errors import InputError

if TYPE_CHECKING:
    from ..data.features import PointRecords
    from ..data.records import RecordColumns

WGS84 = CRS.from_epsg(4326)
LAYER = "clusters"


@dataclass
class Cluster:
    species: str
    area_km2: float
    cells: int
    peak_prob: float
    mean_prob: float
    centroid_lon: float
    centroid_lat: float
    nearest_record_km: float          # from the cluster's nearest cell to a record of any species
    nearest_site: str
    nearest_commodities: str
    nearest_species_record_km: float  # to the nearest record of this species
    geometry: Optional[dict[str, Any]] = None  # GeoJSON (Multi)Polygon in the grid's CRS
    cell_index: Optional[tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False, compare=False)  # rows, cols


@dataclass
class KnownSites:
    """Known records as points in the grid's CRS: which species each names, its name and commodities."""

    x: np.ndarray
    y: np.ndarray
    species: np.ndarray  # (N, S) bool over ``symbols``
    symbols: list[str]
    names: list[str]
    commodities: list[str]

    @classmethod
    def from_records(cls, records: Records, grid: Grid) -> "KnownSites":
        from rasterio.warp import transform

        if len(records) == 0:
            return cls(np.zeros(0), np.zeros(0), np.zeros((0, len(records.symbols)), bool),
                       list(records.symbols), [], [])
        x, y = transform(WGS84, grid.crs, records.lon, records.lat)
        return cls(np.asarray(x), np.asarray(y), records.species, list(records.symbols),
                   list(records.names), list(records.commodities))

    @classmethod
    def from_stack(cls, source) -> "KnownSites":
        """Presence cells of a stack (its centres; no site names): when no records file is given."""
        g = source.grid
        rows, cols, flags = [], [], []
        for r in range(0, g.height, 256):
            h = min(256, g.height - r)
            bands = source.read_window(r, 0, h, g.width).presence > 0  # all bands at once (pixel-interleaved)
            any_ = bands.any(axis=0)
            rr, cc = np.nonzero(any_)
            rows.append(rr + r)
            cols.append(cc)
            flags.append(bands[:, rr, cc].T)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        species = np.concatenate(flags) if flags else np.zeros((0, len(source.species)), bool)
        x, y = g.cell_centres(rows, cols)
        comm = [";".join(s for s, f in zip(source.species, row) if f) for row in species]
        return cls(np.asarray(x, float), np.asarray(y, float), species, list(source.species),
                   ["" for _ in comm], comm)

    def tree(self, species: Optional[str] = None):
        from scipy.spatial import cKDTree

        sel = (self.species[:, self.symbols.index(species)] if species is not None
               else np.ones(len(self.x), bool))
        idx = np.flatnonzero(sel)
        if len(idx) == 0:
            return None, idx
        return cKDTree(np.column_stack([self.x[idx], self.y[idx]])), idx


def known_sites(grid: Grid, species: Sequence[str], *, points: Optional["PointRecords"] = None,
                records: Optional[str | Path] = None, columns: Optional["RecordColumns"] = None,
                stack=None) -> tuple[KnownSites, str]:
    """The known sites a comparison or a clusters search measures against, and what they are —
    the one rule for the CLI, the dock and the Processing algorithms, first match wins:

    1. the sites the user gave: ``points`` (a point layer's sites) or ``records`` (a records CSV,
       its ``columns`` as :func:`core.data.records.read_records` takes them);
    2. ``stack`` (a stack source) built from the embedded records: those records (they name the sites);
    3. ``stack``: its presence cells (no names);
    4. nothing: the embedded records.

    Records count for the stack's species when there is a stack, else for every default species
    and ``species`` (the prediction's), so "the nearest record of any species" means the same
    everywhere.
    """
    from ..data import defaults
    from ..data.features import records_from_points
    from ..data.records import read_records
    from ..data.species import SpeciesCatalog, catalog_for

    symbols = (list(stack.species) if stack is not None
               else list(dict.fromkeys([*SpeciesCatalog().symbols, *species])))
    catalog = catalog_for(symbols)
    if points is not None:
        sites = KnownSites.from_records(records_from_points(points, catalog), grid)
        return sites, f"sites of {points.name or 'the layer'}"
    if records is not None:
        recs = read_records(records, catalog, columns=columns)
        return KnownSites.from_records(recs, grid), f"records in {Path(records).name}"
    if stack is not None and (getattr(stack, "info", None) or {}).get("records") != defaults.RECORDS.name:
        return KnownSites.from_stack(stack), "presence cells of the stack"
    recs = read_records(defaults.RECORDS, catalog)
    return KnownSites.from_records(recs, grid), f"records in {defaults.RECORDS.name}"


def check_prediction_stack(prediction: str | Path, source, stack_name: str = "") -> None:
    """Refuse (:class:`InputError`) a stack that is not the one a prediction was made from: another
    grid, species the prediction has and the stack lacks, or (predictions record it, tag ``stack``)
    another stack fingerprint (other records, outline or aux bands; :func:`core.data.stack.stack_fingerprint`).
    A prediction too old to carry the fingerprint gets a warning."""
    from ..data.stack import stack_fingerprint

    grid, species, meta = read_prediction_info(prediction)
    name, stack_name = Path(prediction).name, stack_name or "the stack"
    how = ("Pass the stack the prediction was made from (predict --stack), or predict again on this stack.")
    if grid.to_dict() != source.grid.to_dict():
        raise InputError(f"{name} and {stack_name} are on different grids (prediction: {grid.width} x {grid.height} "
                         f"cells of {grid.resolution:g} m in {grid.crs.to_string()}; stack: {source.grid.width} x "
                         f"{source.grid.height} cells of {source.grid.resolution:g} m in "
                         f"{source.grid.crs.to_string()}). {how}")
    missing = [s for s in species if s not in source.species]
    if missing:
        raise InputError(f"{name} has species {', '.join(missing)} that {stack_name} lacks (its species: "
                         f"{', '.join(source.species)}): its known records cannot be those of the prediction. {how}")
    made_from = meta.get("stack")
    if made_from is None:
        warnings.warn(f"{name} does not record which stack it was made from (written by an older version); "
                      f"its known records are taken from {stack_name}: make sure it is that stack.", stacklevel=2)
    elif made_from != stack_fingerprint(source):
        raise InputError(f"{name} was made from another stack than {stack_name} (same grid, but other records, "
                         "outline, held-out sources or aux bands): clusters 'with no record nearby' would be "
                         f"judged against the wrong records. {how}")


def metres_per_unit(grid: Grid) -> float:
    if not grid.crs.is_projected:
        raise InputError("Clusters need a projected grid (areas and distances in metres); the prediction's "
                         f"CRS {grid.crs.to_string()} is not. Build the stack in a projected CRS.")
    factor = grid.crs.linear_units_factor
    return float(factor[1]) if factor else 1.0


def find_clusters(prediction: str | Path, sites: KnownSites, threshold: float, min_area_km2: float,
                  min_distance_km: float, species: Optional[Sequence[str]] = None,
                  with_geometry: bool = True, with_cells: bool = False) -> list[Cluster]:
    """Clusters of every species band of a prediction GeoTIFF, largest peak first per species
    (``with_cells``: each with its cells' rows and columns, ``cell_index``)."""
    from rasterio.features import shapes
    from rasterio.warp import transform
    from scipy import ndimage

    grid, pred_species, _ = read_prediction_info(prediction)
    species = list(species or pred_species)
    missing = [s for s in species if s not in pred_species]
    if missing:
        raise InputError(f"The prediction has no band for {', '.join(missing)}; it has {', '.join(pred_species)}.")
    if not 0.0 < threshold < 1.0:
        raise InputError(f"The probability threshold must be between 0 and 1; got {threshold}.")
    unit = metres_per_unit(grid)
    cell_km2 = abs(grid.transform.a * grid.transform.e) * unit * unit / 1e6
    any_tree, any_idx = sites.tree()
    out: list[Cluster] = []
    for sym in species:
        prob = read_band(prediction, f"mean_{sym}")
        high = np.isfinite(prob) & (prob >= threshold)
        labels, n = ndimage.label(high, structure=np.ones((3, 3), int))
        if n == 0:
            continue
        sp_tree = sites.tree(sym)[0] if sym in sites.symbols else None
        objects = ndimage.find_objects(labels)
        keep = np.zeros(n + 1, bool)
        found: dict[int, Cluster] = {}
        for lab, sl in enumerate(objects, start=1):
            rr, cc = np.nonzero(labels[sl] == lab)
            rr, cc = rr + sl[0].start, cc + sl[1].start
            area = len(rr) * cell_km2
            if area < min_area_km2:
                continue
            x, y = grid.cell_centres(rr, cc)
            pts = np.column_stack([x, y])
            d_sp = np.inf
            if sp_tree is not None:
                d_sp = float(sp_tree.query(pts, k=1)[0].min()) * unit / 1000.0
            if d_sp < min_distance_km:
                continue
            p = prob[rr, cc]
            near_km, near_name, near_comm = np.inf, "", ""
            if any_tree is not None:
                dist, idx = any_tree.query(pts, k=1)
                best = int(np.argmin(dist))
                site = int(any_idx[idx[best]])
                near_km = float(dist[best]) * unit / 1000.0
                near_name, near_comm = sites.names[site], sites.commodities[site]
            lon, lat = transform(grid.crs, WGS84, [float(x.mean())], [float(y.mean())])
            keep[lab] = True
            found[lab] = Cluster(sym, round(area, 3), int(len(rr)), float(p.max()), float(p.mean()),
                                 float(lon[0]), float(lat[0]), near_km, near_name, near_comm, d_sp,
                                 cell_index=(rr, cc) if with_cells else None)
        if with_geometry and found:
            kept = np.where(keep[labels], labels, 0).astype(np.int32)
            polys: dict[int, list] = {}
            for geom, value in shapes(kept, mask=kept > 0, transform=grid.transform, connectivity=8):
                polys.setdefault(int(value), []).append(geom["coordinates"])
            for lab, c in found.items():
                c.geometry = {"type": "MultiPolygon", "coordinates": polys.get(lab, [])}
        out.extend(sorted(found.values(), key=lambda c: -c.peak_prob))
    return out


FIELDS = (("species", "str"), ("area_km2", "real"), ("cells", "int"), ("peak_prob", "real"),
          ("mean_prob", "real"), ("centroid_lon", "real"), ("centroid_lat", "real"),
          ("nearest_record_km", "real"), ("nearest_site", "str"), ("nearest_commodities", "str"),
          ("nearest_species_record_km", "real"))


def write_clusters(clusters: Sequence[Cluster], path: str | Path, crs: CRS,
                   meta: Optional[dict[str, Any]] = None) -> Path:
    """A GeoPackage with one polygon layer ``clusters`` (fields: :data:`FIELDS`), atomically."""
    from ..data.vectors import ogr_modules

    gdal, ogr, osr = ogr_modules()
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise InputError(f"Clusters are written as a GeoPackage; give a .gpkg path, not {path}.")
    types = {"str": ogr.OFTString, "real": ogr.OFTReal, "int": ogr.OFTInteger}
    with atomic_path(path) as tmp:
        tmp.unlink()  # the GeoPackage driver creates the file itself
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
        if ds is None:
            raise InputError(f"GDAL could not create a GeoPackage at {path}.")
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs.to_wkt())
        layer = ds.CreateLayer(LAYER, srs, ogr.wkbMultiPolygon)
        for name, kind in FIELDS:
            layer.CreateField(ogr.FieldDefn(name, types[kind]))
        defn = layer.GetLayerDefn()
        ds.StartTransaction()
        for c in clusters:
            feat = ogr.Feature(defn)
            for name, kind in FIELDS:
                value = getattr(c, name)
                if kind == "real" and not np.isfinite(value):
                    feat.SetFieldNull(name)
                else:
                    feat.SetField(name, value)
            if c.geometry is not None:
                feat.SetGeometry(ogr.CreateGeometryFromJson(json.dumps(c.geometry)))
            layer.CreateFeature(feat)
        ds.CommitTransaction()
        if meta:
            ds.SetMetadataItem("M3_CLUSTERS", json.dumps(meta))
        ds = None
        gdal.ErrorReset()
    return path


def summary(clusters: Sequence[Cluster], top: int = 15) -> str:
    """A printable table: counts per species, then the clusters with the highest peak probability."""
    if not clusters:
        return "no clusters: no region above the threshold is large enough and far enough from known records"
    per: dict[str, int] = {}
    for c in clusters:
        per[c.species] = per.get(c.species, 0) + 1
    lines = [f"{len(clusters)} clusters: " + ", ".join(f"{s} {n}" for s, n in per.items()),
             f"{'species':<8}{'area km2':>10}{'peak':>7}{'mean':>7}{'lon':>10}{'lat':>8}{'near km':>9}  nearest known site",
             ]
    for c in sorted(clusters, key=lambda c: -c.peak_prob)[:top]:
        site = c.nearest_site or "(unnamed)"
        lines.append(f"{c.species:<8}{c.area_km2:>10.1f}{c.peak_prob:>7.2f}{c.mean_prob:>7.2f}"
                     f"{c.centroid_lon:>10.3f}{c.centroid_lat:>8.3f}{c.nearest_record_km:>9.1f}  "
                     f"{site[:40]} [{c.nearest_commodities[:40]}]")
    if len(clusters) > top:
        lines.append(f"... and {len(clusters) - top} more (see the GeoPackage)")
    return "\n".join(lines)


def cluster_dicts(clusters: Sequence[Cluster]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(c).items() if k not in ("geometry", "cell_index")} for c in clusters]
