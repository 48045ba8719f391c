"""The poster's headline, checked the poster's way: on a CONUS map with nothing hidden, the clusters of high
probability where no record of the species lies, each set beside the embedded records of OTHER commodities
(records naming none of the ten species: crushed stone, sand and gravel, clay, silica, ... — the poster
found 3 of its 4 clusters on such surface mines), and beside the clusters of two rivals flagged over the
same area: the blurred records of the species and the aux-only map.

- M3's clusters: :func:`core.inference.clusters.find_clusters` at the map's threshold (the one written into
  the prediction, or --threshold), at least --min-area-km2, no record of the species within
  --min-distance-km (the `clusters` command's rule and defaults).
- The rivals' clusters: the same rule, each rival's threshold set per species so that it flags as many
  cells as M3's map does for that species (the same area).
- A cluster "hits" when an other-commodity record lies within --hit-km of one of its cells. How many
  hits would a random placement give? Each cluster's shape is moved --placements times to a random
  place where every cell is valid land, and its hits counted: the mean number of hits over placements
  (chance), and the share of placements with at least as many hits as the map's.

Run from the repository root (about a minute after the maps exist):
    .venv/bin/python docs/results/poster_clusters/poster_clusters.py --m3 conus.tif \
        --aux-map aux_map.tif --out docs/results/poster_clusters/clusters.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())
sys.path.insert(0, str(ROOT))

from core.data import defaults  # noqa: E402
from core.data.prediction_io import prediction_file, prediction_threshold, read_band, read_prediction_info  # noqa: E402
from core.data.records import csv_rows  # noqa: E402
from core.data.species import SpeciesCatalog  # noqa: E402
from core.data.stack import Stack  # noqa: E402
from core.evaluation.baselines import gaussian_smoother, visible_share  # noqa: E402
from core.inference.clusters import Cluster, KnownSites, find_clusters, metres_per_unit  # noqa: E402

BLUR_SIGMA = 16.0  # cells: the discovery test's widest blur, fixed in advance (as the national check)


def other_commodity_records(path: Path, grid) -> dict[str, Any]:
    """Records that name none of the ten species, as points in the grid's CRS, with name, commodities, type."""
    from rasterio.warp import transform

    catalog = SpeciesCatalog()
    rows = csv_rows(path)
    header = next(rows)[1]
    i = {c: k for k, c in enumerate(header)}
    lon, lat, names, comms, kinds = [], [], [], [], []
    for _, row in rows:
        try:
            x, y = float(row[i["lon"]]), float(row[i["lat"]])
        except (ValueError, IndexError):
            continue
        if not (-180 <= x <= 180 and -90 <= y <= 90) or catalog.match(row[i["commodities"]]):
            continue
        lon.append(x)
        lat.append(y)
        names.append(row[i["name"]])
        comms.append(row[i["commodities"]])
        kinds.append(row[i["site_type"]] if "site_type" in i else "")
    xs, ys = transform("EPSG:4326", grid.crs, lon, lat)
    return {"x": np.asarray(xs), "y": np.asarray(ys), "names": names, "commodities": comms, "types": kinds}


def cell_hits(rows: np.ndarray, cols: np.ndarray, grid, tree, hit_m: float) -> bool:
    """Whether an other-commodity record lies within ``hit_m`` of one of these cells' centres."""
    x, y = grid.cell_centres(rows, cols)
    d, _ = tree.query(np.column_stack([x, y]), k=1, distance_upper_bound=hit_m)
    return bool(np.isfinite(d).any())


def random_hits(clusters: list[Cluster], valid: np.ndarray, grid, tree, hit_m: float, placements: int,
                rng: np.random.Generator) -> np.ndarray:
    """(placements,) number of clusters that hit when each is moved to a random place on valid land."""
    h, w = valid.shape
    out = np.zeros(placements, int)
    for c in clusters:
        rr, cc = c.cell_index
        rr, cc = rr - rr.min(), cc - cc.min()
        for p in range(placements):
            for _ in range(200):  # a place where every cell is valid
                r0, c0 = rng.integers(0, h - rr.max()), rng.integers(0, w - cc.max())
                if valid[rr + r0, cc + c0].all():
                    out[p] += cell_hits(rr + r0, cc + c0, grid, tree, hit_m)
                    break
    return out


def same_area_threshold(values: np.ndarray, valid: np.ndarray, cells: int) -> float:
    """The threshold that flags ``cells`` (≥ 1) valid cells of ``values`` (the value of the cells-th highest)."""
    v = np.sort(values[valid & np.isfinite(values)])[::-1]
    t = float(v[min(cells, len(v)) - 1])
    return min(max(t, 1e-9), 1.0 - 1e-7)


def describe(c: Cluster, others: dict[str, Any], tree, grid, unit: float) -> dict[str, Any]:
    rr, cc = c.cell_index
    x, y = grid.cell_centres(rr, cc)
    d, k = tree.query(np.column_stack([x, y]), k=1)
    best = int(np.argmin(d))
    site = int(k[best])
    return {"species": c.species, "area_km2": round(c.area_km2, 1), "peak_prob": round(c.peak_prob, 3),
            "lon": round(c.centroid_lon, 3), "lat": round(c.centroid_lat, 3),
            "nearest_species_record_km": round(c.nearest_species_record_km, 1),
            "nearest_other_km": round(float(d[best]) * unit / 1000.0, 2),
            "nearest_other_name": others["names"][site], "nearest_other_commodities": others["commodities"][site],
            "nearest_other_type": others["types"][site]}


def markdown(result: dict[str, Any]) -> str:
    """The summary per map and every cluster as Markdown tables."""
    hit = result["hit_km"]
    lines = [f"| map | clusters | on an other-commodity record (≤ {hit:g} km) | a random placement: mean hits | "
             "placements hitting as often |", "|---|---|---|---|---|"]
    for name, m in result["maps"].items():
        share = m["share_of_placements_with_as_many_hits"]
        lines.append(f"| {name} | {m['clusters']} | {m['hits']} | {m['chance_hits_mean']:.2f} | "
                     f"{'—' if share is None else f'{share:.0%}'} |")
    lines += ["", "| map | species | area km² | peak probability | lon, lat | nearest record of the species | "
              "nearest other-commodity record | its commodities | distance |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in result["maps"].items():
        for c in m["cluster_list"]:
            lines.append(f"| {name} | {c['species']} | {c['area_km2']:g} | {c['peak_prob']:.3f} | "
                         f"{c['lon']:.3f}, {c['lat']:.3f} | {c['nearest_species_record_km']:g} km | "
                         f"{c['nearest_other_name']} | {c['nearest_other_commodities']} | "
                         f"{'**' if c['hit'] else ''}{c['nearest_other_km']:g} km{'**' if c['hit'] else ''} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m3", type=Path, required=True, help="M3's CONUS map (predict, nothing hidden)")
    ap.add_argument("--aux-map", type=Path, required=True, help="the aux-only map (aux-map) on the same grid")
    ap.add_argument("--stack", type=Path, default=None, help="the stack (default: the embedded CONUS stack)")
    ap.add_argument("--records", type=Path, default=defaults.RECORDS)
    ap.add_argument("--threshold", type=float, default=None, help="default: the one written into --m3")
    ap.add_argument("--min-area-km2", type=float, default=25.0)
    ap.add_argument("--min-distance-km", type=float, default=10.0)
    ap.add_argument("--hit-km", type=float, default=2.0, help="an other-commodity record this close to a cell")
    ap.add_argument("--placements", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="JSON of every cluster and the chance figures "
                    "(and the same as Markdown tables beside it, .md)")
    a = ap.parse_args()
    from scipy.spatial import cKDTree

    from core.data.build_stack import default_stack_path
    from core.data.records import read_records

    stack = Stack.read(a.stack or default_stack_path())
    grid, species, meta = read_prediction_info(a.m3)
    aux_grid, _, _ = read_prediction_info(a.aux_map)
    if grid.shape != stack.grid.shape or aux_grid.shape != grid.shape:
        raise SystemExit("the maps and the stack must share one grid")
    threshold = prediction_threshold(meta, a.threshold)
    unit = metres_per_unit(grid)
    sites = KnownSites.from_records(read_records(a.records, SpeciesCatalog().subset(stack.species)), grid)
    others = other_commodity_records(a.records, grid)
    tree = cKDTree(np.column_stack([others["x"], others["y"]]))
    hit_m = a.hit_km * 1000.0 / unit
    rng = np.random.default_rng(a.seed)
    valid = stack.valid.astype(bool)
    result: dict[str, Any] = {"threshold": threshold, "min_area_km2": a.min_area_km2,
                              "min_distance_km": a.min_distance_km, "hit_km": a.hit_km,
                              "placements": a.placements, "blur_sigma_cells": BLUR_SIGMA,
                              "other_commodity_records": len(others["names"]), "maps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        blurred = Path(tmp) / "blurred.tif"
        share, _ = visible_share(stack.presence.astype(np.float64), valid, gaussian_smoother(BLUR_SIGMA))
        share = np.where(valid, share, np.nan).astype(np.float32)
        with prediction_file(blurred, grid, list(stack.species), {"method": "blurred records"}) as w:
            w.write_rows(0, share, np.zeros_like(share))
        files = {"M3": a.m3, "blurred records of the species": blurred, "aux-only map": a.aux_map}
        flagged = {s: int((valid & (read_band(a.m3, f"mean_{s}") >= threshold)).sum()) for s in species}
        for name, path in files.items():
            found: list[Cluster] = []
            thresholds = {}
            for s in species:
                if not flagged[s]:  # M3 flags nothing of this species: no area to match
                    continue
                t = threshold if name == "M3" else same_area_threshold(read_band(path, f"mean_{s}"), valid, flagged[s])
                thresholds[s] = t
                found += find_clusters(path, sites, t, a.min_area_km2, a.min_distance_km, species=[s],
                                       with_geometry=False, with_cells=True)
            hits = [cell_hits(*c.cell_index, grid, tree, hit_m) for c in found]
            chance = random_hits(found, valid, grid, tree, hit_m, a.placements, rng)
            result["maps"][name] = {
                "thresholds": thresholds, "flagged_cells": flagged, "clusters": len(found), "hits": int(sum(hits)),
                "chance_hits_mean": float(chance.mean()) if len(chance) else 0.0,
                "share_of_placements_with_as_many_hits": float((chance >= sum(hits)).mean()) if found else None,
                "cluster_list": [dict(describe(c, others, tree, grid, unit), hit=h) for c, h in zip(found, hits)]}
            m = result["maps"][name]
            print(f"{name}: {m['clusters']} clusters, {m['hits']} on an other-commodity record (≤ {a.hit_km:g} km); "
                  f"random placement {m['chance_hits_mean']:.2f} (share with as many: "
                  f"{m['share_of_placements_with_as_many_hits']})", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    a.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {a.out} and {a.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
