"""The one reader of a raster band's values: the band as float32 with NaN where it holds no data,
resampled onto a grid.

- Its data type is honoured: signed bytes stay signed (GDAL before 3.7 stores Int8 as Byte with
  ``PIXELTYPE=SIGNEDBYTE``, and its warper reads them unsigned: −1 became 255), and a band's scale
  and offset are applied.
- No data is: the declared nodata value (compared in the band's own type), the band's mask
  (a mask band or alpha), NaN and infinities, and values of magnitude ≥ :data:`FILL_MAGNITUDE`
  (−3.4e38, the float32 extreme, and NetCDF's 9.97e36 are fill values nobody declared); the
  undeclared ones are counted and reported. −9999 and the like are no data only when declared.
- When the raster's cells are the grid's (same CRS and cell size, edges aligned: an M3 stack and a
  region of its grid), the grid's window is read and copied, not resampled: every resampling of
  such a grid is the identity, and a window of a pixel-interleaved stack reads in milliseconds where
  the whole band decompresses every band.
- Otherwise the values are resampled from memory (GDAL's warper, NaN as nodata): the whole raster, or,
  when it is larger than :data:`MIN_SOURCE_CELLS` and 4 × the grid's cells, the part around the
  grid, averaged over k × k blocks first when that is still too large.

Statistics of the values are computed in float64 (:func:`band_statistics`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from rasterio.enums import MaskFlags, Resampling

from ..errors import InputError
from .grid import Grid

FILL_MAGNITUDE = 1e30           # |value| at least this: a fill value, not data
MIN_SOURCE_CELLS = 16_000_000   # source cells read at full resolution at least (64 MB as float32)
STRIP_CELLS = 4_000_000         # source cells read at a time


@dataclass
class BandReading:
    """A band on a grid and what was found reading it."""

    values: np.ndarray          # (H, W) float32, NaN where no data
    undeclared_fill: int = 0    # source cells of magnitude ≥ FILL_MAGNITUDE, taken as no data
    fill_example: float = 0.0   # one of those values
    signed_bytes: bool = False  # the band is Int8 stored as Byte (read signed)
    block: int = 1              # source cells averaged per side before resampling


def is_signed_byte(src: Any, band: int) -> bool:
    """Whether band ``band`` holds signed bytes (Int8, or Byte with PIXELTYPE=SIGNEDBYTE)."""
    if src.dtypes[band - 1] == "int8":
        return True
    return src.dtypes[band - 1] == "uint8" and \
        (src.tags(band, "IMAGE_STRUCTURE").get("PIXELTYPE") or "").upper() == "SIGNEDBYTE"


def _as_float(raw: np.ndarray, src: Any, band: int, signed: bool,
              masks: Optional[np.ndarray]) -> tuple[np.ndarray, int, float]:
    """float64 values with NaN for no data; the count of undeclared fill values and one of them."""
    if signed and raw.dtype == np.uint8:
        raw = raw.view(np.int8)
    values = raw.astype(np.float64)
    missing = ~np.isfinite(values)
    nodata = src.nodatavals[band - 1]
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        if signed and nodata > 127:  # declared as the unsigned byte
            nodata -= 256
        missing |= values == nodata
    if masks is not None:
        missing |= masks == 0
    fill = ~missing & (np.abs(values) >= FILL_MAGNITUDE)
    n_fill = int(fill.sum())
    example = float(values[fill][0]) if n_fill else 0.0
    missing |= fill
    scale, offset = src.scales[band - 1] or 1.0, src.offsets[band - 1] or 0.0
    if scale != 1.0 or offset != 0.0:
        values = values * scale + offset
    values[missing] = np.nan
    return values, n_fill, example


def aligned_window(src: Any, grid: Grid):
    """The raster's window holding the grid's cells when the raster's cells are the grid's (same CRS
    and cell size, north-up, cell edges aligned); None otherwise. It may reach past the raster."""
    from rasterio.windows import Window

    t, res = src.transform, grid.resolution
    if (src.crs != grid.crs or t.b or t.d or abs(t.a - res) > 1e-6 * res or abs(t.e + res) > 1e-6 * res):
        return None
    dx, dy = (grid.transform.c - t.c) / res, (t.f - grid.transform.f) / res
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        return None
    return Window(round(dx), round(dy), grid.width, grid.height)


def _copy_aligned(src: Any, band: int, grid: Grid, window) -> BandReading:
    """The band on an aligned grid: the cells the raster holds copied, NaN elsewhere."""
    from rasterio.windows import Window

    out = np.full(grid.shape, np.nan, np.float32)
    c0, r0 = max(0, window.col_off), max(0, window.row_off)
    c1, r1 = min(src.width, window.col_off + grid.width), min(src.height, window.row_off + grid.height)
    if c0 >= c1 or r0 >= r1:
        return BandReading(out, signed_bytes=is_signed_byte(src, band))
    values, n_fill, example = read_band(src, band, Window(c0, r0, c1 - c0, r1 - r0))
    out[r0 - window.row_off:r1 - window.row_off, c0 - window.col_off:c1 - window.col_off] = values
    return BandReading(out, n_fill, example, is_signed_byte(src, band))


def _source_window(src: Any, grid: Grid, margin: int = 3):
    """The window of the raster around the grid (its whole extent when the grid's bounds cannot be
    carried into the raster's CRS); None when they do not meet. The margin is ``margin`` raster
    cells plus two grid cells, the reach of GDAL's resampling kernel when it shrinks the raster."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window, from_bounds

    whole = Window(0, 0, src.width, src.height)
    try:
        l, b, r, t = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
        if not (l < r and b < t and all(map(math.isfinite, (l, b, r, t)))):
            return whole
        win = from_bounds(l, b, r, t, transform=src.transform)
    except Exception:  # noqa: BLE001 — a CRS pair the bounds cannot be carried across: read it all
        return whole
    margin += 2 * math.ceil(max(abs(win.width) / grid.width, abs(win.height) / grid.height))
    c0 = max(0, math.floor(min(win.col_off, win.col_off + win.width)) - margin)
    r0 = max(0, math.floor(min(win.row_off, win.row_off + win.height)) - margin)
    c1 = min(src.width, math.ceil(max(win.col_off, win.col_off + win.width)) + margin)
    r1 = min(src.height, math.ceil(max(win.row_off, win.row_off + win.height)) + margin)
    if c0 >= c1 or r0 >= r1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def read_band(src: Any, band: int, window=None, block: int = 1) -> tuple[np.ndarray, int, float]:
    """The band's values in ``window`` (default: all) as float32 with NaN for no data, averaged
    over ``block`` × ``block`` cells (NaN ignored); the count of undeclared fill values and one."""
    from rasterio.windows import Window

    window = window or Window(0, 0, src.width, src.height)
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    signed = is_signed_byte(src, band)
    flags = src.mask_flag_enums[band - 1]
    use_masks = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
    out = np.full((-(-h // block), -(-w // block)), np.nan, np.float32)
    n_fill, example = 0, 0.0
    rows = max(block, (STRIP_CELLS // max(1, w)) // block * block)
    for top in range(0, h, rows):
        n = min(rows, h - top)
        win = Window(c0, r0 + top, w, n)
        raw = src.read(band, window=win)
        masks = src.read_masks(band, window=win) if use_masks else None
        values, nf, ex = _as_float(raw, src, band, signed, masks)
        if nf and not n_fill:
            example = ex
        n_fill += nf
        if block > 1:
            ph, pw = -(-n // block) * block, -(-w // block) * block
            padded = np.full((ph, pw), np.nan)
            padded[:n, :w] = values
            blocks = padded.reshape(ph // block, block, pw // block, block)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
                values = np.nanmean(blocks, axis=(1, 3))
        out[top // block:top // block + values.shape[0]] = values
    return out, n_fill, example


def band_on_grid(src: Any, band: int, grid: Grid,
                 resampling: Resampling = Resampling.bilinear) -> BandReading:
    """Band ``band`` of the open raster ``src`` resampled onto ``grid`` (see the module's docstring)."""
    from rasterio.warp import reproject
    from rasterio.windows import transform as window_transform

    if not 1 <= band <= src.count:
        raise InputError(f"{src.name} has {src.count} band(s), not band {band}.")
    from rasterio.windows import Window

    aligned = aligned_window(src, grid)
    if aligned is not None:
        return _copy_aligned(src, band, grid, aligned)
    out = np.full(grid.shape, np.nan, np.float32)
    budget = max(MIN_SOURCE_CELLS, 4 * grid.width * grid.height)
    window = Window(0, 0, src.width, src.height)
    if src.width * src.height > budget:  # read the part around the grid (GDAL's warper resamples
        window = _source_window(src, grid)  # a window slightly otherwise than the whole raster)
        if window is None:
            return BandReading(out, signed_bytes=is_signed_byte(src, band))
    cells = int(window.width) * int(window.height)
    block = max(1, math.ceil(math.sqrt(cells / budget))) if cells > budget else 1
    if block > 1:  # whole blocks only: a partial block's mean would sit off its cell's centre
        window = Window(window.col_off, window.row_off, max(block, int(window.width) // block * block),
                        max(block, int(window.height) // block * block))
    values, n_fill, example = read_band(src, band, window, block)
    transform = window_transform(window, src.transform)
    if block > 1:
        from affine import Affine

        transform = transform * Affine.scale(block)
    reproject(source=values, destination=out, src_transform=transform, src_crs=src.crs, src_nodata=np.nan,
              dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan, resampling=resampling)
    return BandReading(out, n_fill, example, is_signed_byte(src, band), block)


def fill_note(name: str, reading: BandReading) -> str:
    """The warning for undeclared fill values ('' when there were none)."""
    if not reading.undeclared_fill:
        return ""
    return (f"{name}: {reading.undeclared_fill} cell(s) hold {reading.fill_example:g}, a fill value that is not "
            "declared as the raster's nodata; they are read as no data. Declare it (gdal_edit.py -a_nodata "
            f"{reading.fill_example:g} FILE) to silence this.")


def band_statistics(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the finite values, in float64 (float32 sums of squares
    overflow for values near 1e19 and lose digits long before)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    mean = float(v.mean())
    return mean, float(np.sqrt(np.mean((v - mean) ** 2)))


def constant_over(values: np.ndarray, valid: np.ndarray, rel: float = 1e-6) -> Optional[float]:
    """The value a band holds in every valid cell with data, when it holds one (up to ``rel``
    of its magnitude: resampling leaves float rounding); None when it varies or holds no data.
    The one test of "this layer says nothing"."""
    v = np.asarray(values)[valid]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    return hi if hi - lo <= rel * max(abs(lo), abs(hi)) else None
