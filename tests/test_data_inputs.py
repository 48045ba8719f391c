"""What users bring: MRDS CSVs, rasters in other CRSs and with nodata, and bad inputs."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject, Resampling, transform as transform_points

from core.data import defaults
from core.data.aux_layers import normalised_band, resample_to_grid
from core.data.build_stack import build_stack
from core.errors import InputError
from core.data.grid import MILE_M, Grid
from core.data.rasterize import presence_bands
from core.data.records import read_records
from core.data.species import SpeciesCatalog

MRDS_HEADER = "dep_id,site_name,latitude,longitude,region,country,state,commod1,commod2,commod3,dev_stat,score\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def small_grid() -> Grid:
    """A 40 x 40 mile grid over the Sierra Nevada foothills (Mother Lode), EPSG:5070."""
    x, y = transform_points("EPSG:4326", "EPSG:5070", [-120.9, -120.9, -120.2, -120.2], [37.8, 38.4, 37.8, 38.4])
    return Grid.from_bounds("EPSG:5070", (min(x), min(y), max(x), max(y)), MILE_M)


def test_species_spellings_map_to_symbols():
    cat = SpeciesCatalog()
    assert cat.match("Gold") == {"Au"} and cat.match("gold;SILVER") == {"Au", "Ag"}
    assert cat.match(["Copper, Gold", "", "Lead ore"]) == {"Cu", "Au", "Pb"}
    assert cat.match("Au Ag") == {"Au", "Ag"}
    assert cat.match("Sand and Gravel;stone") == set()
    ext = cat.extended({"Mo": ["Molybdenum", "moly"], "Au": ["oro"]})
    assert ext.match("moly;oro") == {"Mo", "Au"} and ext.symbols[-1] == "Mo"
    with pytest.raises(InputError, match="Known"):
        cat.subset(["Xx"])


def test_mrds_record_lands_in_the_right_cell_and_plants_are_left_out(tmp_path):
    csv = write(tmp_path / "mrds.csv", MRDS_HEADER +
                "10001,Harvard Mine,37.9510,-120.3820,NA,United States,California,Gold,,,Past Producer,A\n"
                "10002,Stamp mill,38.1000,-120.5000,NA,United States,California,Gold,Silver,,Plant,B\n"
                "10003,Copper prospect,38.2000,-120.7000,NA,United States,California,\"Copper, Zinc\",,,Prospect,C\n")
    recs = read_records(csv)
    assert len(recs) == 2 and recs.skipped_processing == 1
    assert recs.names[0] == "Harvard Mine"
    assert recs.counts()["Cu"] == 1 and recs.counts()["Zn"] == 1
    grid = small_grid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # most species have no record here
        pres = presence_bands(recs, grid)
    r, c = np.nonzero(pres[recs.symbols.index("Au")])
    assert len(r) == 1
    # the cell's centre is within half a cell diagonal of the record
    cx, cy = grid.cell_centres(r, c)
    lon, lat = transform_points("EPSG:5070", "EPSG:4326", cx, cy)
    x, y = transform_points("EPSG:4326", "EPSG:5070", [-120.3820], [37.9510])
    assert np.hypot(cx[0] - x[0], cy[0] - y[0]) <= MILE_M * 0.71
    assert abs(lon[0] + 120.382) < 0.02 and abs(lat[0] - 37.951) < 0.02
    assert read_records(csv, include_processing_sites=True).skipped_processing == 0


def test_csv_without_coordinate_columns_names_the_expected_ones(tmp_path):
    csv = write(tmp_path / "bad.csv", "x,y,metal\n1,2,Gold\n")
    with pytest.raises(InputError, match="lon, lat, commodities.*latitude, longitude, commod1"):
        read_records(csv)


def test_out_of_range_coordinates_are_counted_and_skipped(tmp_path):
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n-120.4,37.9,Au\n-220,37.9,Au\n-120,95,Cu\n,,Au\n-120.5,38.0,Gold\n")
    with pytest.warns(UserWarning, match="skipped 3 record"):
        recs = read_records(csv)
    assert len(recs) == 2 and recs.skipped_out_of_range == 3


def test_species_without_records_in_region_warns(tmp_path):
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n-120.4,37.9,Au\n")
    with pytest.warns(UserWarning, match="No record of Ag, Zn.*falls in the region"):
        presence_bands(read_records(csv), small_grid())


def _write_raster(path: Path, data: np.ndarray, crs, transform, nodata=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data.astype(np.float32), 1)
    return path


def test_real_raster_in_another_crs_is_aligned(tmp_path):
    """The real gravity raster, reprojected to Web Mercator, resamples onto the grid like the original."""
    src_path = defaults.AUX_RASTERS[0]
    merc = tmp_path / "gravity_3857.tif"
    with rasterio.open(src_path) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height, *src.bounds)
        out = np.full((h, w), -9999, np.float32)
        reproject(rasterio.band(src, 1), out, dst_transform=tr, dst_crs="EPSG:3857",
                  src_nodata=src.nodata, dst_nodata=-9999, resampling=Resampling.bilinear)
    _write_raster(merc, out, "EPSG:3857", tr, nodata=-9999)
    grid = Grid.from_bounds("EPSG:5070", (-2.0e6, 1.0e6, 0.0, 3.0e6), 20 * MILE_M)  # the western US
    valid = np.ones(grid.shape, bool)
    a, _ = resample_to_grid(src_path, grid, valid)
    b, _ = resample_to_grid(merc, grid, valid)
    ok = np.isfinite(a) & np.isfinite(b)
    assert ok.mean() > 0.95
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.99
    assert np.median(np.abs(a[ok] - b[ok])) < 0.05 * np.std(a[ok])


def test_point_feature_in_utm_lands_in_its_cell(tmp_path):
    """A 3 x 3 km bright block in a UTM raster shows up in the grid cell that contains it."""
    grid = small_grid()
    x0, y0 = transform_points("EPSG:4326", "EPSG:32610", [-120.5], [38.1])
    data = np.zeros((100, 100), np.float32)
    data[49:52, 49:52] = 100.0  # 1 km pixels, centre at (x0, y0)
    path = _write_raster(tmp_path / "utm.tif", data, "EPSG:32610", from_origin(x0[0] - 50_000, y0[0] + 50_000, 1000, 1000))
    out, _ = resample_to_grid(path, grid, np.ones(grid.shape, bool))
    r, c = np.unravel_index(np.nanargmax(out), out.shape)
    gx, gy = transform_points("EPSG:4326", "EPSG:5070", [-120.5], [38.1])
    rows, cols, _ = grid.cell_of(np.array(gx), np.array(gy))
    assert abs(r - rows[0]) <= 1 and abs(c - cols[0]) <= 1


def test_nodata_is_honoured_and_filled_from_neighbours(tmp_path):
    grid = small_grid()
    lon0, lat0 = -121.0, 38.5
    data = np.full((20, 20), 5.0, np.float32)
    data[10:, :] = 6.0      # values vary (a constant raster is refused)
    data[:, 10:] = -9999.0  # the eastern half has no data
    path = _write_raster(tmp_path / "nd.tif", data, "EPSG:4326", from_origin(lon0, lat0, 0.05, 0.05), nodata=-9999)
    valid = np.ones(grid.shape, bool)
    raw, _ = resample_to_grid(path, grid, valid)
    assert np.nanmax(raw) == pytest.approx(6.0) and np.nanmin(raw) == pytest.approx(5.0)
    assert np.isnan(raw).any()  # the nodata half is not averaged in
    z, band = normalised_band(raw, valid, "nd", "", "nd.tif")
    assert 5.0 <= band.mean <= 6.0 and np.isfinite(z).all()


def test_raster_without_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32") as dst:
        dst.write(np.ones((4, 4), np.float32), 1)
    with pytest.raises(InputError, match="has no CRS.*gdal_edit"):
        resample_to_grid(path, small_grid(), np.ones(small_grid().shape, bool))


def test_raster_outside_the_grid_is_refused(tmp_path):
    path = _write_raster(tmp_path / "europe.tif", np.ones((10, 10)), "EPSG:4326", from_origin(5.0, 50.0, 0.1, 0.1))
    with pytest.raises(InputError, match="does not overlap"):
        resample_to_grid(path, small_grid(), np.ones(small_grid().shape, bool))


def test_unwritable_output_fails_before_work_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        build_stack(tmp_path / "missing_dir" / "s.tif")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(InputError, match="not writable"):
            build_stack(ro / "s.tif")
    finally:
        ro.chmod(0o700)


def test_failed_build_leaves_no_partial_file(tmp_path):
    out = tmp_path / "s.tif"
    bad = _write_raster(tmp_path / "europe.tif", np.ones((10, 10)), "EPSG:4326", from_origin(5.0, 50.0, 0.1, 0.1))
    with pytest.raises(InputError):
        build_stack(out, aux_rasters=[bad], faults=None, resolution=20 * MILE_M)
    assert list(tmp_path.iterdir()) == [bad]


def test_geographic_grid_crs_is_refused(tmp_path):
    with pytest.raises(InputError, match="projected"):
        build_stack(tmp_path / "s.tif", crs="EPSG:4326", resolution=0.1)


def test_vector_files_without_gdal_bindings_say_how_to_install_them(monkeypatch):
    """A pip-only GPU image may lack GDAL's Python bindings: building the stack must say what to
    install, not end in a bare ImportError."""
    import sys

    from core.errors import SetupError
    from core.data.vectors import read_geometries

    monkeypatch.setitem(sys.modules, "osgeo", None)   # makes `from osgeo import ...` fail
    with pytest.raises(SetupError, match="scripts/setup.sh"):
        read_geometries(defaults.OUTLINE)


def test_source_bits_mark_each_cell_with_the_sources_that_recorded_it():
    import numpy as np
    from core.data.grid import Grid
    from core.data.record_sources import source_bits
    from core.data.records import Records
    from rasterio.transform import from_origin

    grid = Grid("EPSG:4326", from_origin(0, 4, 1, 1), 4, 4)
    recs = Records(lon=np.array([0.5, 0.5, 1.5, 2.5, 3.5]), lat=np.array([3.5, 3.5, 3.5, 0.5, 0.5]),
                   species=np.ones((5, 1), bool), symbols=["Au"], names=[""] * 5, commodities=["Au"] * 5,
                   datasets=["a", "b", "a", "c", "held"])
    recorded = np.ones((4, 4), bool)
    names, bits = source_bits(recs, grid, recorded, exclude=["held"])
    assert names[0] == "a" and set(names) == {"a", "b", "c"}
    ia, ib, ic = (1 << names.index(n) for n in "abc")
    assert bits[0, 0] == ia | ib and bits[0, 1] == ia and bits[3, 2] == ic and bits[3, 3] == 0
    recorded[0, 1] = False
    assert source_bits(recs, grid, recorded)[1][0, 1] == 0
