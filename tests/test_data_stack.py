"""The data stack on the real embedded data: records, grid, presence, aux alignment, file format."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as transform_points

from core.data import defaults
from core.data.build_stack import build_stack, outline_grid
from core.data.grid import MILE_M, Grid
from core.data.rasterize import record_cells
from core.data.records import read_records
from core.data.stack import Stack

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def conus(tmp_path_factory) -> tuple[Stack, Path]:
    path = tmp_path_factory.mktemp("stack") / "conus.tif"
    return build_stack(path), path


def test_default_stack_file_is_conus_albers_one_mile(conus):
    stack, path = conus
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 5070
        assert src.res == pytest.approx((MILE_M, MILE_M))
        desc = list(src.descriptions)
    assert desc[:10] == [f"presence_{s}" for s in ("Au", "Ag", "Zn", "Pb", "Cu", "Ni", "Fe", "U", "W", "Mn")]
    aux = [d for d in desc if d.startswith("aux_")]
    assert len(aux) >= 6 and "aux_fault_distance_km" in aux
    assert desc[-1] == "valid"
    # CONUS is about 2,900 miles wide and 1,800 miles tall; about 3.1 million square miles of land
    assert 2800 < stack.grid.width < 2950 and 1750 < stack.grid.height < 1850
    assert 2.9e6 < stack.valid.sum() < 3.2e6


def test_stack_reads_back_exactly(conus):
    stack, path = conus
    back = Stack.read(path)
    assert back.species == stack.species and back.aux_names == stack.aux_names
    assert back.grid == stack.grid
    np.testing.assert_array_equal(back.presence, stack.presence)
    np.testing.assert_array_equal(back.aux, stack.aux)
    np.testing.assert_array_equal(back.valid, stack.valid)
    assert back.aux_bands[0].mean == stack.aux_bands[0].mean


def test_every_presence_cell_holds_a_record_of_its_species(conus):
    stack, _ = conus
    recs = read_records(defaults.RECORDS)
    rows, cols, inside = record_cells(recs, stack.grid)
    for i, sym in enumerate(stack.species):
        sel = inside & recs.species[:, i]
        from_records = np.zeros(stack.grid.shape, bool)
        from_records[rows[sel], cols[sel]] = True
        np.testing.assert_array_equal(stack.presence[i] > 0, from_records & stack.valid, err_msg=sym)
    assert not (stack.presence.any(axis=0) & ~stack.valid).any()


def test_gold_count_matches_the_data_readme():
    """resources/data/README.md counts 36,006 Au records in the conterminous US."""
    recs = read_records(defaults.RECORDS)
    grid, valid = outline_grid(defaults.OUTLINE, defaults.GRID_CRS, defaults.RESOLUTION_M)
    rows, cols, inside = record_cells(recs, grid)
    inside[inside] = valid[rows[inside], cols[inside]]
    au = int((inside & recs.species[:, recs.symbols.index("Au")]).sum())
    assert abs(au - 36006) / 36006 < 0.02


@pytest.mark.parametrize("lon, lat, place", [(-121.061, 39.219, "Grass Valley"),
                                              (-120.382, 37.951, "Jamestown (Mother Lode)"),
                                              (-120.660, 38.350, "Jackson (Mother Lode)")])
def test_mother_lode_gold_is_present(conus, lon, lat, place):
    stack, _ = conus
    x, y = transform_points("EPSG:4326", stack.grid.crs, [lon], [lat])
    r, c, inside = stack.grid.cell_of(np.array(x), np.array(y))
    assert inside[0], place
    au = stack.presence[stack.species.index("Au")]
    assert au[r[0] - 3:r[0] + 4, c[0] - 3:c[0] + 4].any(), f"no gold within 3 miles of {place}"
    assert stack.valid[r[0], c[0]]


def test_aux_bands_are_normalised_over_valid_cells(conus):
    stack, _ = conus
    for band, arr in zip(stack.aux_bands, stack.aux):
        vals = arr[stack.valid]
        assert np.isfinite(vals).all(), band.name
        assert abs(vals.mean()) < 1e-3 and abs(vals.std() - 1) < 1e-3, band.name
        assert (arr[~stack.valid] == 0).all()
    fault = stack.aux_bands[stack.aux_names.index("fault_distance_km")]
    assert fault.units == "km" and 50 < fault.mean < 800  # mean distance to an active fault, km
    grav = stack.aux_bands[stack.aux_names.index("gravity_disturbance_10arcmin")]
    assert grav.units == "mGal" and -100 < grav.mean < 100


def test_default_vector_bands_soil_rock_type_and_fault_slip(conus):
    """The embedded vector layers: DS-801 C-horizon geochemistry (log10, IDW), its sample distance,
    the principal-aquifer rock types (one-hot) and the NSHM23 fault slip-rate density."""
    stack, _ = conus
    elements = ("Cu", "Zn", "Pb", "Ni", "Co", "Cr", "Fe", "Mn", "U", "Th", "W", "Mo", "As", "Sb", "Bi")
    assert stack.aux_names[6:] == ([f"soilC_{el}" for el in elements] + ["soilC_sample_distance_km"]
                                   + [f"rock_type_{t}" for t in (100, 200, 300, 400, 500, 600, 999)]
                                   + ["fault_slip_density"])
    band = {b.name: (b, stack.aux[i]) for i, b in enumerate(stack.aux_bands)}
    cu, _ = band["soilC_Cu"]
    assert cu.units == "log10 mg/kg" and band["soilC_Fe"][0].units == "log10 %"
    assert 0.8 < cu.mean < 1.5                    # a typical soil has 10-30 mg/kg copper
    assert "4707 samples" in cu.source and "3976 samples" in band["soilC_Bi"][0].source  # Bi: 731 zeros dropped
    dist, _ = band["soilC_sample_distance_km"]
    assert dist.units == "km" and 10 < dist.mean < 30          # samples about 40 km apart
    onehot = sum(band[f"rock_type_{t}"][0].denormalise(band[f"rock_type_{t}"][1])
                 for t in (100, 200, 300, 400, 500, 600, 999))
    assert np.allclose(onehot[stack.valid], np.round(onehot[stack.valid]), atol=1e-4)
    assert (np.round(onehot[stack.valid]) == 1).mean() > 0.99    # the aquifer map covers CONUS, no overlaps
    slip, z = band["fault_slip_density"]
    raw = slip.denormalise(z)
    x, y = transform_points("EPSG:4326", stack.grid.crs, [-118.5, -80.0], [35.0, 35.0])
    r, c, _ = stack.grid.cell_of(np.array(x), np.array(y))
    assert raw[r[0], c[0]] > 0.05 and abs(raw[r[1], c[1]]) < 1e-4   # the San Andreas (Tejon Pass) vs the Carolinas


def test_cli_build_stack_prints_counts(tmp_path):
    out = tmp_path / "coarse.tif"
    res = subprocess.run([sys.executable, "train_cli.py", "build-stack", "--out", str(out),
                          "--resolution", str(20 * MILE_M)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "presence cells per species: Au " in res.stdout
    with rasterio.open(out) as src:
        assert src.res == pytest.approx((20 * MILE_M, 20 * MILE_M))
        assert src.count == 10 + 30 + 1     # 5 rasters, fault distance, 16 soil, 7 rock types, fault slip


def test_grid_snaps_to_resolution_multiples():
    g = Grid.from_bounds("EPSG:5070", (1001.0, 2001.0, 9999.0, 5000.0), 1000.0)
    assert g.bounds == (1000.0, 2000.0, 10000.0, 5000.0) and g.shape == (3, 9)
    rows, cols, inside = g.cell_of(np.array([1000.5, 9999.0, 20000.0]), np.array([4999.0, 2000.5, 3000.0]))
    assert list(rows[:2]) == [0, 2] and list(cols[:2]) == [0, 8] and list(inside) == [True, True, False]


def test_blank_aux_bands_read_as_their_mean_and_unknown_names_are_refused():
    from core.errors import InputError
    from core.data.synthetic import synthetic_stack

    stack = synthetic_stack(32, 32, n_species=2, n_aux=3, seed=1)
    blank = stack.with_blank_aux([stack.aux_names[1]])
    assert np.all(blank.aux[1] == 0) and np.array_equal(blank.aux[[0, 2]], stack.aux[[0, 2]])
    assert stack.aux[1].any()                                           # the original is untouched
    with pytest.raises(InputError, match="No aux band nonsense"):
        stack.with_blank_aux(["nonsense"])
