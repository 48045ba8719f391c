"""The Processing algorithm *Aux-only map*: an extent limits what it maps, its progress runs to
100 %, and a cancel stops it with nothing written."""
from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from core.data.prediction_io import read_band, read_prediction_info
from core.data.synthetic import synthetic_stack
from test_processing import processing  # noqa: F401 (fixture)


@pytest.fixture
def stack_file(tmp_path):
    stack = synthetic_stack(96, 96, n_species=2, n_aux=2, seed=21)
    path = tmp_path / "stack.tif"
    stack.write(path)
    return stack, path


def _extent(grid, row0: int, col0: int, rows: int, cols: int) -> str:
    """Processing's text for the extent of a window (cell edges nudged inwards), in the grid's CRS."""
    left, top = grid.transform * (col0 + 0.1, row0 + 0.1)
    right, bottom = grid.transform * (col0 + cols - 0.1, row0 + rows - 0.1)
    return f"{left},{right},{bottom},{top} [{grid.crs.to_string()}]"


def test_aux_only_map_maps_the_extent_and_reports_progress_to_100(processing, stack_file, tmp_path):
    stack, path = stack_file
    out = tmp_path / "aux_extent.tif"
    feedback, seen = QgsProcessingFeedback(), []
    feedback.progressChanged.connect(seen.append)
    processing.run("m3:auxmap", {"STACK": str(path), "SPECIES": "Au", "EXTENT": _extent(stack.grid, 40, 30, 10, 16),
                                 "OUTPUT": str(out)}, feedback=feedback)
    grid, species, _ = read_prediction_info(out)
    assert grid.shape == (10, 16) and species == ["Au"]
    assert grid.transform.almost_equals(stack.grid.window(40, 30, 10, 16).transform, precision=1e-6)
    got = read_band(out, "mean_Au")
    valid = stack.valid[40:50, 30:46]
    assert np.isfinite(got[valid]).all() and np.isnan(got[~valid]).all()
    assert seen[-1] == 100 and seen == sorted(seen) and len(set(seen)) >= 3  # features, fit, map


def test_an_extent_in_another_crs_is_taken_onto_the_stack(processing, stack_file, tmp_path):
    from rasterio.warp import transform_bounds

    stack, path = stack_file
    left, bottom, right, top = stack.grid.window(40, 30, 10, 16).bounds
    lon0, lat0, lon1, lat1 = transform_bounds(stack.grid.crs, "EPSG:4326", left, bottom, right, top)
    out = tmp_path / "aux_lonlat.tif"
    processing.run("m3:auxmap", {"STACK": str(path), "SPECIES": "Au", "OUTPUT": str(out),
                                 "EXTENT": f"{lon0},{lon1},{lat0},{lat1} [EPSG:4326]"})
    grid = read_prediction_info(out)[0]
    gl, gb, gr, gt = grid.bounds                  # the lon/lat box's cells: at least the window's
    assert gl <= left + 1 and gb <= bottom + 1 and gr >= right - 1 and gt >= top - 1
    assert grid.width < 30 and grid.height < 24   # and not much more


def test_aux_only_map_without_extent_maps_the_whole_stack(processing, stack_file, tmp_path):
    stack, path = stack_file
    out = tmp_path / "aux_all.tif"
    processing.run("m3:auxmap", {"STACK": str(path), "SPECIES": "Au", "OUTPUT": str(out)})
    assert read_prediction_info(out)[0].shape == stack.grid.shape


def test_a_cancel_stops_the_aux_only_map_and_writes_nothing(processing, stack_file, tmp_path):
    stack, path = stack_file
    out = tmp_path / "aux_cancelled.tif"
    feedback, seen = QgsProcessingFeedback(), []

    def on_progress(percent: float) -> None:
        seen.append(percent)
        if percent > 0:
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("m3:auxmap", {"STACK": str(path), "OUTPUT": str(out)}, feedback=feedback)
    assert max(seen) < 100 and not out.exists()
