"""The plugin's pure-numpy glue in core: map-layer inputs on a model's grid, and the comparison with
known sites (small synthetic grids: this is arithmetic)."""
from __future__ import annotations

import numpy as np
import pytest
from rasterio import Affine
from rasterio.crs import CRS

from core.inference.site_comparison import compare_with_sites
from core.errors import InputError
from core.data.grid import Grid
from core.inference.layer_inputs import (PointRecords, VectorShapes, as_region, catalog_for, context_grid,
                               distance_to_shapes_km, records_from_points, valid_on_grid, window_in)
from core.data.records import Records

ALBERS = CRS.from_epsg(5070)


def grid_4x4() -> Grid:
    return Grid.from_bounds(ALBERS, (0, 0, 4000, 4000), 1000)


def box(x0, y0, x1, y1) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def sites_at(cells: list[tuple[int, int]], flags: list[list[bool]], grid: Grid) -> Records:
    """Records (lon/lat) at the centres of the given (row, col) cells."""
    from rasterio.warp import transform

    x, y = grid.cell_centres(np.array([c[0] for c in cells]), np.array([c[1] for c in cells]))
    lon, lat = transform(ALBERS, CRS.from_epsg(4326), list(x), list(y))
    n = len(cells)
    return Records(np.array(lon), np.array(lat), np.array(flags, bool), ["Au", "Cu"], [""] * n, [""] * n)


def test_comparison_counts_sites_in_the_region_in_flagged_cells():
    grid = grid_4x4()
    region = np.zeros((4, 4), bool)
    region[:2, :2] = True                     # top-left 2 x 2 cells hidden
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False                       # sea: never counted
    au = np.zeros((4, 4), np.float32)
    au[0, 1] = au[1, 1] = 0.9                 # flagged
    au[2, 2] = 0.9                            # flagged, but outside the region
    cu = np.full((4, 4), np.nan, np.float32)  # not predicted anywhere
    sites = sites_at([(0, 1), (1, 0), (1, 1), (2, 2), (0, 0)],
                     [[True, False], [True, True], [True, False], [True, False], [True, True]], grid)
    rows = {r.species: r for r in compare_with_sites({"Au": au, "Cu": cu}, grid, region, valid, 0.5, sites)}
    au_row, cu_row = rows["Au"], rows["Cu"]
    assert (au_row.sites_in_region, au_row.sites_flagged) == (3, 2)   # (0,0) is not valid, (2,2) not in region
    assert au_row.recall == pytest.approx(2 / 3)
    assert au_row.flagged_cells == 2 and au_row.region_cells == 3
    assert au_row.flagged_area_km2 == pytest.approx(2.0) and au_row.flagged_share == pytest.approx(2 / 3)
    assert (cu_row.sites_in_region, cu_row.sites_flagged, cu_row.flagged_cells) == (1, 0, 0)
    assert cu_row.recall == 0.0
    none = compare_with_sites({"Au": au}, grid, np.zeros((4, 4), bool), valid, 0.5, sites)[0]
    assert none.recall is None and none.flagged_share == 0.0


def test_context_grid_adds_margins_aligned_to_the_cells():
    region = as_region(VectorShapes([box(10_500, 20_500, 14_200, 22_100)], "EPSG:5070"))
    grid = context_grid(region, "EPSG:5070", 1000, margin_cells=2)
    left, bottom, right, top = grid.bounds
    assert (left, bottom, right, top) == (8000, 18000, 17000, 25000)
    assert grid.shape == (7, 9)
    small = context_grid(region, "EPSG:5070", 1000, margin_cells=0, min_cells=32)
    assert small.height >= 32 and small.width >= 32
    assert small.bounds[0] % 1000 == 0 and small.bounds[3] % 1000 == 0
    row0, col0, h, w = window_in(Grid.from_bounds(ALBERS, (0, 0, 100_000, 100_000), 1000), grid)
    assert (row0, col0, h, w) == (75, 8, 7, 9)
    with pytest.raises(InputError, match="aligned"):
        window_in(Grid.from_bounds(ALBERS, (0, 0, 100_000, 100_000), 1000),
                  Grid(ALBERS, grid.transform * Affine.translation(0.5, 0), 7, 9))


def test_empty_region_and_bad_crs_are_input_errors():
    with pytest.raises(InputError, match="empty"):
        as_region(VectorShapes([], "EPSG:4326"))
    with pytest.raises(InputError, match="coordinate reference system"):
        as_region(VectorShapes([box(0, 0, 1, 1)], "not a crs"))
    with pytest.raises(InputError, match="No cell of the region is valid"):
        valid_on_grid(grid_4x4(), VectorShapes([], "EPSG:5070"), None, [])


def test_points_match_commodity_spellings():
    pts = PointRecords(np.array([-120.0, -119.0, -118.0, np.nan]), np.array([38.0, 38.5, 39.0, 40.0]),
                       ["Gold; silver", "Clay", "au, CU", "Gold"], ["a", "b", "c", "d"])
    recs = records_from_points(pts, catalog_for(["Au", "Cu", "Mo"]))
    assert recs.symbols == ["Au", "Cu", "Mo"]
    assert recs.names == ["a", "c"]                      # clay matches nothing; NaN coordinates dropped
    np.testing.assert_array_equal(recs.species, [[True, False, False], [True, True, False]])


def test_distance_counts_lines_outside_the_grid():
    grid = grid_4x4()
    # a vertical line 10 km east of the grid's right edge
    line = {"type": "LineString", "coordinates": [[14_500, -50_000], [14_500, 50_000]]}
    dist = distance_to_shapes_km(VectorShapes([line], "EPSG:5070"), grid)
    # cell centres x = 500 .. 3500; the line's cells (all touched) start at x = 14000
    expected = (14_000 - (np.arange(4) * 1000 + 500) + 500) / 1000.0
    np.testing.assert_allclose(dist[0], expected)
    assert np.allclose(dist, dist[0])


def test_a_blank_aux_band_reads_as_its_mean_only_for_a_model_trained_with_aux_dropout(tmp_path):
    import rasterio

    from core.inference.layer_inputs import LayerInputs, RasterBand, assemble_stack
    from core.data.stack import AuxBand

    grid = grid_4x4()
    path = tmp_path / "gravity.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32", crs=ALBERS,
                       transform=grid.transform) as ds:
        ds.write(np.full((1, 4, 4), 30.0, np.float32))
    lon, lat = np.array([-96.0]), np.array([23.0])                     # far outside the grid: no presence
    inputs = LayerInputs(["Au"], {"Au": PointRecords(lon, lat, ["Au"])},
                         [AuxBand("gravity", 10.0, 5.0), AuxBand("magnetics", 0.0, 1.0)],
                         {"gravity": RasterBand(str(path)), "magnetics": None})
    assert inputs.blank_aux == ["magnetics"]
    with pytest.raises(InputError, match="magnetics.*aux dropout"):
        assemble_stack(inputs, grid)
    inputs.blank_aux_allowed = True
    stack = assemble_stack(inputs, grid)
    assert np.allclose(stack.aux[0], 4.0) and np.all(stack.aux[1] == 0)  # (30 - 10) / 5; blank = the mean
