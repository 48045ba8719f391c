"""Build a stack: records → presence bands, aux rasters and vector layers (point samples, categorical
polygons, line attributes: core.vector_aux) → normalised bands, outline → valid mask."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import defaults
from .atomic import check_writable
from .aux_layers import distance_to_lines_km, layer_name, normalised_band, resample_to_grid
from .errors import InputError
from .grid import Grid
from .progress import Progress, SilentProgress, check_cancelled
from .rasterize import geometry_mask, presence_bands, record_cells
from .records import RecordColumns, read_records
from .species import SpeciesCatalog
from .stack import AuxBand, Stack
from .vector_aux import CategoricalPolygonsSpec, LineAttributeSpec, PointSamplesSpec
from .vectors import read_geometries, reproject_geometries

FAULT_BAND = "fault_distance_km"


def outline_grid(outline: str | Path, crs: str, resolution: float) -> tuple[Grid, np.ndarray]:
    """The grid covering an outline's extent in ``crs`` and its valid-cell mask."""
    geoms, gcrs = read_geometries(outline)
    from rasterio.crs import CRS
    from rasterio.features import bounds as geom_bounds

    dst = CRS.from_user_input(crs)
    if not dst.is_projected:
        raise InputError(f"The grid CRS {crs} is geographic; choose a projected CRS in metres "
                         "(e.g. EPSG:5070 for the conterminous US) so that cells have equal area.")
    proj = reproject_geometries(geoms, gcrs, dst)
    b = np.array([geom_bounds(g) for g in proj])
    grid = Grid.from_bounds(dst, (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()), resolution)
    return grid, geometry_mask(proj, dst, grid)


def build_stack(out: str | Path,
                records: str | Path = defaults.RECORDS,
                aux_rasters: Sequence[str | Path] = defaults.AUX_RASTERS,
                faults: Optional[str | Path] = defaults.FAULTS,
                outline: str | Path = defaults.OUTLINE,
                crs: str = defaults.GRID_CRS,
                resolution: float = defaults.RESOLUTION_M,
                catalog: Optional[SpeciesCatalog] = None,
                include_processing_sites: bool = False,
                progress: Optional[Progress] = None,
                point_samples: Sequence[PointSamplesSpec] = defaults.POINT_SAMPLES,
                categorical_polygons: Sequence[CategoricalPolygonsSpec] = defaults.CATEGORICAL_POLYGONS,
                line_attributes: Sequence[LineAttributeSpec] = defaults.LINE_ATTRIBUTES,
                record_columns: Optional[RecordColumns] = None) -> Stack:
    """Build the stack and write it to ``out`` (atomically). Returns it.

    Aux bands, in order: the rasters, the fault distance, then the bands of each point-samples,
    categorical-polygons and line-attribute spec (:mod:`core.vector_aux`); each z-scored over the
    valid cells (:func:`normalised_band`)."""
    progress = progress or SilentProgress()
    catalog = catalog or SpeciesCatalog()
    check_writable(out)
    if resolution <= 0:
        raise InputError(f"Resolution must be positive (metres); got {resolution}.")
    vector_specs = [*point_samples, *categorical_polygons, *line_attributes]
    steps = 3 + len(aux_rasters) + (1 if faults else 0) + len(vector_specs)
    progress.start(steps, "build stack")
    try:
        grid, valid = outline_grid(outline, crs, resolution)
        if not valid.any():
            raise InputError(f"The outline {outline} covers no cell of the grid.")
        progress.advance(1)
        check_cancelled(progress)

        recs = read_records(records, catalog, include_processing_sites, record_columns)
        presence = presence_bands(recs, grid, valid)
        rows, cols, inside = record_cells(recs, grid)
        inside[inside] = valid[rows[inside], cols[inside]]
        progress.advance(1)

        aux: list[Optional[np.ndarray]] = []
        bands: list[AuxBand] = []
        for path in aux_rasters:
            check_cancelled(progress)
            raw, units = resample_to_grid(path, grid, valid)
            name = layer_name(path)
            z, band = normalised_band(raw, valid, name, units or defaults.AUX_UNITS.get(name, ""),
                                      Path(path).name)
            aux.append(z)
            bands.append(band)
            progress.advance(1)
        if faults:
            check_cancelled(progress)
            z, band = normalised_band(distance_to_lines_km(faults, grid), valid, FAULT_BAND, "km",
                                      f"distance to nearest line of {Path(faults).name}")
            aux.append(z)
            bands.append(band)
            progress.advance(1)
        for spec in vector_specs:
            check_cancelled(progress)
            raws = spec.bands(grid, valid)
            while raws:  # each raw band freed once normalised
                raw = raws.pop(0)
                z, band = normalised_band(raw.raw, valid, raw.name, raw.units, raw.source)
                aux.append(z)
                bands.append(band)
            progress.advance(1)
        names = [b.name for b in bands]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"Two aux bands have the same name ({', '.join(twice)}); rename one of the raster "
                             "files, or give a vector layer another prefix= or name=.")

        info = {"records": Path(records).name, "records_in_region": int(inside.sum()),
                "records_outside_region": int((~inside).sum()),
                "records_skipped_out_of_range": recs.skipped_out_of_range,
                "records_skipped_processing_plants": recs.skipped_processing,
                "records_skipped_no_species": recs.skipped_no_species,
                "records_no_species_spellings": dict(sorted(recs.unmatched_spellings.items(),
                                                            key=lambda kv: (-kv[1], kv[0]))[:20]),
                "outline": Path(outline).name, "presence_counts": {}}
        aux_arr = np.empty((len(aux),) + grid.shape, np.float32)
        for i in range(len(aux)):  # band by band, freeing each: the peak holds the bands once, not twice
            aux_arr[i] = aux[i]
            aux[i] = None
        stack = Stack(grid, catalog.symbols, presence, bands, aux_arr, valid, info)
        stack.info["presence_counts"] = stack.presence_counts()
        check_cancelled(progress)
        stack.write(out)
        progress.advance(1)
        return stack
    finally:
        progress.close()
