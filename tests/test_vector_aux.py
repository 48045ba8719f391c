"""Point, polygon and line layers as aux bands (core.data.vector_aux), on tiny synthetic cases whose
answers are known, and through build_stack and the build-stack command."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

from core.data.build_stack import build_stack
from core.errors import InputError
from core.data.grid import Grid
from core.data.species import SpeciesCatalog
from core.data.stack import Stack
from core.data.vector_aux import (CategoricalPolygonsSpec, LineAttributeSpec, PointSamplesSpec, grid_point_samples,
                             line_attribute_density, one_hot_polygons, parse_spec, parse_specs, read_features)
from core.data.vectors import ogr_modules

ALBERS = CRS.from_epsg(5070)
X0, Y0 = -2_000_000.0, 2_000_000.0  # northern California in EPSG:5070


def km_grid(n: int = 10, res: float = 1000.0, x0: float = X0, y0: float = Y0) -> Grid:
    return Grid.from_bounds(ALBERS, (x0, y0, x0 + n * res, y0 + n * res), res)


def centre(grid: Grid, row: int, col: int) -> tuple[float, float]:
    x, y = grid.cell_centres(np.array([row]), np.array([col]))
    return float(x[0]), float(y[0])


def brute_idw(sx, sy, v, qx, qy, k=8, power=2.0) -> float:
    d = np.hypot(sx - qx, sy - qy)
    near = np.argsort(d, kind="stable")[:k]
    if d[near[0]] == 0:
        return float(v[near[0]])
    w = 1.0 / d[near] ** power
    return float((w * v[near]).sum() / w.sum())


def write_layer(path: Path, kind: str, geoms: list[dict], fields: dict[str, list], crs: CRS = ALBERS,
                layer: str = "features", driver: str = "GPKG") -> Path:
    """A vector file with GeoJSON geometries and fields (float, int or str), written with OGR."""
    _, ogr, osr = ogr_modules()
    ds = (ogr.Open(str(path), 1) if path.exists() else ogr.GetDriverByName(driver).CreateDataSource(str(path)))
    srs = None
    if crs is not None:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs.to_wkt())
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gtype = {"point": ogr.wkbPoint, "polygon": ogr.wkbPolygon, "line": ogr.wkbLineString}[kind]
    lyr = ds.CreateLayer(layer, srs, gtype)
    types = {float: ogr.OFTReal, int: ogr.OFTInteger, str: ogr.OFTString}
    for name, vals in fields.items():
        lyr.CreateField(ogr.FieldDefn(name, types[type(next(v for v in vals if v is not None))]))
    for i, g in enumerate(geoms):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromJson(json.dumps(g)))
        for name, vals in fields.items():
            if vals[i] is not None:
                f.SetField(name, vals[i])
        lyr.CreateFeature(f)
    ds = None
    return path


def square(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


# --- point samples ---------------------------------------------------------------------------


def test_idw_reproduces_each_sample_at_its_cell_and_lies_between_sample_values():
    grid = km_grid(12)
    cells = [(1, 1), (2, 9), (6, 4), (10, 10), (9, 2), (5, 7), (0, 6), (11, 0), (3, 3), (7, 11)]
    sx, sy = map(np.array, zip(*(centre(grid, r, c) for r, c in cells)))
    v = np.array([3.0, 10.0, 7.5, 1.0, 4.0, 8.0, 2.5, 6.0, 9.0, 5.0])
    out = grid_point_samples(sx, sy, {"v": v}, grid, log=False)
    band = out.bands["v"]
    for (r, c), val in zip(cells, v):
        assert band[r, c] == pytest.approx(val)
    assert v.min() <= band.min() and band.max() <= v.max()
    # and every cell is the IDW of its 8 nearest samples (checked against a brute-force one)
    for r, c in [(0, 0), (4, 5), (8, 8), (11, 11)]:
        assert band[r, c] == pytest.approx(brute_idw(sx, sy, v, *centre(grid, r, c)), rel=1e-5)
    assert out.used == {"v": 10}


def test_sample_distance_band_is_the_distance_to_the_nearest_sample_in_km():
    grid = km_grid(8)
    sx, sy = np.array([X0 + 500.0, X0 + 7300.0]), np.array([Y0 + 7500.0, Y0 + 1200.0])
    out = grid_point_samples(sx, sy, {"v": np.array([1.0, 2.0])}, grid, log=False)
    rows, cols = np.mgrid[0:8, 0:8]
    cx, cy = grid.cell_centres(rows, cols)
    expect = np.minimum(np.hypot(cx - sx[0], cy - sy[0]), np.hypot(cx - sx[1], cy - sy[1])) / 1000.0
    np.testing.assert_allclose(out.distance_km, expect, rtol=1e-5)
    assert out.distance_km[0, 0] == pytest.approx(0.0)


def test_log10_transform_drops_values_at_or_below_zero_per_field():
    grid = km_grid(6)
    cells = [(0, 0), (0, 5), (5, 0), (5, 5), (2, 3)]
    sx, sy = map(np.array, zip(*(centre(grid, r, c) for r, c in cells)))
    a = np.array([10.0, 100.0, 1000.0, -1.0, np.nan])      # two unusable samples
    b = np.array([1.0, 10.0, 100.0, 1000.0, 10000.0])     # all usable
    out = grid_point_samples(sx, sy, {"a": a, "b": b}, grid, log=True)
    assert out.used == {"a": 3, "b": 5}
    assert out.bands["a"][0, 0] == pytest.approx(1.0) and out.bands["a"][5, 0] == pytest.approx(3.0)
    assert out.bands["b"][2, 3] == pytest.approx(4.0)
    # the cell of the dropped sample is interpolated from the three usable ones, in log space
    assert out.bands["a"][5, 5] == pytest.approx(brute_idw(sx[:3], sy[:3], np.log10(a[:3]), *centre(grid, 5, 5)))
    # the distance band counts every sample with a usable value (b's fifth sample too)
    assert out.distance_km[2, 3] == pytest.approx(0.0)
    with pytest.raises(InputError, match="No usable sample of c.*≤ 0"):
        grid_point_samples(sx, sy, {"c": np.zeros(5)}, grid, log=True)
    linear = grid_point_samples(sx, sy, {"a": np.array([-2.0, 0.0, 4.0, 1.0, 3.0])}, grid, log=False)
    assert linear.bands["a"][0, 0] == pytest.approx(-2.0) and linear.used == {"a": 5}


def test_samples_outside_a_small_grid_give_what_the_large_grid_gives_there():
    big = km_grid(40)
    rng = np.random.default_rng(3)
    sx, sy = X0 + rng.uniform(0, 40_000, 60), Y0 + rng.uniform(0, 40_000, 60)
    v = rng.uniform(1, 100, 60)
    small = big.window(15, 20, 6, 5)
    inside = (sx > small.bounds[0]) & (sx < small.bounds[2]) & (sy > small.bounds[1]) & (sy < small.bounds[3])
    sx, sy, v = sx[~inside], sy[~inside], v[~inside]          # no sample inside the small grid
    a = grid_point_samples(sx, sy, {"v": v}, big)
    b = grid_point_samples(sx, sy, {"v": v}, small, block_cells=7)   # tiny blocks too
    np.testing.assert_allclose(b.bands["v"], a.bands["v"][15:21, 20:25], rtol=1e-6)
    np.testing.assert_allclose(b.distance_km, a.distance_km[15:21, 20:25], rtol=1e-6)


def test_only_the_chosen_cells_are_computed():
    grid = km_grid(5)
    cells = np.zeros(grid.shape, bool)
    cells[1:3, 2:4] = True
    out = grid_point_samples(np.array([X0]), np.array([Y0]), {"v": np.array([5.0])}, grid, log=False, cells=cells)
    assert np.isfinite(out.bands["v"]).sum() == 4 and (out.bands["v"][cells] == 5.0).all()
    assert np.isnan(out.distance_km[~cells]).all()


# --- categorical polygons ---------------------------------------------------------------------


def test_one_hot_bands_partition_the_polygons():
    grid = km_grid(10)
    geoms = [square(X0, Y0, X0 + 4000, Y0 + 10000), square(X0 + 4000, Y0, X0 + 7000, Y0 + 10000),
             square(X0 + 7000, Y0 + 5000, X0 + 10000, Y0 + 10000)]
    bands = one_hot_polygons(geoms, ALBERS, np.array([300.0, 100.0, 300.0], object), grid, "rock")
    assert [n for n, _, _ in bands] == ["rock_100", "rock_300"]
    total = sum(b for _, _, b in bands)
    covered = np.zeros(grid.shape, bool)
    covered[:, :7] = True
    covered[:5, 7:] = True                               # rows 0-4 are the northern half
    np.testing.assert_array_equal(total, covered.astype(np.float32))     # each covered cell in one band
    assert bands[0][2][:, 4:7].all() and not bands[0][2][:, :4].any()
    assert set(np.unique(total)) <= {0.0, 1.0}


def test_one_hot_with_text_categories_and_a_polygon_without_one(recwarn):
    grid = km_grid(4)
    geoms = [square(X0, Y0, X0 + 2000, Y0 + 4000), square(X0 + 2000, Y0, X0 + 4000, Y0 + 4000)]
    bands = one_hot_polygons(geoms, ALBERS, np.array(["Sand and gravel", ""], object), grid, "aq")
    assert [n for n, _, _ in bands] == ["aq_Sand_and_gravel"] and bands[0][2].sum() == 8
    assert "1 of 2 polygons have no category" in str(recwarn.pop(UserWarning).message)


# --- lines ------------------------------------------------------------------------------------


def test_line_density_integrates_to_attribute_times_length():
    grid = km_grid(100)
    line = {"type": "LineString", "coordinates": [[X0 + 20_300, Y0 + 30_100], [X0 + 61_700, Y0 + 72_900],
                                                  [X0 + 80_000, Y0 + 40_000]]}
    length_km = (math.hypot(41_400, 42_800) + math.hypot(18_300, 32_900)) / 1000.0
    for sigma in (0.0, 5.0):
        dens = line_attribute_density([line], ALBERS, np.array([2.5]), grid, sigma_km=sigma)
        assert dens.sum() * 1.0 == pytest.approx(2.5 * length_km, rel=1e-3)   # cells of 1 km²
    raw = line_attribute_density([line], ALBERS, np.array([2.5]), grid, sigma_km=0)
    assert raw[69, 20] > 0                                  # the cell of the first vertex (20.3, 30.1) km
    assert raw.max() <= 2.5 * (math.sqrt(2) + 0.25)       # at most the cell's diagonal of line in a cell
    # overlapping lines add up
    two = line_attribute_density([line, line], ALBERS, np.array([2.5, 1.5]), grid, sigma_km=5.0)
    np.testing.assert_allclose(two, dens * 4.0 / 2.5, rtol=1e-5, atol=1e-9)


def test_line_density_counts_lines_just_outside_a_small_grid_and_nan_as_zero(recwarn):
    big = km_grid(60)
    lines = [{"type": "LineString", "coordinates": [[X0 + 5_000, Y0 + 30_000], [X0 + 55_000, Y0 + 31_000]]},
             {"type": "MultiLineString", "coordinates": [[[X0 + 30_000, Y0 + 5_000], [X0 + 31_000, Y0 + 55_000]]]},
             {"type": "LineString", "coordinates": [[X0, Y0], [X0 + 60_000, Y0 + 60_000]]}]
    w = np.array([1.0, 3.0, np.nan])
    a = line_attribute_density(lines, ALBERS, w, big, sigma_km=4.0)
    assert "1 of 3 lines have no value" in str(recwarn.pop(UserWarning).message)
    small = big.window(10, 34, 12, 12)                     # neither line crosses it
    b = line_attribute_density(lines, ALBERS, w, small, sigma_km=4.0)
    assert b.max() > 0
    np.testing.assert_allclose(b, a[10:22, 34:46], rtol=1e-5, atol=1e-9)


# --- readers ----------------------------------------------------------------------------------


def test_csv_reader_finds_lon_lat_columns_in_any_case_and_reads_gz(tmp_path):
    text = ("site,LONGITUDE,Latitude,Cu_mgkg,Cu_mgkg_cens,horizon\n"
            "a,-120.5,38.25,21.0,0,C\nb,-119.0,39.0,,,C\nc,-118.0,40.0,0.25,1,A\n")
    plain = tmp_path / "s.csv"
    plain.write_text(text)
    gz = tmp_path / "s.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    for path in (plain, gz):
        f = read_features(path, fields=["Cu_mgkg"], optional_fields=["Cu_mgkg_cens", "missing_cens"])
        assert len(f) == 3 and f.crs.to_epsg() == 4326
        assert f.geometries[0] == {"type": "Point", "coordinates": [-120.5, 38.25]}
        np.testing.assert_array_equal(f.values["Cu_mgkg"], [21.0, np.nan, 0.25])
        assert "missing_cens" not in f.values and list(f.values["Cu_mgkg_cens"][[0, 2]]) == [0, 1]
    c = read_features(gz, fields=["cu_MGKG"], where="horizon = 'C'")       # fields in any case too
    assert len(c) == 2 and "where horizon = 'C'" in c.source
    with pytest.raises(InputError, match="no field 'Zn_mgkg'; its fields are site, LONGITUDE, Latitude, Cu_mgkg"):
        read_features(plain, fields=["Zn_mgkg"])
    with pytest.raises(InputError, match="no features.*check the filter"):
        read_features(plain, fields=["Cu_mgkg"], where="horizon = 'B'")
    nocoords = tmp_path / "n.csv"
    nocoords.write_text("x,y,v\n1,2,3\n")
    with pytest.raises(InputError, match="needs columns lon and lat"):
        read_features(nocoords, fields=["v"])


def test_gpkg_reader_with_layers_filters_and_clear_errors(tmp_path):
    path = tmp_path / "soil.gpkg"
    pts = [{"type": "Point", "coordinates": [X0 + 100.0 * i, Y0]} for i in range(4)]
    write_layer(path, "point", pts, {"Cu_mgkg": [1.0, 2.0, None, 4.0], "horizon": ["A", "C", "C", "C"],
                                     "site": [1, 2, 3, 4]}, layer="samples")
    write_layer(path, "polygon", [square(X0, Y0, X0 + 10, Y0 + 10)], {"kind": ["x"]}, layer="other")
    f = read_features(path, "samples", ["Cu_mgkg", "horizon", "site"], "horizon = 'C'")
    assert len(f) == 3 and f.crs.to_epsg() == 5070
    np.testing.assert_array_equal(f.values["Cu_mgkg"], [2.0, np.nan, 4.0])
    assert list(f.values["horizon"]) == ["C", "C", "C"] and list(f.values["site"]) == [2.0, 3.0, 4.0]
    with pytest.raises(InputError, match="has 2 layers \\(samples, other\\); say which one"):
        read_features(path, fields=["Cu_mgkg"])
    with pytest.raises(InputError, match="no layer 'rocks'; its layers are samples, other"):
        read_features(path, "rocks")
    with pytest.raises(InputError, match="fields are Cu_mgkg, horizon, site"):
        read_features(path, "samples", ["Zn_mgkg"])
    with pytest.raises(InputError, match="filter .* is not valid"):
        read_features(path, "samples", ["Cu_mgkg"], "nonsense ==== 3")
    with pytest.raises(InputError, match="does not exist"):
        read_features(tmp_path / "absent.gpkg")
    noprj = write_layer(tmp_path / "noprj.shp", "point", pts[:1], {"v": [1.0]}, crs=None, layer="noprj",
                        driver="ESRI Shapefile")
    with pytest.raises(InputError, match="no coordinate reference system"):
        read_features(noprj, fields=["v"])


# --- specs ------------------------------------------------------------------------------------


def test_spec_strings_parse_and_survive_paths_with_colons():
    p = parse_spec("C:\\data\\soil.gpkg::layer=samples::where=horizon = 'C'::fields=Cu_mgkg, Zn_mgkg::log=no"
                   "::prefix=soil", "points")
    assert p == PointSamplesSpec("C:\\data\\soil.gpkg", ("Cu_mgkg", "Zn_mgkg"), "samples", "horizon = 'C'",
                                 False, "soil")
    assert p.band_names() == ["soil_Cu", "soil_Zn", "soil_sample_distance_km"]
    c = parse_spec("/vsicurl/https://x.org/a.gpkg::field=ROCK_TYPE", "categories")
    assert c == CategoricalPolygonsSpec("/vsicurl/https://x.org/a.gpkg", "ROCK_TYPE") and c.band_prefix == "rock_type"
    line = parse_spec("f.gpkg::layer=L::field=slip_pref_mm_yr::sigma_km=2.5", "line-attribute")
    assert line == LineAttributeSpec("f.gpkg", "slip_pref_mm_yr", "L", None, 2.5)
    assert line.band_name == "slip_pref_mm_yr_density"
    default = [CategoricalPolygonsSpec("d.gpkg", "T")]
    assert parse_specs(None, "categories", default) == default
    assert parse_specs(["none"], "categories", default) == []
    assert parse_specs(["NONE", "e.gpkg::field=U"], "categories", default) == [CategoricalPolygonsSpec("e.gpkg", "U")]


@pytest.mark.parametrize("text, kind, message", [
    ("soil.gpkg", "points", "name the numeric fields"),
    ("soil.gpkg::fields=", "points", "name the numeric fields"),
    ("soil.gpkg::fields=A::log=maybe", "points", "log must be yes or no"),
    ("soil.gpkg::fields=A::field=B", "points", "unknown option 'field'; options: layer, where, fields, log, prefix"),
    ("soil.gpkg::fields=A::fields=B", "points", "given twice"),
    ("soil.gpkg::fieldsA", "points", "is not key=value"),
    ("::fields=A", "points", "no file"),
    ("rocks.gpkg::layer=x", "categories", "name the field"),
    ("f.gpkg::field=s::sigma_km=ten", "line-attribute", "sigma_km must be a number"),
    ("f.gpkg::field=s::sigma_km=-1", "line-attribute", "sigma_km must be ≥ 0"),
])
def test_bad_spec_strings_say_what_to_write(text, kind, message):
    with pytest.raises(InputError, match=message):
        parse_spec(text, kind)


def test_field_unit_suffixes_name_bands_and_units(tmp_path):
    grid = km_grid(6)
    csv = tmp_path / "g.csv"
    lon, lat = transform_points(ALBERS, "EPSG:4326", [X0 + 1500, X0 + 4500], [Y0 + 1500, Y0 + 4500])
    csv.write_text("lat,lon,Cu_mgkg,Cu_mgkg_cens,Fe_pct,ratio\n"
                   f"{lat[0]},{lon[0]},10,0,2.0,0.5\n{lat[1]},{lon[1]},0.5,1,4.0,0.7\n")
    bands = PointSamplesSpec(csv, ("Cu_mgkg", "Fe_pct", "ratio"), prefix="g").bands(grid)
    assert [(b.name, b.units) for b in bands] == [("g_Cu", "log10 mg/kg"), ("g_Fe", "log10 %"), ("g_ratio", "log10"),
                                                  ("g_sample_distance_km", "km")]
    assert "1 below detection (as half the limit)" in bands[0].source and "IDW of the 8 nearest" in bands[0].source
    assert bands[0].raw[4, 1] == pytest.approx(1.0, abs=1e-4)       # the first sample's cell: log10(10)
    assert bands[3].raw[4, 1] == pytest.approx(0.0, abs=0.01)


# --- build_stack and the command ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory) -> dict[str, Path]:
    """A 20 × 20 km outline, one gold record, 6 soil samples (one outside the outline), two rock
    types, two faults with slip rates, all in small files."""
    d = tmp_path_factory.mktemp("tiny")
    outline = write_layer(d / "outline.gpkg", "polygon", [square(X0, Y0, X0 + 20_000, Y0 + 20_000)], {"id": [1]})
    lon, lat = transform_points(ALBERS, "EPSG:4326", [X0 + 10_500], [Y0 + 10_500])
    records = d / "records.csv"
    records.write_text(f"lon,lat,commodities\n{lon[0]},{lat[0]},Gold\n")
    xy = [(2_500, 2_500), (17_500, 2_500), (2_500, 17_500), (17_500, 17_500), (10_500, 9_500), (30_000, 10_000)]
    soil = write_layer(d / "soil.gpkg", "point", [{"type": "Point", "coordinates": [X0 + x, Y0 + y]} for x, y in xy],
                       {"Cu_mgkg": [10.0, 20.0, 30.0, 40.0, 1000.0, 5.0],
                        "Zn_mgkg": [50.0, 60.0, 0.0, 80.0, 90.0, 70.0],
                        "horizon": ["C"] * 6}, layer="samples")
    rocks = write_layer(d / "rocks.gpkg", "polygon", [square(X0 - 5_000, Y0 - 5_000, X0 + 12_000, Y0 + 25_000),
                                                      square(X0 + 12_000, Y0 - 5_000, X0 + 25_000, Y0 + 25_000)],
                        {"ROCK_TYPE": [600, 100]}, layer="aquifers")
    faults = write_layer(d / "faults.gpkg", "line",
                         [{"type": "LineString", "coordinates": [[X0 + 5_000, Y0 - 5_000], [X0 + 5_000, Y0 + 25_000]]},
                          {"type": "LineString",
                           "coordinates": [[X0 - 5_000, Y0 + 15_000], [X0 + 25_000, Y0 + 15_000]]}],
                         {"slip_mm_yr": [2.0, 0.5]}, layer="faults")
    return {"dir": d, "outline": outline, "records": records, "soil": soil, "rocks": rocks, "faults": faults}


def test_build_stack_with_one_layer_of_each_kind(tiny_inputs, tmp_path):
    t = tiny_inputs
    stack = build_stack(tmp_path / "s.tif", records=t["records"], aux_rasters=[], faults=t["faults"],
                        outline=t["outline"], resolution=1000.0, catalog=SpeciesCatalog().subset(["Au"]),
                        point_samples=[PointSamplesSpec(t["soil"], ("Cu_mgkg", "Zn_mgkg"), "samples", "horizon = 'C'",
                                                        prefix="soil")],
                        categorical_polygons=[CategoricalPolygonsSpec(t["rocks"], "ROCK_TYPE", "aquifers")],
                        line_attributes=[LineAttributeSpec(t["faults"], "slip_mm_yr", "faults", sigma_km=2.0,
                                                           name="slip")])
    assert stack.aux_names == ["fault_distance_km", "soil_Cu", "soil_Zn", "soil_sample_distance_km",
                               "rock_type_100", "rock_type_600", "slip"]
    assert stack.grid.shape == (20, 20) and stack.valid.all() and stack.presence.sum() == 1
    by_name = {b.name: (b, stack.aux[i]) for i, b in enumerate(stack.aux_bands)}
    for band, z in by_name.values():
        assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3, band.name
    cu, z = by_name["soil_Cu"]
    assert cu.units == "log10 mg/kg" and "soil.gpkg layer samples where horizon = 'C'" in cu.source
    assert cu.denormalise(z[10, 10]) == pytest.approx(3.0, abs=1e-4)     # the 1000 mg/kg sample's cell
    rock, z = by_name["rock_type_600"]
    assert np.allclose(rock.denormalise(z)[:, :12], 1.0) and np.allclose(rock.denormalise(z)[:, 12:], 0.0, atol=1e-6)
    slip, z = by_name["slip"]
    assert slip.units == "mm/yr × km/km² (Gaussian-smoothed, σ 2 km)"
    raw = slip.denormalise(z)
    assert raw[5, 5] > raw[5, 15] and raw[10, 5] > raw[10, 15]      # near the 2 mm/yr fault at x = 5 km
    back = Stack.read(tmp_path / "s.tif")
    assert back.aux_names == stack.aux_names and back.aux_bands[4].source == stack.aux_bands[4].source


def test_build_stack_command_takes_spec_strings_and_none(tiny_inputs, tmp_path, capsys):
    from core.cli import main

    t = tiny_inputs
    args = ["build-stack", "--out", str(tmp_path / "c.tif"), "--records", str(t["records"]), "--aux",
            "--faults", "none", "--outline", str(t["outline"]), "--resolution", "2000", "--species", "Au",
            "--points", f"{t['soil']}::layer=samples::where=horizon = 'C'::fields=Cu_mgkg::prefix=s",
            "--categories", "none",
            "--line-attribute", f"{t['faults']}::layer=faults::field=slip_mm_yr::sigma_km=0"]
    assert main(args) == 0
    assert "aux bands: s_Cu, s_sample_distance_km, slip_mm_yr_density" in capsys.readouterr().out
    bad = args[:-1] + [f"{t['faults']}::layer=faults::field=slip"]
    assert main(bad) == 2
    assert "no field 'slip'; its fields are slip_mm_yr" in capsys.readouterr().err
