"""Auxiliary layers: any GDAL raster, in any CRS, resampled onto the grid; derived distance layers."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from scipy import ndimage

from ..errors import InputError
from .grid import Grid
from .raster_values import band_on_grid, band_statistics, constant_over, fill_note
from .rasterize import geometry_mask
from .stack import AuxBand
from .vectors import read_geometries

MIN_COVERAGE_WARN = 0.5


def layer_name(path: str | Path) -> str:
    """Band name from the file name: ``gravity_disturbance_10arcmin.tif`` → ``gravity_disturbance_10arcmin``."""
    name = Path(path).name
    for ext in (".tif", ".tiff", ".nc", ".vrt", ".img", ".asc"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def resample_to_grid(path: str | Path, grid: Grid, valid: np.ndarray,
                     resampling: Resampling = Resampling.bilinear) -> tuple[np.ndarray, str]:
    """Band 1 of a raster on the grid (float32, NaN where it has no data) and its units, read by
    :func:`core.data.raster_values.band_on_grid` (signed bytes, declared and undeclared fill values)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Auxiliary raster {path} does not exist.")
    if path.is_dir():
        raise InputError(f"Auxiliary raster {path} is a folder; give a raster file.")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"Cannot read {path} as a raster ({e}).") from None
    with src:
        if src.crs is None:
            raise InputError(f"Auxiliary raster {path} has no CRS. Assign one, e.g. "
                             f"`gdal_edit.py -a_srs EPSG:4326 {path}`, and retry.")
        try:
            reading = band_on_grid(src, 1, grid, resampling)
        except rasterio.errors.RasterioIOError as e:
            raise InputError(f"Cannot read the values of {path} ({e}); the file may be cut short or damaged.") from None
        out = reading.values
        units = (src.units[0] if src.units and src.units[0] else "") or ""
        covered = np.isfinite(out) & valid
        frac = covered.sum() / max(1, valid.sum())
        band = f"band 1 of {src.count} (M3 reads band 1 only; `gdal_translate -b N` extracts another)" \
            if src.count > 1 else "its only band"
        if frac == 0:
            raise InputError(_no_data_message(path, src, grid, band) + (
                f" ({fill_note(path.name, reading)})" if reading.undeclared_fill else ""))
    note = fill_note(path.name, reading)
    if note:
        warnings.warn(note, stacklevel=2)
    value = constant_over(out, valid)
    if value is not None:
        raise InputError(f"Auxiliary raster {path} is constant over the region ({band} holds "
                         f"{value:g} in every cell with data): a constant band carries no information. "
                         "Leave it out of --aux, or give the raster whose values vary.")
    if frac < MIN_COVERAGE_WARN:
        warnings.warn(f"{path.name} covers only {frac:.0%} of the valid cells; the rest is filled "
                      "from the nearest covered cell.", stacklevel=2)
    return out, units


def _no_data_message(path: Path, src, grid: Grid, band: str) -> str:
    """Why no valid cell got a value: the raster lies outside the grid, or it holds only nodata/NaN
    (anywhere, or where it overlaps the grid)."""
    from rasterio.warp import transform_bounds

    try:
        l, b, r, t = transform_bounds(src.crs, grid.crs, *src.bounds)
        gl, gb, gr, gt = grid.bounds
        overlaps = l < gr and r > gl and b < gt and t > gb
    except Exception:  # noqa: BLE001 — bounds that cannot be transformed: say what is known
        overlaps = True
    if not overlaps:
        return (f"Auxiliary raster {path} does not overlap the grid (its extent lies outside the region). "
                "Use a raster that covers the region or change --outline/--bounds.")
    shape = (min(src.height, 1024), min(src.width, 1024))
    sample = src.read(1, out_shape=shape, masked=True)
    empty = np.ma.getmaskarray(sample) | ~np.isfinite(sample.filled(0))
    where = "in every cell" if empty.all() else "wherever it overlaps the region"
    return (f"Auxiliary raster {path} holds no data {where}: {band} is nodata"
            f"{f' ({src.nodata:g})' if src.nodata is not None else ''} or NaN there. Check its nodata value "
            "(gdalinfo; `gdal_edit.py -unsetnodata` if real values were marked nodata) or use a raster with data "
            "over the region.")


def fill_nearest(arr: np.ndarray) -> np.ndarray:
    """Replace NaN cells with the value of the nearest finite cell."""
    missing = ~np.isfinite(arr)
    if not missing.any():
        return arr
    idx = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    return arr[tuple(idx)]


def normalised_band(raw: np.ndarray, valid: np.ndarray, name: str, units: str,
                    source: str) -> tuple[np.ndarray, AuxBand]:
    """Fill gaps, z-score with statistics over valid cells (float64), zero outside valid. Gaps are
    filled from the nearest cell with data only when a valid cell has none (cells outside valid end as 0)."""
    filled = fill_nearest(raw) if (valid & ~np.isfinite(raw)).any() else raw
    mean, std = band_statistics(filled[valid])
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise InputError(f"Aux band {name} ({source}) has no finite value over the region (mean {mean}, "
                         f"std {std}); check the layer's nodata value.")
    band = AuxBand(name=name, mean=mean, std=std if std > 0 else 1.0, units=units, source=source)
    z = ((filled.astype(np.float64) - band.mean) / band.std).astype(np.float32)
    z[~valid] = 0.0
    return z, band


def distance_to_lines_km(path: str | Path, grid: Grid) -> np.ndarray:
    """Distance (km) from each cell centre to the nearest cell crossed by the file's lines."""
    geoms, crs = read_geometries(path)
    hit = geometry_mask(geoms, crs, grid, all_touched=True)
    if not hit.any():
        raise InputError(f"No line of {path} crosses the grid; cannot derive a distance layer.")
    return (ndimage.distance_transform_edt(~hit) * grid.resolution / 1000.0).astype(np.float32)

