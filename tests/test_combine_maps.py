"""combine-maps: per species, the sum of the maps' log-odds, on the same grid only."""
from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from core.cli import main
from core.data.grid import Grid
from core.data.prediction_io import prediction_file, read_band, read_prediction_info
from core.errors import InputError
from core.evaluation.discovery import combined
from core.inference.combine import combine_predictions


def _write(path, species, means, transform=Affine(1000, 0, 0, 0, -1000, 3000), stack="abc"):
    grid = Grid("EPSG:5070", transform, 3, 4)
    mean = np.asarray(means, np.float32)
    with prediction_file(path, grid, species, {"species": species, "stack": stack, "threshold": 0.3}) as w:
        w.write_rows(0, mean, np.zeros_like(mean))
    return path


def test_combined_is_the_sum_of_log_odds(tmp_path):
    a = np.full((1, 3, 4), 0.2, np.float32)
    a[0, 0, 0] = np.nan
    b = np.full((1, 3, 4), 0.5, np.float32)
    b[0, 1, 1] = 0.8
    pa = _write(tmp_path / "a.tif", ["Au"], a)
    pb = _write(tmp_path / "b.tif", ["Au", "Cu"], np.concatenate([b, b]))
    assert main(["combine-maps", str(pa), str(pb), "--out", str(tmp_path / "c.tif")]) == 0
    out = read_band(tmp_path / "c.tif", "mean_Au")
    assert np.isnan(out[0, 0])                     # a cell a map lacks stays empty
    assert out[0, 1] == pytest.approx(0.2)         # odds × 1 (p = 0.5) leaves it
    odds = (0.2 / 0.8) * (0.8 / 0.2)
    assert out[1, 1] == pytest.approx(odds / (1 + odds))
    _, species, meta = read_prediction_info(tmp_path / "c.tif")
    assert species == ["Au"]                        # only the species every map holds
    assert meta["stack"] == "abc" and "threshold" not in meta
    assert np.isnan(read_band(tmp_path / "c.tif", "std_Au")).all()
    # the discovery test's combination ranks the same way on these cells
    z = combined(a[0].astype(float), b[0].astype(float))
    assert np.argsort(z[1:].ravel()).tolist() == np.argsort(out[1:].ravel()).tolist()


def test_maps_on_other_grids_or_stacks_are_refused(tmp_path):
    pa = _write(tmp_path / "a.tif", ["Au"], np.full((1, 3, 4), 0.2))
    pb = _write(tmp_path / "b.tif", ["Au"], np.full((1, 3, 4), 0.2), transform=Affine(2000, 0, 0, 0, -2000, 3000))
    pc = _write(tmp_path / "c.tif", ["Au"], np.full((1, 3, 4), 0.2), stack="other")
    with pytest.raises(InputError, match="another grid"):
        combine_predictions([pa, pb], tmp_path / "o.tif")
    with pytest.raises(InputError, match="another stack"):
        combine_predictions([pa, pc], tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


def test_output_must_not_be_an_input(tmp_path):
    pa = _write(tmp_path / "a.tif", ["Au"], np.full((1, 3, 4), 0.2))
    pb = _write(tmp_path / "b.tif", ["Au"], np.full((1, 3, 4), 0.4))
    before = pa.read_bytes()
    assert main(["combine-maps", str(pa), str(pb), "--out", str(pa)]) != 0
    assert pa.read_bytes() == before
