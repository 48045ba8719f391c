"""What a finished infill says about its hidden species in the region, for the plugin's table, curve
and export: at any threshold, the known sites captured and the area flagged; the capture curve
(share of known sites in the top X % of the region's area) for the model and for the blurred-record
baseline; CSV and a short HTML report. Plain numpy: no Qt, no qgis."""
from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..atomic import atomic_path
from ..data.grid import Grid
from ..data.rasterize import record_cells
from ..data.records import Records

BASELINE_SIGMA_CELLS = 4.0  # the blurred-record baseline's Gaussian σ (cells), one of discovery.BLUR_SIGMAS
CURVE_POINTS = 101
TABLE_HEADERS = ["Species", "Known sites in region", "Sites in flagged cells", "Share of sites",
                 "Flagged area km²", "Share of region", "Baseline share of sites", "Lift over random"]


def _ranked_capture(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Share of the weight (known sites) among the first k cells ranked by score, k = 0 … N; among
    equal scores the cells without sites come first (a flat map earns nothing); NaN scores rank last."""
    order = np.lexsort((weights, -scores))
    total = float(weights.sum())
    return np.concatenate([[0.0], np.cumsum(weights[order])]) / max(total, 1.0)


def capture_at(scores: np.ndarray, sites: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Share of the known sites in the top ``shares`` (each in [0, 1]) of the cells ranked by ``scores``."""
    k = np.round(np.asarray(shares) * len(scores)).astype(int)
    return _ranked_capture(scores, sites)[k]


def top_share_capture(scores: np.ndarray, sites: np.ndarray, share: float = 0.10) -> Optional[float]:
    """Share of the known sites in the top ``share`` of the cells ranked by ``scores`` (None
    without sites); NaN scores rank last."""
    if sites.sum() <= 0:
        return None
    return float(capture_at(scores, sites, np.array([share]))[0])


def percent(value: Optional[float]) -> str:
    """A share as a percentage that does not round small values to 0 %: 26 %, 4.2 %, 0.46 %."""
    if value is None or not np.isfinite(value):
        return "—"
    p = 100.0 * value
    if p == 0 or p >= 10:
        return f"{p:.0f} %"
    if p >= 1:
        return f"{p:.1f} %"
    return f"{p:.2g} %"


@dataclass
class ThresholdRow:
    """The table's row for one species at one threshold."""

    species: str
    threshold: float
    sites_in_region: int
    sites_flagged: int
    flagged_cells: int
    region_cells: int
    cell_area_km2: float
    baseline_captured: Optional[float]  # share of sites the baseline captures on the same area

    @property
    def captured(self) -> Optional[float]:
        return self.sites_flagged / self.sites_in_region if self.sites_in_region else None

    @property
    def flagged_share(self) -> float:
        return self.flagged_cells / self.region_cells if self.region_cells else 0.0

    @property
    def flagged_area_km2(self) -> float:
        return self.flagged_cells * self.cell_area_km2

    @property
    def lift(self) -> Optional[float]:
        """Captured share over flagged share (1: no better than flagging cells at random)."""
        if self.captured is None or self.flagged_share <= 0:
            return None
        return self.captured / self.flagged_share

    def cells(self) -> list[str]:
        """The row as text, as the dock shows it."""
        lift = "—" if self.lift is None else f"× {self.lift:.1f}"
        return [self.species, str(self.sites_in_region), str(self.sites_flagged), percent(self.captured),
                f"{self.flagged_area_km2:,.0f}", percent(self.flagged_share), percent(self.baseline_captured), lift]

    def values(self) -> list[Any]:
        """The row as numbers, for CSV."""
        return [self.species, self.sites_in_region, self.sites_flagged, self.captured, self.flagged_area_km2,
                self.flagged_share, self.baseline_captured, self.lift]


@dataclass
class SpeciesScores:
    """One hidden species over the region's valid cells: the model's mean probability, the known
    sites per cell and the blurred-record baseline's score."""

    species: str
    scores: np.ndarray     # (N,) mean probability
    sites: np.ndarray      # (N,) known sites of the species in each cell
    baseline: np.ndarray   # (N,) blurred visible records
    cell_area_km2: float
    aux_only: Optional[np.ndarray] = None  # (N,) the aux-only map, when the run made one

    def at_threshold(self, threshold: float) -> ThresholdRow:
        flagged = self.scores >= threshold
        n = int(flagged.sum())
        baseline = None
        if self.sites.sum() > 0:
            baseline = float(_ranked_capture(self.baseline, self.sites)[n])
        return ThresholdRow(self.species, float(threshold), int(self.sites.sum()), int(self.sites[flagged].sum()),
                            n, int(len(self.scores)), self.cell_area_km2, baseline)

    def curve(self, points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(share of the region's area, share of sites captured by the model, by the baseline)."""
        share = np.linspace(0.0, 1.0, points)
        return share, capture_at(self.scores, self.sites, share), capture_at(self.baseline, self.sites, share)

    def aux_only_curve(self, points: int = CURVE_POINTS) -> Optional[np.ndarray]:
        """The aux-only map's share of sites captured at :meth:`curve`'s shares (None without it)."""
        if self.aux_only is None:
            return None
        return capture_at(self.aux_only, self.sites, np.linspace(0.0, 1.0, points))


def site_counts(sites: Records, grid: Grid, species: str) -> np.ndarray:
    """(H, W) number of known sites of ``species`` in each cell of ``grid``."""
    out = np.zeros(grid.shape, np.int64)
    if species not in sites.symbols:
        return out
    rows, cols, inside = record_cells(sites, grid)
    sel = inside & sites.species[:, sites.symbols.index(species)]
    np.add.at(out, (rows[sel], cols[sel]), 1)
    return out


def blurred_baseline(visible_presence: np.ndarray, valid: np.ndarray,
                     sigma: float = BASELINE_SIGMA_CELLS) -> np.ndarray:
    """(H, W) Gaussian-weighted share of valid cells holding a visible record of any species: the
    discovery test's blurred-record rival (``discovery.blurred_records``) on what the model saw."""
    from .baselines import gaussian_smoother, visible_share

    present = np.asarray(visible_presence).any(axis=0).astype(np.float64)
    share, _ = visible_share(present, valid, gaussian_smoother(sigma))
    return share


def species_scores(mean: dict[str, np.ndarray], grid: Grid, region_cells: np.ndarray, sites: Records,
                   baseline: np.ndarray) -> list[SpeciesScores]:
    """One :class:`SpeciesScores` per species of ``mean`` over the ``region_cells`` (H, W bool)."""
    area = (grid.resolution / 1000.0) ** 2
    base = np.nan_to_num(baseline[region_cells].astype(np.float64), nan=0.0)
    return [SpeciesScores(sym, np.nan_to_num(prob[region_cells].astype(np.float64), nan=0.0),
                          site_counts(sites, grid, sym)[region_cells], base, area)
            for sym, prob in mean.items()]


def write_table_csv(path: str | Path, rows: Sequence[ThresholdRow]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["species", "known_sites_in_region", "sites_in_flagged_cells", "share_of_sites",
                    "flagged_area_km2", "share_of_region", "baseline_share_of_sites", "lift", "threshold"])
        for r in rows:
            w.writerow(r.values() + [r.threshold])
    return path


def write_curve_csv(path: str | Path, scores: Sequence[SpeciesScores], points: int = CURVE_POINTS) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        columns = []  # (header, values), a species' columns together
        for s in scores:
            _, model, baseline = s.curve(points)
            columns += [(f"{s.species}_model", model), (f"{s.species}_baseline", baseline)]
            if s.aux_only is not None:
                columns.append((f"{s.species}_aux_only", s.aux_only_curve(points)))
        w.writerow(["share_of_area"] + [name for name, _ in columns])
        for i, a in enumerate(np.linspace(0, 1, points)):
            w.writerow([f"{a:.4f}"] + [f"{values[i]:.4f}" for _, values in columns])
    return path


def write_report_html(path: str | Path, title: str, settings: dict[str, Any], rows: Sequence[ThresholdRow],
                      curve_png: Optional[str] = None, files: Sequence[str] = ()) -> Path:
    """A short self-contained HTML page: the settings, the table, the curve picture, the files."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px}"
             "td{text-align:right}td:first-child{text-align:left}</style></head><body>",
             f"<h1>{e(title)}</h1>", "<h2>Settings</h2><table>"]
    parts += [f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in settings.items()]
    parts.append("</table><h2>Known sites of the hidden species in the region</h2><table><tr>")
    parts += [f"<th>{e(h)}</th>" for h in TABLE_HEADERS]
    parts.append("</tr>")
    for r in rows:
        parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r.cells()) + "</tr>")
    parts.append("</table><p>Share of sites: known sites of the species in the region that lie in cells at or "
                 "above the threshold. Baseline: the blurred visible records ranked over the same area. Lift: "
                 "share of sites over share of region (1 = random).</p>")
    if curve_png:
        parts.append(f"<h2>Capture curve</h2><img src='{e(curve_png)}' alt='capture curve'>")
    if files:
        parts.append("<h2>Files</h2><ul>" + "".join(f"<li>{e(f)}</li>" for f in files) + "</ul>")
    parts.append("</body></html>")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_sites(records: Records, species: Sequence[str], path: str | Path, layer: str = "known_sites") -> int:
    """The records that name any of ``species`` as a GeoPackage point layer in WGS84 (fields: name,
    commodities, species = the given species each names), atomically; returns how many."""
    from ..data.vectors import ogr_modules

    _, ogr, osr = ogr_modules()
    cols = [records.symbols.index(s) for s in species if s in records.symbols]
    keep = records.species[:, cols].any(axis=1) if cols else np.zeros(len(records), bool)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
        lyr = ds.CreateLayer(layer, srs, ogr.wkbPoint)
        for name in ("name", "commodities", "species"):
            lyr.CreateField(ogr.FieldDefn(name, ogr.OFTString))
        defn = lyr.GetLayerDefn()
        ds.StartTransaction()
        for i in np.flatnonzero(keep):
            feat = ogr.Feature(defn)
            feat.SetField("name", records.names[i] if i < len(records.names) else "")
            feat.SetField("commodities", records.commodities[i] if i < len(records.commodities) else "")
            feat.SetField("species", ", ".join(records.symbols[c] for c in cols if records.species[i, c]))
            pt = ogr.Geometry(ogr.wkbPoint)
            pt.AddPoint_2D(float(records.lon[i]), float(records.lat[i]))
            feat.SetGeometry(pt)
            lyr.CreateFeature(feat)
        ds.CommitTransaction()
        ds = None
    return int(keep.sum())
