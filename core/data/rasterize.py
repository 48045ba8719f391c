"""Burn records and vector geometries onto a grid."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform as transform_points

from .grid import Grid
from .records import Records
from .vectors import reproject_geometries

WGS84 = CRS.from_epsg(4326)


def record_cells(records: Records, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, col of each record on the grid and a mask of those inside it."""
    if len(records) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, bool)
    x, y = transform_points(WGS84, grid.crs, records.lon, records.lat)
    return grid.cell_of(np.asarray(x), np.asarray(y))


def presence_bands(records: Records, grid: Grid, valid: np.ndarray | None = None) -> np.ndarray:
    """(S, H, W) uint8: 1 where at least one record of the species falls in the cell (and, when
    ``valid`` is given, the cell is valid). Warns for a species with no record in the region."""
    rows, cols, inside = record_cells(records, grid)
    out = np.zeros((len(records.symbols),) + grid.shape, np.uint8)
    for i, sym in enumerate(records.symbols):
        sel = inside & records.species[:, i]
        out[i, rows[sel], cols[sel]] = 1
    if valid is not None:
        out &= valid.astype(np.uint8)[None]
    empty = [sym for i, sym in enumerate(records.symbols) if not out[i].any()]
    if empty:
        warnings.warn(f"No record of {', '.join(empty)} falls in the region; "
                      f"{'its presence band is' if len(empty) == 1 else 'their presence bands are'} empty.",
                      stacklevel=2)
    return out


def geometry_mask(geoms: list[dict[str, Any]], crs: CRS, grid: Grid, all_touched: bool = False) -> np.ndarray:
    """(H, W) bool: cells whose centre lies in the geometries (reprojected to the grid CRS)."""
    geoms = reproject_geometries(geoms, crs, grid.crs)
    return rasterize(((g, 1) for g in geoms), out_shape=grid.shape, transform=grid.transform,
                     fill=0, dtype="uint8", all_touched=all_touched).astype(bool)
