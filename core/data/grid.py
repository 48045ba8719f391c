"""The grid every layer of a stack shares: CRS, affine transform and shape."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine, rowcol

MILE_M = 1609.344
DEFAULT_CRS = "EPSG:5070"  # NAD83 / Conus Albers, metres
WINDOW_MULTIPLE = 32  # tile and window sides are multiples of this many cells: the U-Net halves its input 5 times


def parse_crs(value: str | CRS, what: str = "CRS") -> CRS:
    """A CRS from user input (EPSG:5070, a PROJ string, WKT), or :class:`InputError` naming
    ``what`` (e.g. the option it came from) when it is not one."""
    if isinstance(value, CRS):
        return value
    from rasterio.errors import CRSError

    from ..errors import InputError

    try:
        return CRS.from_user_input(value)
    except (CRSError, ValueError, TypeError) as e:
        raise InputError(f"{what}: '{value}' is not a coordinate reference system ({e}). Give an EPSG code "
                         "(e.g. EPSG:5070), a PROJ string or WKT.") from None


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: ``transform`` maps (col, row) to the CRS's coordinates."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @classmethod
    def from_bounds(cls, crs: str | CRS, bounds: tuple[float, float, float, float],
                    resolution: float) -> "Grid":
        """The grid covering ``bounds`` (left, bottom, right, top), snapped outward to
        multiples of ``resolution`` so that grids of the same resolution align."""
        left, bottom, right, top = bounds
        left = math.floor(left / resolution) * resolution
        bottom = math.floor(bottom / resolution) * resolution
        right = math.ceil(right / resolution) * resolution
        top = math.ceil(top / resolution) * resolution
        width = int(round((right - left) / resolution))
        height = int(round((top - bottom) / resolution))
        return cls(CRS.from_user_input(crs), Affine(resolution, 0, left, 0, -resolution, top), height, width)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, col of points in the grid's CRS, and a mask of those that fall inside."""
        rows, cols = rowcol(self.transform, np.asarray(x, float), np.asarray(y, float), op=np.floor)
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        return rows, cols, inside

    def cell_centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.transform
        return t.c + (np.asarray(cols) + 0.5) * t.a, t.f + (np.asarray(rows) + 0.5) * t.e

    def window(self, row0: int, col0: int, height: int, width: int) -> "Grid":
        """The sub-grid of a window (row0, col0, height, width)."""
        t = self.transform
        return Grid(self.crs, Affine(t.a, 0, t.c + col0 * t.a, 0, t.e, t.f + row0 * t.e), height, width)

    def to_dict(self) -> dict[str, Any]:
        return {"crs": self.crs.to_string(), "crs_wkt": self.crs.to_wkt(),
                "transform": list(self.transform)[:6], "height": self.height, "width": self.width,
                "resolution": self.resolution}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Grid":
        crs = CRS.from_user_input(d.get("crs_wkt") or d["crs"])
        return cls(crs, Affine(*d["transform"]), int(d["height"]), int(d["width"]))
