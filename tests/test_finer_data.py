"""docs/finer_data.md: the build-stack options it gives for finer public layers — a lithology
polygon layer, a magnetic anomaly raster, a stream-sediment point CSV — run on small files of the
same formats, and each makes the bands the page says."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as transform_points

from core.cli import main
from core.data.stack import Stack
from test_vector_aux import ALBERS, X0, Y0, square, write_layer

DOC = Path(__file__).resolve().parents[1] / "docs" / "finer_data.md"
CATEGORIES = "sgmc_lithology.gpkg::layer=lithology::field=LITH::prefix=lith"
POINTS = "nure_sediment.csv::fields=U_ppm,Th_ppm::prefix=nure"
RASTER = "magnetic_anomaly.tif"
SIDE = 20_000.0          # the outline: 20 × 20 km, 2-km cells
CELL = 2_000.0


def lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = transform_points(ALBERS, "EPSG:4326", [x], [y])
    return lon[0], lat[0]


def write_inputs(d: Path) -> dict[str, object]:
    write_layer(d / "outline.gpkg", "polygon", [square(X0, Y0, X0 + SIDE, Y0 + SIDE)], {"id": [1]})
    lon, lat = lonlat(X0 + 10_500, Y0 + 10_500)
    (d / "records.csv").write_text(f"lon,lat,commodities\n{lon},{lat},Gold\n")
    # lithology: granite on the western half, shale on the eastern half
    write_layer(d / "sgmc_lithology.gpkg", "polygon",
                [square(X0 - 5_000, Y0 - 5_000, X0 + SIDE / 2, Y0 + SIDE + 5_000),
                 square(X0 + SIDE / 2, Y0 - 5_000, X0 + SIDE + 5_000, Y0 + SIDE + 5_000)],
                {"LITH": ["granite", "shale"]}, layer="lithology")
    # magnetic anomaly: float32 in lon/lat, rising from west to east
    lon0, lat0 = lonlat(X0 - 10_000, Y0 + SIDE + 10_000)
    lon1, lat1 = lonlat(X0 + SIDE + 10_000, Y0 - 10_000)
    w0, n0 = min(lon0, lon1) - 0.1, max(lat0, lat1) + 0.1
    step, shape = 0.01, (80, 80)
    grid = np.tile(np.arange(shape[1], dtype=np.float32) * 5.0 - 200.0, (shape[0], 1))
    with rasterio.open(d / RASTER, "w", driver="GTiff", height=shape[0], width=shape[1], count=1,
                       dtype="float32", crs="EPSG:4326", transform=from_origin(w0, n0, step, step)) as f:
        f.write(grid, 1)
    # stream sediments at cell centres; one uranium value below detection (negative, as NURE stores it)
    centres = [(1_000, 1_000), (19_000, 1_000), (1_000, 19_000), (19_000, 19_000), (9_000, 9_000)]
    u = [2.0, 4.0, 8.0, 16.0, -0.5]
    th = [10.0, 12.0, 14.0, 16.0, 30.0]
    rows = ["lon,lat,U_ppm,Th_ppm"] + [",".join(map(str, (*lonlat(X0 + x, Y0 + y), a, b)))
                                       for (x, y), a, b in zip(centres, u, th)]
    (d / "nure_sediment.csv").write_text("\n".join(rows) + "\n")
    return {"below_detection_cell": (int((SIDE - 9_000) // CELL), int(9_000 // CELL)), "u": u, "th": th}


def test_the_documented_options_appear_in_the_page():
    text = DOC.read_text()
    for option in (f'--categories "{CATEGORIES}"', f'--points "{POINTS}"', f"--aux {RASTER}"):
        assert option in text, option


def test_finer_layers_become_the_bands_the_page_names(tmp_path, monkeypatch, capsys):
    case = write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)    # the page's specs name files in the working folder
    args = ["build-stack", "--out", "fine_stack.tif", "--records", "records.csv", "--outline", "outline.gpkg",
            "--resolution", str(CELL), "--species", "Au", "--faults", "none", "--line-attribute", "none",
            "--aux", RASTER, "--categories", CATEGORIES, "--points", POINTS]
    assert main(args) == 0, capsys.readouterr().err
    stack = Stack.read(tmp_path / "fine_stack.tif")
    assert stack.grid.shape == (10, 10) and stack.valid.all()
    assert sorted(stack.aux_names) == sorted(["magnetic_anomaly", "nure_U", "nure_Th", "nure_sample_distance_km",
                                              "lith_granite", "lith_shale"])
    raw = {b.name: b.denormalise(stack.aux[i]) for i, b in enumerate(stack.aux_bands)}

    # the raster: resampled onto the grid, still rising from west to east
    mag = raw["magnetic_anomaly"]
    assert np.all(np.diff(mag.mean(axis=0)) > 0)

    # the polygons: one 0/1 band per class, 1 on that class's half
    np.testing.assert_allclose(raw["lith_granite"][:, :5], 1, atol=1e-5)
    np.testing.assert_allclose(raw["lith_granite"][:, 5:], 0, atol=1e-5)
    np.testing.assert_allclose(raw["lith_shale"], 1 - raw["lith_granite"], atol=1e-5)

    # the points: log10 by inverse distance; a sample on a cell centre gives that cell its value;
    # the below-detection uranium value is dropped (its cell takes its neighbours' uranium)
    r, c = case["below_detection_cell"]
    assert abs(raw["nure_Th"][r, c] - np.log10(30.0)) < 1e-4
    u_there = raw["nure_U"][r, c]
    assert np.isfinite(u_there) and np.log10(2.0) < u_there < np.log10(16.0)
    by_name = {b.name: b for b in stack.aux_bands}
    assert "ppm" in by_name["nure_U"].units
