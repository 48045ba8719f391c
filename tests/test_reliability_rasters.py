"""Aux layers are read as their values are, or refused: signed bytes stay signed, fill values
(declared or obvious) are no data, statistics are computed in float64, and a layer that says
nothing over the region (one value everywhere) is refused whatever its kind.

Every file is small and made here (a 20 x 20 km square in EPSG:5070).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from core.cli import main as cli_main
from core.data.aux_layers import normalised_band, resample_to_grid
from core.errors import InputError
from tests.test_input_checks import X0, Y0, inside_points, small_grid, write_outline

TRANSFORM = from_origin(X0 - 5_000, Y0 + 25_000, 1000.0, 1000.0)  # 30 x 30 cells of 1 km around the square


def write_typed_raster(path: Path, data: np.ndarray, dtype: str, nodata=None, **creation) -> Path:
    h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype, crs="EPSG:5070",
                       transform=TRANSFORM, nodata=nodata, **creation) as dst:
        dst.write(data, 1)
    return path


def stack_statistics(tmp_path: Path, aux: Path, *extra: str) -> dict:
    """Build a stack from ``aux`` (one record) and return its aux band's card entry."""
    (x, y), = inside_points(1)
    records = tmp_path / "r.csv"
    records.write_text(f"lon,lat,commodities\n{x},{y},Gold\n")
    out = tmp_path / "s.tif"
    rc = cli_main(["build-stack", "--out", str(out), "--records", str(records), "--aux", str(aux),
                   "--outline", str(write_outline(tmp_path / "outline.geojson")), "--faults", "none",
                   "--points", "none", "--categories", "none", "--line-attribute", "none",
                   "--resolution", "2000", "--species", "Au", *extra])
    assert rc == 0
    with rasterio.open(out) as src:
        return json.loads(src.tags()["M3_STACK"])["aux_bands"][0]


# -- data types ------------------------------------------------------------------------------------------
def signed_values() -> np.ndarray:
    """−128 … −5 in rows, so that the true mean is negative (about −66)."""
    return np.linspace(-128, -5, 30 * 30).round().astype(np.int8).reshape(30, 30)


def test_signed_bytes_are_read_signed(tmp_path):
    grid, valid = small_grid()
    path = write_typed_raster(tmp_path / "signed.tif", signed_values(), "int8")
    with rasterio.open(path) as src:  # GDAL 3.6 stores it as Byte with PIXELTYPE=SIGNEDBYTE
        assert src.dtypes[0] == "int8"
    raw, _ = resample_to_grid(path, grid, valid)
    assert np.nanmax(raw[valid]) < 0 and np.nanmin(raw[valid]) >= -128
    rows = slice(5, 25)  # the raster's rows over the square
    assert np.nanmean(raw[valid]) == pytest.approx(float(signed_values()[rows].astype(float).mean()), abs=3)


def test_signed_byte_stack_statistics_are_the_true_ones(tmp_path):
    band = stack_statistics(tmp_path, write_typed_raster(tmp_path / "signed.tif", signed_values(), "int8"))
    assert -80 < band["mean"] < -50 and band["std"] > 5


def test_declared_signed_byte_nodata_is_no_data(tmp_path):
    grid, valid = small_grid()
    data = signed_values()
    data[:, :15] = -128  # the western half: declared nodata
    raw, _ = resample_to_grid(write_typed_raster(tmp_path / "signed.tif", data, "int8", nodata=-128), grid, valid)
    assert np.isnan(raw[valid]).any() and np.nanmin(raw) > -128


# -- fill values -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", [-3.4028235e38, 3.4028235e38, 9.96921e36, -1e32])
def test_undeclared_fill_values_are_no_data_with_a_warning(tmp_path, fill):
    grid, valid = small_grid()
    data = np.arange(30 * 30, dtype=np.float32).reshape(30, 30)
    data[:, :12] = fill  # not declared as nodata
    path = write_typed_raster(tmp_path / "filled.tif", data, "float32")
    with pytest.warns(UserWarning, match=r"filled.tif: \d+ cell\(s\) hold .*not declared as the raster's nodata"):
        raw, _ = resample_to_grid(path, grid, valid)
    assert np.nanmax(np.abs(raw)) < 1000
    z, band = normalised_band(raw, valid, "filled", "", "filled.tif")
    assert np.isfinite(band.mean) and np.isfinite(band.std) and band.std > 1
    assert np.isfinite(z).all() and z[valid].std() > 0.5


def test_a_raster_of_only_fill_values_is_refused(tmp_path):
    grid, valid = small_grid()
    path = write_typed_raster(tmp_path / "empty.tif", np.full((30, 30), -3.4028235e38, np.float32), "float32")
    with pytest.raises(InputError, match="holds no data.*not declared"):
        resample_to_grid(path, grid, valid)


def test_minus_9999_is_data_unless_declared(tmp_path):
    grid, valid = small_grid()
    data = np.arange(30 * 30, dtype=np.float32).reshape(30, 30)
    data[:, :12] = -9999
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fill-value warning
        raw, _ = resample_to_grid(write_typed_raster(tmp_path / "a.tif", data, "float32"), grid, valid)
    assert np.nanmin(raw) == -9999
    raw, _ = resample_to_grid(write_typed_raster(tmp_path / "b.tif", data, "float32", nodata=-9999), grid, valid)
    assert np.nanmin(raw) > -9999


def test_large_values_keep_their_spread(tmp_path):
    """Values near 1e20 are data: float32 sums of squares overflow (std inf, every z-score 0)."""
    grid, valid = small_grid()
    data = (np.arange(30 * 30, dtype=np.float64).reshape(30, 30) + 1) * 1e19
    raw, _ = resample_to_grid(write_typed_raster(tmp_path / "big.tif", data.astype(np.float32), "float32"),
                              grid, valid)
    z, band = normalised_band(raw, valid, "big", "", "big.tif")
    assert np.isfinite(band.std) and band.std > 1e19
    assert z[valid].std() == pytest.approx(1.0, rel=1e-3)


def test_band_scale_and_offset_are_applied(tmp_path):
    grid, valid = small_grid()
    data = np.arange(30 * 30, dtype=np.int16).reshape(30, 30)
    path = write_typed_raster(tmp_path / "packed.tif", data, "int16")
    with rasterio.open(path, "r+") as dst:
        dst.scales, dst.offsets = (0.5,), (100.0,)
    raw, _ = resample_to_grid(path, grid, valid)
    assert np.nanmin(raw[valid]) >= 100 and np.nanmax(raw[valid]) <= 100 + 0.5 * 900


# -- a layer that says nothing ------------------------------------------------------------------------------
def _vector_layer(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::5070"}},
                                "features": features}))
    return path


def _square(x0: float, y0: float, side: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side],
                                                [x0, y0 + side], [x0, y0]]]}


def build_with(tmp_path: Path, *layer: str) -> int:
    (x, y), = inside_points(1)
    records = tmp_path / "r.csv"
    records.write_text(f"lon,lat,commodities\n{x},{y},Gold\n")
    aux = write_typed_raster(tmp_path / "aux.tif", np.arange(900, dtype=np.float32).reshape(30, 30), "float32")
    return cli_main(["build-stack", "--out", str(tmp_path / "s.tif"), "--records", str(records), "--aux", str(aux),
                     "--outline", str(write_outline(tmp_path / "outline.geojson")), "--faults", "none",
                     "--points", "none", "--categories", "none", "--line-attribute", "none",
                     "--resolution", "2000", "--species", "Au", *layer])


def test_a_polygon_layer_whose_one_class_covers_the_region_is_refused(tmp_path, capsys):
    layer = _vector_layer(tmp_path / "geology.geojson", [
        {"type": "Feature", "properties": {"ROCK": "granite"}, "geometry": _square(X0 - 10_000, Y0 - 10_000, 50_000)},
        {"type": "Feature", "properties": {"ROCK": "basalt"}, "geometry": _square(X0 + 100_000, Y0, 10_000)}])
    assert build_with(tmp_path, "--categories", f"{layer}::field=ROCK") == 2
    err = capsys.readouterr().err
    assert "--categories" in err and "rock_granite" in err and "covers every valid cell" in err
    assert not (tmp_path / "s.tif").exists()


def test_a_polygon_layer_with_two_classes_in_the_region_is_kept(tmp_path):
    layer = _vector_layer(tmp_path / "geology.geojson", [
        {"type": "Feature", "properties": {"ROCK": "granite"}, "geometry": _square(X0 - 10_000, Y0 - 10_000, 20_000)},
        {"type": "Feature", "properties": {"ROCK": "basalt"}, "geometry": _square(X0 + 10_000, Y0 - 10_000, 40_000)}])
    assert build_with(tmp_path, "--categories", f"{layer}::field=ROCK") == 0


def test_a_constant_point_field_is_refused(tmp_path, capsys):
    samples = tmp_path / "soil.csv"
    pts = inside_points(6)
    samples.write_text("lon,lat,Cu_mgkg,Zn_mgkg\n" + "".join(f"{x},{y},12,{10 + 7 * i}\n"
                                                            for i, (x, y) in enumerate(pts)))
    assert build_with(tmp_path, "--points", f"{samples}::fields=Cu_mgkg,Zn_mgkg::prefix=soil") == 2
    err = capsys.readouterr().err
    assert "--points" in err and "soil_Cu" in err and "carries no information" in err
    assert build_with(tmp_path, "--points", f"{samples}::fields=Zn_mgkg::prefix=soil") == 0


def test_a_raster_larger_than_the_budget_is_read_around_the_grid(tmp_path, monkeypatch):
    """A raster much larger and finer than the grid is read only around it, by strips, averaged
    over blocks: a linear field comes out as when read whole."""
    import core.data.raster_values as rv

    grid, valid = small_grid()
    n = 600  # 100 m cells over 60 km, the 20 km square in the middle
    yy, xx = np.mgrid[0:n, 0:n]
    data = (3.0 * xx - 2.0 * yy).astype(np.float32)
    path = tmp_path / "fine.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs="EPSG:5070",
                       transform=from_origin(X0 - 20_000, Y0 + 40_000, 100.0, 100.0)) as dst:
        dst.write(data, 1)
    whole, _ = resample_to_grid(path, grid, valid)
    monkeypatch.setattr(rv, "MIN_SOURCE_CELLS", 1000)  # 10 x 10 blocks of 100 m: 2 km cells hold whole blocks
    monkeypatch.setattr(rv, "STRIP_CELLS", 5_000)
    with rasterio.open(path) as src:
        reading = rv.band_on_grid(src, 1, grid)
    assert reading.block == 10
    assert np.allclose(reading.values[valid], whole[valid], atol=1e-2)


def test_a_raster_with_the_grids_cells_is_copied_by_its_window_as_resampling_would(tmp_path, monkeypatch):
    """A region of a stack's own grid (the dock's case) is read as the grid's window only, copied: the
    values and NaNs the warper gives for every resampling, also where the grid reaches past the raster,
    with the declared nodata and the band's scale honoured; a pixel-interleaved band is not read whole."""
    import core.data.raster_values as rv
    from core.data.grid import Grid

    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 40, 50)).astype(np.float32)
    data[1, 5:9, 7:12] = -1.0  # declared nodata
    path = tmp_path / "stack.tif"
    t = from_origin(X0, Y0, 1000.0, 1000.0)
    with rasterio.open(path, "w", driver="GTiff", width=50, height=40, count=3, dtype="float32", crs="EPSG:5070",
                       transform=t, nodata=-1.0, interleave="pixel", tiled=True, blockxsize=16, blockysize=16) as dst:
        dst.write(data)
        dst.scales, dst.offsets = (1.0, 2.0, 1.0), (0.0, 0.5, 0.0)
    for c0, r0, w, h in [(5, 3, 20, 12), (-4, -6, 16, 16), (44, 30, 12, 14), (60, 0, 5, 5)]:
        grid = Grid(rasterio.crs.CRS.from_epsg(5070), rasterio.Affine(1000.0, 0, X0 + 1000.0 * c0, 0, -1000.0,
                                                                      Y0 - 1000.0 * r0), h, w)
        with rasterio.open(path) as src:
            assert rv.aligned_window(src, grid) is not None
            for band in (1, 2, 3):
                for resampling in (rv.Resampling.bilinear, rv.Resampling.max, rv.Resampling.nearest):
                    copied = rv.band_on_grid(src, band, grid, resampling).values
                    with monkeypatch.context() as m:
                        m.setattr(rv, "aligned_window", lambda *_: None)
                        warped = rv.band_on_grid(src, band, grid, resampling).values
                    assert np.array_equal(np.isnan(copied), np.isnan(warped))
                    assert np.array_equal(copied[~np.isnan(copied)], warped[~np.isnan(warped)])
    inside = Grid(rasterio.crs.CRS.from_epsg(5070), rasterio.Affine(1000.0, 0, X0 + 7000.0, 0, -1000.0, Y0 - 5000.0), 4, 5)
    reads, read_band = [], rv.read_band
    monkeypatch.setattr(rv, "read_band", lambda src, band, window=None, block=1:
                        reads.append(window) or read_band(src, band, window, block))
    with rasterio.open(path) as src:
        assert np.isnan(rv.band_on_grid(src, 2, inside).values).all()  # the nodata block, as no data
    assert [(w.col_off, w.row_off, w.width, w.height) for w in reads] == [(7, 5, 5, 4)]
    shifted = Grid(rasterio.crs.CRS.from_epsg(5070), rasterio.Affine(1000.0, 0, X0 + 500.0, 0, -1000.0, Y0), 4, 5)
    with rasterio.open(path) as src:
        assert rv.aligned_window(src, shifted) is None  # half a cell off: resampled
