"""Build a stack: records → presence bands, aux rasters and vector layers (point samples, categorical
polygons, line attributes: core.data.vector_aux) → normalised bands, outline → valid mask."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..output_paths import check_outputs
from ..progress import Progress, SilentProgress, check_cancelled
from . import defaults
from .aux_layers import distance_to_lines_km, layer_name, normalised_band, resample_to_grid
from .grid import Grid, parse_crs
from .rasterize import geometry_mask, presence_bands, record_cells
from .records import RecordColumns, Records, read_records
from .species import SpeciesCatalog
from .stack import AuxBand, Stack
from .vector_aux import CategoricalPolygonsSpec, LineAttributeSpec, PointSamplesSpec, check_bands_vary
from .vectors import read_geometries, reproject_geometries

FAULT_BAND = "fault_distance_km"


GRID_CRS_OPTION = "The grid CRS (--crs)"


def memory_limit_bytes() -> int:
    """The most memory a stack may take while it is built: half of the machine's (8 GiB when
    that cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (AttributeError, ValueError, OSError):
        return 8 * 2 ** 30


def check_grid_size(grid: Grid, n_species: int, n_aux: int) -> None:
    """Refuse, before anything is allocated, a grid whose stack would not fit in memory: per
    cell a byte per presence band and the valid mask, 4 per aux band, and about 24 for the
    float64 working copies of the band being resampled."""
    per_cell = n_species + 1 + 4 * n_aux + 24
    need = grid.width * grid.height * per_cell
    limit = memory_limit_bytes()
    if need > limit:
        fit = grid.resolution * math.sqrt(need / limit)
        fit = math.ceil(fit / 10 ** math.floor(math.log10(fit)) * 10) * 10 ** math.floor(math.log10(fit)) / 10
        raise InputError(
            f"A grid of {grid.width} x {grid.height} cells of {grid.resolution:g} m with {n_species} presence and "
            f"about {n_aux} aux bands needs about {need / 2 ** 30:.1f} GiB of memory to build; the limit here is "
            f"{limit / 2 ** 30:.1f} GiB (half of this machine's memory). Choose --resolution {fit:g} or coarser, "
            "or a smaller outline (--outline).")


def _outline_extent(outline: str | Path, crs, resolution: float) -> tuple[Grid, list]:
    geoms, gcrs = read_geometries(outline)
    from rasterio.features import bounds as geom_bounds

    dst = parse_crs(crs, GRID_CRS_OPTION)
    if not dst.is_projected:
        raise InputError(f"The grid CRS {crs} is geographic; choose a projected CRS in metres "
                         "(e.g. EPSG:5070 for the conterminous US) so that cells have equal area.")
    proj = reproject_geometries(geoms, gcrs, dst)
    b = np.array([geom_bounds(g) for g in proj])
    return Grid.from_bounds(dst, (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()), resolution), proj


def outline_grid(outline: str | Path, crs: str, resolution: float) -> tuple[Grid, np.ndarray]:
    """The grid covering an outline's extent in ``crs`` and its valid-cell mask."""
    grid, proj = _outline_extent(outline, crs, resolution)
    return grid, geometry_mask(proj, grid.crs, grid)


def _aux_band_count(aux_rasters, faults, point_samples, categorical_polygons, line_attributes) -> int:
    """Aux bands the stack will have, at least (a categories layer counts one)."""
    return (len(aux_rasters) + (1 if faults else 0) + sum(len(s.fields) + 1 for s in point_samples)
            + len(categorical_polygons) + len(line_attributes))


def no_record_message(recs: Records, records: str | Path, outline: str | Path, grid: Grid,
                      valid: np.ndarray) -> str:
    """Why no record fell in the region, with the counts of each reason and what to do: a stack
    without records trains nothing and predicts nothing."""
    name = Path(records).name
    why = [f"{recs.rows_read} row(s) read"]
    if recs.skipped_out_of_range:
        note = recs.coordinates_note()
        why.append(f"{recs.skipped_out_of_range} with missing or out-of-range coordinates" + (f" ({note})" if note else ""))
    if recs.skipped_no_species:
        why.append(f"{recs.skipped_no_species} naming none of the species {', '.join(recs.symbols)}")
    if recs.skipped_processing:
        why.append(f"{recs.skipped_processing} processing plants")
    if len(recs):
        why.append(f"{len(recs)} outside the outline {Path(outline).name}")
        in_range = np.abs(recs.lon) <= 90.0
        if in_range.any():
            flipped = Records(recs.lat[in_range], recs.lon[in_range], recs.species[in_range], recs.symbols,
                              [], [])
            r, c, inside = record_cells(flipped, grid)
            inside[inside] = valid[r[inside], c[inside]]
            if inside.any():
                why.append(f"with longitude and latitude swapped {int(inside.sum())} of them would fall inside: "
                           "the columns look swapped; name them with --lon-column and --lat-column")
    return (f"No record of the species {', '.join(recs.symbols)} falls inside the outline ({name}: "
            f"{'; '.join(why)}). A stack without records trains and predicts nothing: check the records' "
            "columns (--lon-column/--lat-column, WGS84 degrees), the species (--species, --extra-species) "
            "and the outline (--outline).")


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
    categorical-polygons and line-attribute spec (:mod:`core.data.vector_aux`); each z-scored over the
    valid cells (:func:`normalised_band`)."""
    progress = progress or SilentProgress()
    catalog = catalog or SpeciesCatalog()
    vector_specs = [*point_samples, *categorical_polygons, *line_attributes]
    check_outputs({"the output": out}, inputs={
        "records": records, "aux raster": list(aux_rasters), "faults": faults, "outline": outline,
        "vector layer": [spec.path for spec in vector_specs]})
    if resolution <= 0:
        raise InputError(f"Resolution must be positive (metres); got {resolution}.")
    parse_crs(crs, GRID_CRS_OPTION)
    steps = 3 + len(aux_rasters) + (1 if faults else 0) + len(vector_specs)
    progress.start(steps, "build stack")
    try:
        grid, proj = _outline_extent(outline, crs, resolution)
        check_grid_size(grid, len(catalog.symbols),
                        _aux_band_count(aux_rasters, faults, point_samples, categorical_polygons, line_attributes))
        valid = geometry_mask(proj, grid.crs, grid)
        if not valid.any():
            raise InputError(f"The outline {outline} covers no cell of the grid.")
        progress.advance(1)
        check_cancelled(progress)

        recs = read_records(records, catalog, include_processing_sites, record_columns)
        rows, cols, inside = record_cells(recs, grid)
        inside[inside] = valid[rows[inside], cols[inside]]
        if not inside.any():
            raise InputError(no_record_message(recs, records, outline, grid, valid))
        presence = presence_bands(recs, grid, valid)
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
            check_bands_vary(raws, valid, spec.option)
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


def default_stack_path() -> Path:
    """The default CONUS stack, built from the embedded data on first use and cached."""
    path = defaults.cache_dir() / defaults.DEFAULT_STACK_NAME
    if not path.exists():
        from ..progress import TqdmProgress

        path.parent.mkdir(parents=True, exist_ok=True)
        build_stack(path, progress=TqdmProgress())
    return path
