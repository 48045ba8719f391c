"""What the user hides at inference: some species, in some region of the grid.

- species only: those species are hidden everywhere;
- region only: every species is hidden inside the region;
- both: the named species are hidden inside the region;
- neither: nothing is hidden by the user — the "where might minerals be" map, in which random
  mask draws hide every cell in turn (see :func:`core.inference.infer.infill`).

A region answers, for any window of the grid, which of its cells it covers, so regions never
need a raster of the whole grid in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np
from rasterio.crs import CRS

from ..data.grid import Grid, parse_crs
from ..errors import InputError

WGS84 = "EPSG:4326"


class Region(Protocol):
    """Cells of a grid to hide."""

    description: str

    def mask(self, grid: Grid) -> np.ndarray:
        """(H, W) bool on ``grid`` (the whole grid or any window of it)."""
        ...


def hiding_scenario(species: Sequence[str], has_region: bool, stack_species: Sequence[str]) -> Optional[str]:
    """The masking scenario a user's hiding is a case of, whose validation threshold applies:
    species only → "species", a region with all species → "region", a region with some →
    "both"; None when nothing is hidden (the "where might minerals be" map)."""
    if not has_region:
        return "species" if species else None
    return "both" if species and set(species) != set(stack_species) else "region"


@dataclass
class GeometryRegion:
    """Cells whose centre lies inside polygons (GeoJSON dicts in ``crs``)."""

    geometries: list[dict[str, Any]]
    crs: CRS
    description: str = "region"
    _cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def _in(self, crs: CRS) -> list[dict[str, Any]]:
        key = crs.to_wkt()
        if key not in self._cache:
            from ..data.vectors import reproject_geometries

            self._cache[key] = reproject_geometries(self.geometries, self.crs, crs)
        return self._cache[key]

    def mask(self, grid: Grid) -> np.ndarray:
        from rasterio.features import rasterize

        geoms = self._in(grid.crs)
        if not geoms or grid.height <= 0 or grid.width <= 0:
            return np.zeros(grid.shape, bool)
        return rasterize(((g, 1) for g in geoms), out_shape=grid.shape, transform=grid.transform,
                         fill=0, dtype="uint8").astype(bool)

    def bounds_in(self, crs: CRS) -> tuple[float, float, float, float]:
        from rasterio.features import bounds as geom_bounds

        b = np.array([geom_bounds(g) for g in self._in(crs)])
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


@dataclass
class RasterRegion:
    """A boolean raster on a grid (e.g. a selection drawn in QGIS), read for any aligned window."""

    array: np.ndarray
    grid: Grid
    description: str = "raster region"

    def __post_init__(self) -> None:
        if self.array.shape != self.grid.shape:
            raise InputError(f"Region raster shape {self.array.shape} differs from its grid {self.grid.shape}.")
        self.array = self.array.astype(bool)

    def mask(self, grid: Grid) -> np.ndarray:
        if grid.crs != self.grid.crs or abs(grid.resolution - self.grid.resolution) > 1e-9 * grid.resolution:
            raise InputError("The region raster is on another grid than the stack; rasterise it on the stack's grid.")
        t, g = self.grid.transform, grid.transform
        col0 = int(round((g.c - t.c) / t.a))
        row0 = int(round((g.f - t.f) / t.e))
        out = np.zeros(grid.shape, bool)
        r0, r1 = max(row0, 0), min(row0 + grid.height, self.grid.height)
        c0, c1 = max(col0, 0), min(col0 + grid.width, self.grid.width)
        if r0 < r1 and c0 < c1:
            out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = self.array[r0:r1, c0:c1]
        return out


class UnrecordedRegion:
    """The cells of a stack that hold no record of any species, optionally only inside another
    region. Hiding every species there asks the discovery question — where are the records nobody
    made, given every record made — which models trained with the ``unrecorded`` masking scenario
    learned (:mod:`core.masks.masking`). The stack's records are read once, here."""

    def __init__(self, stack: Any, within: Optional[Region] = None) -> None:
        """``stack``: a Stack or an open StackSource (read here, not closed)."""
        from ..data.stack_sources import open_stack_source

        if isinstance(stack, (str, Path)):
            raise TypeError("give UnrecordedRegion a Stack or an open StackSource, not a path")
        source = open_stack_source(stack)
        g = source.grid
        recorded = np.zeros(g.shape, bool)
        for i in range(len(source.species)):
            recorded |= source.read_presence(i, 0, 0, g.height, g.width)
        self.within = within
        self.description = ("every cell without a record" if within is None
                            else f"the cells without a record in {within.description}")
        self._cells = RasterRegion(~recorded, g, self.description)

    def mask(self, grid: Grid) -> np.ndarray:
        out = self._cells.mask(grid)
        return out & self.within.mask(grid) if self.within is not None else out


def _box(bounds: Sequence[float], points_per_side: int = 64) -> dict[str, Any]:
    """A rectangle as a polygon with densified edges, so it bends correctly when reprojected."""
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    t = np.linspace(0.0, 1.0, points_per_side, endpoint=False)
    xs = np.concatenate([minx + (maxx - minx) * t, np.full_like(t, maxx), maxx - (maxx - minx) * t,
                         np.full_like(t, minx)])
    ys = np.concatenate([np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy),
                         maxy - (maxy - miny) * t])
    ring = [[float(x), float(y)] for x, y in zip(xs, ys)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def region_from_bounds(bounds: Sequence[float], crs: str | CRS = WGS84) -> GeometryRegion:
    """The rectangle (minx, miny, maxx, maxy) in ``crs`` (default: longitude/latitude)."""
    if len(bounds) != 4:
        raise InputError(f"Bounds need four numbers (minx miny maxx maxy); got {list(bounds)}.")
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if not (minx < maxx and miny < maxy):
        raise InputError(f"Bounds {list(bounds)} are empty: write them as minx miny maxx maxy.")
    crs = parse_crs(crs, "The CRS of the bounds (--bounds-crs)")
    if crs.is_geographic and not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
        raise InputError(f"Bounds {list(bounds)} are not longitude/latitude degrees; give the CRS they are in "
                         "(e.g. --bounds-crs EPSG:5070).")
    label = f"bounds {minx:g} {miny:g} {maxx:g} {maxy:g} ({crs.to_string()})"
    return GeometryRegion([_box((minx, miny, maxx, maxy))], crs, label)


def region_from_vector(path: str | Path, layer: Optional[str] = None) -> GeometryRegion:
    """The polygons of a vector file's layer (GeoPackage, Shapefile, GeoJSON...), in its CRS."""
    from ..data.vectors import read_geometries

    geoms, crs = read_geometries(path, layer)
    polys = [g for g in geoms if g.get("type") in ("Polygon", "MultiPolygon")]
    if not polys:
        raise InputError(f"{path} has no polygons; draw the region to hide as polygons.")
    return GeometryRegion(polys, crs, f"polygons of {Path(path).name}")


@dataclass
class HideSpec:
    """Species to hide and the region to hide them in (see the module docstring)."""

    species: Sequence[str] = ()
    region: Optional[Region] = None

    @property
    def is_empty(self) -> bool:
        return not self.species and self.region is None

    def species_flags(self, stack_species: Sequence[str]) -> np.ndarray:
        """(S,) bool of the stack's species hidden by the user (all of them for a region alone)."""
        unknown = [s for s in self.species if s not in stack_species]
        if unknown:
            raise InputError(f"Cannot hide {', '.join(unknown)}: the stack's species are "
                             f"{', '.join(stack_species)}.")
        if not self.species:
            return np.full(len(stack_species), self.region is not None)
        return np.array([s in self.species for s in stack_species])

    def scenario(self, stack_species: Sequence[str]) -> Optional[str]:
        """The masking scenario this hiding is a case of (see :func:`hiding_scenario`)."""
        return hiding_scenario(self.species, self.region is not None, stack_species)

    def output_species(self, stack_species: Sequence[str]) -> list[str]:
        """The species that get probability bands: those hidden, or all of them."""
        if self.species:
            return [s for s in stack_species if s in self.species]
        return list(stack_species)

    def cells(self, grid: Grid, valid: np.ndarray) -> np.ndarray:
        """(H, W) bool: the valid cells of ``grid`` inside the region (every valid cell without one)."""
        if self.region is None:
            return valid.copy()
        return self.region.mask(grid) & valid

    def describe(self) -> str:
        if self.is_empty:
            return "nothing hidden by the user (random mask draws only)"
        what = ", ".join(self.species) if self.species else "all species"
        where = f"in {self.region.description}" if self.region is not None else "everywhere"
        return f"{what} hidden {where}"
