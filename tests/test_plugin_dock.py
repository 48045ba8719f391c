"""The dock end to end on the example data (pytest-qgis, headless): load the example data, choose
species and a region, run the infill task, check the layers and the comparison table; cancel;
errors in the message bar; settings; the region tools."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from plugin_support import example_session, stack_metadata, tiny_model, wait_until
from qgis.core import (Qgis, QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry, QgsProject,
                       QgsRasterLayer, QgsRectangle, QgsSettings, QgsTask, QgsVectorLayer)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt

from rasterio.crs import CRS

from core.data import defaults
from core.data.grid import Grid
from core.masks.hiding import GeometryRegion
from core.inference.layer_inputs import RasterBand, band_on_grid, m3_stack_band
from core.data.rasterize import record_cells
from core.data.records import read_records
from core.evaluation.run_summary import percent
from m3_plugin.dock import M3Dock
from m3_plugin.example_data import GROUP, RECORDS_LAYER, STACK_LAYER
from m3_plugin.settings import DockSettings

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
# The Mother Lode gold belt in the Sierra Nevada foothills, California (about 70 x 110 km)
MOTHER_LODE = QgsRectangle(-121.2, 37.8, -120.4, 38.8)
OCEAN = QgsRectangle(-135.0, 30.0, -134.0, 31.0)  # Pacific, outside the outline


@pytest.fixture(scope="session")
def example_cache(tmp_path_factory, qgis_app):
    yield from example_session(tmp_path_factory, qgis_app)


@pytest.fixture(scope="session")
def tiny(example_cache, tmp_path_factory):
    """A random-weight model with the example stack's species and aux bands."""
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors", stack_metadata(example_cache["stack"]))


@pytest.fixture
def clean_settings(qgis_app):
    QgsSettings().remove("m3")
    yield
    QgsSettings().remove("m3")


@pytest.fixture
def dock(example_cache, tiny, qgis_iface, qgis_new_project, clean_settings, tmp_path):
    """The dock with the example data loaded and the tiny model chosen; runs write under tmp_path."""
    qgis_iface.messageBar().clear_messages()
    d = M3Dock(qgis_iface)
    d.load_example_data()
    d.set_model_paths([str(tiny)])
    d.output_widget.setFilePath(str(tmp_path / "runs"))
    d.draws_spin.setValue(2)
    d.batch_spin.setValue(4)
    d.device_combo.setCurrentIndex(d.device_combo.findData("cpu"))
    yield d
    d.close_down()
    d.deleteLater()
    QgsProject.instance().clear()


def run_and_wait(dock: M3Dock):
    task = dock.run()
    assert task is not None, dock.status_label.text()
    wait_until(lambda: dock.task is None, timeout=600)
    return task


def messages(iface, level) -> list[str]:
    return iface.messageBar().get_messages(level)


def test_example_data_builds_the_stack_in_the_background_and_adds_every_layer(example_cache):
    assert example_cache["built_in_background"]
    assert example_cache["stack"].exists()
    assert not [m for m, error in example_cache["messages"] if error]
    names = example_cache["layers"]
    assert names[0] == STACK_LAYER
    assert {RECORDS_LAYER, "active faults", "CONUS outline", "gravity_disturbance_10arcmin",
            "magnetic_br_lithosphere_0p25deg", "elevation_5arcmin"} <= set(names)
    assert len(names) == 4 + 5


def test_dock_matches_example_layers_by_name(dock, tiny):
    root = QgsProject.instance().layerTreeRoot()
    assert root.findGroup(GROUP) is not None
    assert list(dock.mineral_rows) == ["Au", "Ag", "Zn", "Pb", "Cu", "Ni", "Fe", "U", "W", "Mn"]
    for sym, row in dock.mineral_rows.items():
        assert row.layer.currentLayer().name() == STACK_LAYER
        assert row.choice.currentText().endswith(f"presence_{sym}")
    rasters = {p.stem for p in defaults.AUX_RASTERS}
    for name, row in dock.aux_rows.items():
        layer = row.layer.currentLayer()
        assert layer is not None, name
        if name not in rasters:  # fault distance, the vector layers' bands: the stack's normalised band
            assert layer.name() == STACK_LAYER and row.band.currentText().endswith(f"aux_{name}")
        else:
            assert layer.name() == name
    assert dock.outline_layer.currentLayer().name() == "CONUS outline"
    assert dock.sites_layer.currentLayer().name() == RECORDS_LAYER
    assert dock.sites_field.currentField() == "commodities"
    assert "tiny.safetensors" in dock.card_label.text() and "Au, Ag" in dock.card_label.text()
    assert dock.ensemble_label.text() == "× 1 model = 2 evaluations"


def test_example_keeps_its_crs_when_qgis_gives_the_new_project_its_first_layers(dock):
    # QGIS 3.44 sets a new project's CRS from its first layer (the WGS84 records) after the example set it
    from m3_plugin.example_data import EXAMPLE_CRS

    project = QgsProject.instance()
    assert dock.example.owns_crs and project.crs().authid() == EXAMPLE_CRS
    project.setCrs(WGS84)
    dock.zoom_to_example()
    assert project.crs().authid() == EXAMPLE_CRS
    dock.example.owns_crs = False  # a project the user had before the example: its CRS stays theirs
    project.setCrs(WGS84)
    dock.zoom_to_example()
    assert project.crs().authid() == "EPSG:4326"
    project.setCrs(QgsCoordinateReferenceSystem(EXAMPLE_CRS))


def test_infill_run_adds_a_group_and_fills_the_comparison_table(dock, qgis_iface, tmp_path):
    dock.mineral_rows["Au"].hide.setChecked(True)
    dock.mineral_rows["Cu"].hide.setChecked(True)
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    before = set(QgsProject.instance().mapLayers())
    task = run_and_wait(dock)
    assert task.outputs is not None, (messages(qgis_iface, Qgis.Critical), task.details)
    assert dock.progress_bar.value() == 100

    group = dock.last_group
    assert group.name().startswith("M3 infill Au, Cu")
    names = [n.name() for n in group.findLayers()]
    # read at once: the known sites of the hidden species on top, the region's outline, the clusters,
    # the probabilities, the uncertainties; the whole records layer is not put in the group
    assert names[0].startswith("known Au, Cu sites (") and RECORDS_LAYER not in names
    assert names[1] == "hidden region" and names[2].startswith("discovered clusters")
    assert names[3:] == ["Au mean probability", "Cu mean probability", "Au uncertainty (std)",
                         "Cu uncertainty (std)"]
    visible = {n.name(): n.isVisible() for n in group.findLayers()}
    assert visible["Au mean probability"] and not visible["Au uncertainty (std)"]
    assert QgsProject.instance().layerTreeRoot().children()[0] is group
    added = set(QgsProject.instance().mapLayers()) - before
    assert len(added) == len(names)
    # the example stack (its presence bands show the hidden truth) is hidden
    stack_node = QgsProject.instance().layerTreeRoot().findLayer(dock.mineral_rows["Au"].layer.currentLayer().id())
    assert not stack_node.isVisible()
    sites_layer = group.findLayers()[0].layer()
    species = {f["species"] for f in sites_layer.getFeatures()}
    assert species and all(set(s.split(", ")) <= {"Au", "Cu"} for s in species)
    del sites_layer, stack_node

    mean_layer = next(n.layer() for n in group.findLayers() if n.name() == "Au mean probability")
    assert isinstance(mean_layer, QgsRasterLayer) and mean_layer.crs().authid() == "EPSG:5070"
    ramp = mean_layer.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert ramp[0].color.alpha() == 0 and ramp[-1].color.alpha() > 0  # transparent at low values
    del mean_layer, ramp

    with rasterio.open(task.outputs.prediction) as src:
        assert list(src.descriptions) == ["mean_Au", "mean_Cu", "std_Au", "std_Cu"]
        grid = Grid(src.crs, src.transform, src.height, src.width)
        mean = {"Au": src.read(1), "Cu": src.read(2)}
    predicted = np.isfinite(mean["Au"])
    assert 0 <= np.nanmin(mean["Au"]) and np.nanmax(mean["Au"]) <= 1
    # predictions on exactly the valid cells of the hidden region
    stack_path = dock.mineral_rows["Au"].layer.currentLayer().source()
    valid = band_on_grid(RasterBand(stack_path, m3_stack_band(stack_path, "valid")), grid) > 0.5
    cells = GeometryRegion([json.loads(QgsGeometry.fromRect(MOTHER_LODE).asJson())], CRS.from_epsg(4326)).mask(grid)
    cells &= valid
    assert cells.sum() > 2000
    np.testing.assert_array_equal(predicted, cells)

    # the table, against core reading the same sites from the CSV
    table = {row[0]: row for row in dock.comparison_cells()}
    assert set(table) == {"Au", "Cu"}
    recs = read_records(defaults.RECORDS)
    rows, cols, inside = record_cells(recs, grid)
    in_region = np.zeros(len(recs), bool)
    in_region[inside] = cells[rows[inside], cols[inside]]
    # by default the run flags the top 1 % of the region's cells (both hidden species pooled), and the
    # threshold it shows is the one it used
    threshold = task.job.threshold
    pooled = np.concatenate([mean["Au"][cells], mean["Cu"][cells]])
    assert 0.01 <= float(np.mean(pooled >= threshold)) < 0.02
    assert task.outputs.threshold == threshold
    assert dock.results.threshold == pytest.approx(threshold, abs=0.0005)
    assert "top 1 % of the region" in dock.results.scale_label.text()
    assert task.outputs.settings["device"].startswith("CPU")
    for sym in ("Au", "Cu"):
        sel = in_region & recs.species[:, recs.symbols.index(sym)]
        hits = int((mean[sym][rows[sel], cols[sel]] >= threshold).sum())
        assert int(table[sym][1]) == int(sel.sum()) > 0, sym
        assert int(table[sym][2]) == hits, sym
        assert table[sym][3] == percent(hits / sel.sum())
        flagged = int(((mean[sym] >= threshold) & cells).sum())
        assert table[sym][4] == f"{flagged * (grid.resolution / 1000) ** 2:,.0f}"
    assert any("M3 infill Au, Cu" in m for m in messages(qgis_iface, Qgis.Success))
    # the run's own layers (a point layer of sites among them) re-point no source row
    assert all(row.layer.currentLayer().name() == STACK_LAYER for row in dock.mineral_rows.values())
    assert dock.sites_layer.currentLayer().name() == RECORDS_LAYER

    # the legend names the species and marks the threshold; the uncertainty's labels are short
    layers = {n.name(): n.layer() for n in group.findLayers()}
    labels = [label for label, _ in layers["Au mean probability"].legendSymbologyItems()]
    assert f"{threshold:.3g}: threshold, Au flagged at or above" in labels, labels
    assert not any("certain" in label for label in labels), labels
    std_labels = [label for label, _ in layers["Au uncertainty (std)"].legendSymbologyItems()]
    assert all(len(label.split(":")[0]) <= 8 for label in std_labels), std_labels
    # what the layer tree shows: our title, not QGIS's "Band 1: mean_Au (Gray)"
    from qgis.core import QgsLayerTreeModel

    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
    shown = [n.data(0) for n in model.layerLegendNodes(group.findLayers()[3])]
    assert shown[0].startswith("Au: ") and "probab" in shown[0] and not any("Band 1" in t for t in shown), shown
    # every hidden species' map is in view
    assert all(n.isVisible() for n in group.findLayers() if n.name().endswith("mean probability"))
    del model

    # the slider re-colours the layers and updates the table without a new run
    runs = len(list((tmp_path / "runs").iterdir()))
    dock.results.threshold_slider.setValue(int(round(threshold * 1000)) + 10)
    moved = dock.results.threshold
    items = layers["Cu mean probability"].renderer().shader().rasterShaderFunction().colorRampItemList()
    assert any(abs(i.value - moved) < 1e-9 and "threshold" in i.label for i in items)
    table = {row[0]: row for row in dock.comparison_cells()}
    for sym in ("Au", "Cu"):
        sel = in_region & recs.species[:, recs.symbols.index(sym)]
        assert int(table[sym][2]) == int((mean[sym][rows[sel], cols[sel]] >= moved).sum()), sym
        assert table[sym][6].endswith("%") and table[sym][7].startswith(("×", "—"))
    assert len(list((tmp_path / "runs").iterdir())) == runs
    assert dock.results.curve.curves and dock.results.curve.marks
    # the dock says what the discovery test says of M3's maps, as predict does
    from core.evaluation.discovery import DISCOVERY_CAVEAT, RIVALS_NOTE

    assert DISCOVERY_CAVEAT in dock.results.caveat.text() and DISCOVERY_CAVEAT in RIVALS_NOTE
    assert not dock.results.caveat.isHidden()

    # the export: GeoTIFF, curve PNG + CSV, table CSV, HTML report, in a folder the user chose
    folder = dock.results.export(tmp_path / "exports")
    names = {p.name for p in folder.iterdir()}
    assert {"prediction.tif", "capture_curve.png", "capture_curve.csv", "table.csv", "report.html",
            "region.gpkg", "known_sites.gpkg"} <= names
    assert "Au_model" in (folder / "capture_curve.csv").read_text().splitlines()[0]
    assert f"{moved:.3f}" in (folder / "report.html").read_text()
    assert (folder / "capture_curve.png").stat().st_size > 1000
    del layers, items


def test_aux_only_map_beside_m3s_is_fitted_around_the_region_and_compared(dock, qgis_iface, tmp_path):
    dock.mineral_rows["Au"].hide.setChecked(True)
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    dock.aux_only_check.setChecked(True)
    task = run_and_wait(dock)
    assert task.outputs is not None, (messages(qgis_iface, Qgis.Critical), task.details)
    names = [n.name() for n in dock.last_group.findLayers()]
    assert "Au aux-only map (no record as input)" in names
    visible = {n.name(): n.isVisible() for n in dock.last_group.findLayers()}
    assert visible["Au mean probability"] and not visible["Au aux-only map (no record as input)"]
    with rasterio.open(task.outputs.prediction) as src:
        m3, m3_transform = src.read(1), src.transform
    with rasterio.open(task.outputs.aux_only) as src:
        assert list(src.descriptions) == ["mean_Au", "std_Au"] and src.transform == m3_transform
        aux = src.read(1)
    # on exactly M3's cells (the hidden region), a ranking that is not flat
    np.testing.assert_array_equal(np.isfinite(aux), np.isfinite(m3))
    assert np.nanstd(aux) > 0
    assert "Known sites in the top 10 % of the region — Au: M3" in task.outputs.summary
    assert "aux-only map" in task.outputs.summary and "blurred records" in task.outputs.summary
    assert DockSettings.load().aux_only_map  # the choice is kept for the next session
    assert "Au" in dock.results.curve.aux_curves  # the curve's dotted line
    folder = dock.results.export(tmp_path / "exports")
    assert (folder / "aux_only.tif").exists()
    assert "Au_aux_only" in (folder / "capture_curve.csv").read_text().splitlines()[0]


def test_cancel_during_the_aux_only_fit_stops_it(dock, monkeypatch):
    """The aux-only map's gradient boosting looks at the cancel button while it fits."""
    import threading
    import time

    import m3_plugin.core.inference.aux_boosting as boosting

    real, entered, seen = boosting.fit_cancellable, threading.Event(), []

    def fit_waiting_for_cancel(clf, x, y, w, progress, poll=boosting.POLL_SECONDS):
        entered.set()
        deadline = time.monotonic() + 120
        while not progress.cancelled() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(progress.cancelled())
        return real(clf, x, y, w, progress, poll)  # raises Cancelled at its first look

    monkeypatch.setattr(boosting, "fit_cancellable", fit_waiting_for_cancel)
    dock.mineral_rows["Au"].hide.setChecked(True)
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    dock.aux_only_check.setChecked(True)
    task = dock.run()
    assert task is not None
    wait_until(entered.is_set, timeout=600)
    dock.cancel()
    wait_until(lambda: dock.task is None, timeout=300)
    assert seen == [True] and task.was_cancelled and task.outputs is None
    assert not task.job.folder.exists()
    assert dock.status_label.text().startswith("Cancelled")

def test_cancel_adds_nothing_and_deletes_the_run_folder(dock, qgis_iface):
    dock.mineral_rows["Au"].hide.setChecked(True)
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    dock.draws_spin.setValue(200)  # long enough to be cancelled while it runs
    dock.batch_spin.setValue(1)
    layers = set(QgsProject.instance().mapLayers())
    tree = [n.name() for n in QgsProject.instance().layerTreeRoot().children()]
    task = dock.run()
    assert task is not None
    wait_until(lambda: task.progress() > 5 or dock.task is None, timeout=300)
    dock.cancel()
    wait_until(lambda: dock.task is None, timeout=300)
    assert task.outputs is None and task.was_cancelled
    assert set(QgsProject.instance().mapLayers()) == layers
    assert [n.name() for n in QgsProject.instance().layerTreeRoot().children()] == tree
    assert not task.job.folder.exists()
    # a clean "Cancelled", not QGIS's red "Task failed"
    assert any(m.startswith("M3:Cancelled") for m in messages(qgis_iface, Qgis.Info)), (
        messages(qgis_iface, Qgis.Info), messages(qgis_iface, Qgis.Critical), dock.status_label.text())
    assert dock.status_label.text().startswith("Cancelled") and task.status() == QgsTask.Complete
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


def _no_new_layers(before: set) -> bool:
    return set(QgsProject.instance().mapLayers()) == before


def test_errors_reach_the_message_bar_and_leave_nothing(dock, qgis_iface, tmp_path, monkeypatch):
    before = set(QgsProject.instance().mapLayers())
    # no region yet
    assert dock.run() is None
    assert "draw a rectangle or polygon" in messages(qgis_iface, Qgis.Critical)[-1]
    # a region with no valid cell (the Pacific): the task fails, nothing is added, no folder is left
    dock.set_region(QgsGeometry.fromRect(OCEAN), WGS84)
    task = run_and_wait(dock)
    assert task.outputs is None and not task.was_cancelled
    assert "No cell of the region is valid" in messages(qgis_iface, Qgis.Critical)[-1], task.details
    assert not task.job.folder.exists() and _no_new_layers(before)
    # a missing aux layer
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    dock.aux_rows["elevation_5arcmin"].set_source(None)
    assert dock.run() is None
    assert "elevation_5arcmin" in messages(qgis_iface, Qgis.Critical)[-1]
    assert "Pick a raster layer" in messages(qgis_iface, Qgis.Critical)[-1]
    # torch missing in QGIS's Python
    monkeypatch.setattr("m3_plugin.dock.missing_packages", lambda: ["torch"])
    assert dock.run() is None
    assert "Click Install" in messages(qgis_iface, Qgis.Critical)[-1]
    assert _no_new_layers(before)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_model_in_a_geographic_crs_is_refused(dock, qgis_iface, tiny, tmp_path):
    import shutil

    odd = tmp_path / "lonlat.safetensors"
    shutil.copy(tiny, odd)
    card = json.loads(tiny.with_suffix(".json").read_text())
    card["grid"] = {"crs": "EPSG:4326", "resolution": 0.01}
    odd.with_suffix(".json").write_text(json.dumps(card))
    dock.set_model_paths([str(odd)])
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    assert dock.run() is None
    assert "not projected" in messages(qgis_iface, Qgis.Critical)[-1]


def test_a_model_trained_with_aux_dropout_may_leave_an_aux_band_blank(dock, qgis_iface, tiny, tmp_path):
    import shutil

    tolerant = tmp_path / "tolerant.safetensors"
    shutil.copy(tiny, tolerant)
    card = json.loads(tiny.with_suffix(".json").read_text())
    card["training"] = {"aux_dropout": 0.25}
    tolerant.with_suffix(".json").write_text(json.dumps(card))
    dock.set_model_paths([str(tolerant)])
    assert "left empty" in dock.aux_note.text()
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    dock.aux_rows["elevation_5arcmin"].set_source(None)
    job = dock.build_job()
    assert job.inputs.blank_aux == ["elevation_5arcmin"] and job.inputs.blank_aux_allowed
    dock.set_model_paths([str(tiny)])                                 # trained with every band: refused
    assert "left empty" not in dock.aux_note.text()
    dock.aux_rows["elevation_5arcmin"].set_source(None)
    assert dock.run() is None and "elevation_5arcmin" in messages(qgis_iface, Qgis.Critical)[-1]


def test_point_layer_sources_rasterise_like_the_stack(dock):
    """Presence from the records point layer equals the stack's presence band on the run's grid."""
    # the plugin's objects come from its own copy of core (m3_plugin.core)
    from m3_plugin.core.inference.layer_inputs import assemble_stack, window_in
    from m3_plugin.core.data.stack import Stack

    records = next(l for l in QgsProject.instance().mapLayers().values() if l.name() == RECORDS_LAYER)
    for row in dock.mineral_rows.values():
        row.set_source(records, "commodities")
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    job = dock.build_job()
    stack = assemble_stack(job.inputs, job.grid)
    full = Stack.read(dock.aux_rows["fault_distance_km"].layer.currentLayer().source())
    window = full.window(*window_in(full.grid, job.grid))
    assert stack.presence.sum() > 100
    np.testing.assert_array_equal(stack.presence, window.presence)
    np.testing.assert_array_equal(stack.valid, window.valid)
    # raw aux rasters resampled and normalised with the card's statistics match the stack's bands, up to
    # GDAL's approximate warp transformer, which differs between the CONUS grid and this window
    np.testing.assert_allclose(stack.aux, window.aux, atol=0.05)
    assert np.abs(stack.aux - window.aux).mean() < 0.01


def test_settings_persist_between_sessions(dock, tiny):
    dock.draws_spin.setValue(7)
    dock.threshold_spin.setValue(0.3)
    dock.flag_share_spin.setValue(2.5)
    dock.mineral_rows["Zn"].hide.setChecked(True)
    dock.region_mode.setCurrentIndex(dock.region_mode.findData("extent"))
    dock.save_settings()
    loaded = DockSettings.load()
    assert loaded.draws == 7 and loaded.threshold == pytest.approx(0.3) and loaded.flag_percent == pytest.approx(2.5)
    assert loaded.hidden_species == ["Zn"] and loaded.region_mode == "extent" and loaded.device == "cpu"
    assert loaded.model_paths == [str(tiny)]
    again = M3Dock(dock.iface)
    try:
        assert again.draws_spin.value() == 7 and again.mineral_rows["Zn"].hide.isChecked()
        assert again.region_mode.currentData() == "extent" and again.threshold_spin.value() == pytest.approx(0.3)
    finally:
        again.close_down()
        again.deleteLater()


def test_region_from_selected_polygons_and_from_the_map_extent(dock, qgis_iface):
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "areas", "memory")
    feats = []
    for rect in (MOTHER_LODE, OCEAN):
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromRect(rect))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    QgsProject.instance().addMapLayer(layer)
    dock.region_mode.setCurrentIndex(dock.region_mode.findData("selection"))
    dock.region_layer.setLayer(layer)
    from m3_plugin.core.errors import InputError

    with pytest.raises(InputError, match="selected"):
        dock.region_shapes()
    layer.selectByIds([next(layer.getFeatures()).id()])
    shapes = dock.region_shapes()
    assert len(shapes.geometries) == 1 and shapes.crs == "EPSG:4326"
    lons = [p[0] for p in shapes.geometries[0]["coordinates"][0]]
    assert min(lons) == pytest.approx(-121.2) and max(lons) == pytest.approx(-120.4)

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(WGS84)
    canvas.setExtent(MOTHER_LODE)
    dock.region_mode.setCurrentIndex(dock.region_mode.findData("extent"))
    shapes = dock.region_shapes()
    xs = [p[0] for p in shapes.geometries[0]["coordinates"][0]]
    assert min(xs) <= -121.2 and max(xs) >= -120.4 and shapes.crs == "EPSG:4326"


def _click(canvas, tool, kind, x, y, button=Qt.LeftButton):
    event = QgsMapMouseEvent(canvas, kind, QPoint(x, y), button, button, Qt.NoModifier)
    {QEvent.MouseButtonPress: tool.canvasPressEvent, QEvent.MouseMove: tool.canvasMoveEvent,
     QEvent.MouseButtonRelease: tool.canvasReleaseEvent}[kind](event)


def test_drawing_tools_set_the_region(dock, qgis_iface):
    canvas = qgis_iface.mapCanvas()
    canvas.resize(400, 300)
    canvas.setDestinationCrs(WGS84)
    canvas.setExtent(QgsRectangle(-125, 30, -110, 45))
    canvas.refresh()
    dock.start_drawing("rectangle")
    tool = canvas.mapTool()
    _click(canvas, tool, QEvent.MouseButtonPress, 100, 100)
    _click(canvas, tool, QEvent.MouseMove, 150, 140)
    _click(canvas, tool, QEvent.MouseButtonRelease, 200, 180)
    geom, crs = dock.region
    assert crs == WGS84 and geom.area() > 0 and dock.region_mode.currentData() == "drawn"
    p1 = canvas.getCoordinateTransform().toMapCoordinates(100, 100)
    p2 = canvas.getCoordinateTransform().toMapCoordinates(200, 180)
    assert geom.boundingBox().xMinimum() == pytest.approx(min(p1.x(), p2.x()))
    assert geom.boundingBox().yMaximum() == pytest.approx(max(p1.y(), p2.y()))

    dock.start_drawing("polygon")
    tool = canvas.mapTool()
    for x, y in ((50, 50), (150, 60), (120, 160)):
        _click(canvas, tool, QEvent.MouseButtonRelease, x, y)
    _click(canvas, tool, QEvent.MouseButtonRelease, 120, 160, Qt.RightButton)
    geom, _ = dock.region
    assert geom.constGet().exteriorRing().numPoints() == 4  # a closed triangle
    assert "Drawn region" in dock.region_label.text()


BLOCKED_LOAD = r"""
import sys
from unittest.mock import MagicMock
for name in ("torch", "rasterio", "scipy", "safetensors", "segmentation_models_pytorch"):
    sys.modules[name] = None  # import fails; importlib.util.find_spec says missing
from qgis.core import Qgis, QgsApplication
app = QgsApplication([], False)
app.initQgis()
import m3_plugin
iface = MagicMock()
iface.mainWindow.return_value = None
plugin = m3_plugin.classFactory(iface)
plugin.initProcessing()
plugin.initGui()
plugin.show_dock(True)
dock = plugin.dock
assert plugin.provider is None
print("DEVICE", dock.device_label.text().replace(chr(10), " "))
print("INSTALL", dock.install_panel.label.text().replace(chr(10), " "), dock.install_panel.missing)
print("CARD", dock.card_label.text())
assert dock.run() is None
dock.load_example_data()
for call in iface.messageBar().pushMessage.call_args_list:
    print("MESSAGE", call.args[1], call.kwargs.get("level") == Qgis.Critical)
plugin.unload()
app.exitQgis()
print("OK")
"""


def test_plugin_loads_and_says_what_to_install_without_torch_and_rasterio(tmp_path):
    """In a QGIS whose Python lacks the science packages the plugin still loads, and its dock and
    message bar say what to install instead of failing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(repo), "M3_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", BLOCKED_LOAD], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    device = next(l for l in lines if l.startswith("DEVICE"))
    assert "torch" in device and "Install" in device
    # the install panel: torch & co. by its button; rasterio and scipy with the system's own packages
    install = next(l for l in lines if l.startswith("INSTALL"))
    assert "M3 needs torch" in install and "['torch', 'segmentation_models_pytorch', 'safetensors']" in install
    assert "rasterio" in install and "pip install" in install
    messages_ = [l for l in lines if l.startswith("MESSAGE")]
    assert len(messages_) == 2 and all(l.endswith("True") for l in messages_)
    assert all("not installed in QGIS's Python" in l for l in messages_)


def test_rows_only_fill_when_empty_and_the_dock_says_so(dock):
    stack = dock.mineral_rows["Au"].layer.currentLayer()
    records = dock.sites_layer.currentLayer()
    dock.mineral_rows["Ag"].set_source(records, "commodities")   # the user's choice
    dock.mineral_rows["Au"].set_source(None)                     # left empty by the user
    copy = QgsRasterLayer(stack.source(), "another stack", "gdal")
    QgsProject.instance().addMapLayer(copy)                      # a new layer with presence bands
    filled = dock.mineral_rows["Au"].layer.currentLayer()
    assert filled is not None and filled.name() in (STACK_LAYER, "another stack")  # the empty row is filled
    assert dock.mineral_rows["Ag"].layer.currentLayer() is records  # a set row is not re-pointed
    assert all(row.layer.currentLayer() is stack for sym, row in dock.mineral_rows.items() if sym not in ("Au", "Ag"))
    assert f"Au ← '{filled.name()}'" in dock.fill_label.text()
    del copy, stack, records, filled


def test_dock_fits_its_default_width_explains_itself_and_says_why_run_waits(dock, qgis_iface, monkeypatch):
    from qgis.PyQt.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QSlider

    from qgis.PyQt.QtGui import QDesktopServices
    from m3_plugin.example_data import CONUS_EXTENT_WGS84

    assert dock.widget().widget().minimumSizeHint().width() <= 290  # QGIS's default dock is ~298 px
    assert dock.intro_label.text()
    controls = [w for w in vars(dock).values() if isinstance(w, (QAbstractButton, QComboBox, QAbstractSpinBox,
                                                                 QSlider))]
    controls += [w for row in dock.mineral_rows.values() for w in (row.hide, row.layer, row.choice)]
    controls += [w for row in dock.aux_rows.values() for w in (row.layer, row.band)]
    controls += [dock.results.threshold_slider, dock.results.export_button, dock.results.export_widget,
                 dock.model_widget, dock.output_widget]
    assert len(controls) > 40
    assert not [w.objectName() or type(w).__name__ for w in controls if not w.toolTip()]
    # Help shows the bundled guide inside QGIS, without opening a web page
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: pytest.fail(f"Help opened {url.toString()}"))
    dock.help_button.click()
    assert dock.user_guide.isVisible() and "Region to hide" in dock.user_guide.browser.toPlainText()
    dock.user_guide.close()
    # Run waits for the region, and says so
    assert not dock.run_button.isEnabled() and "Draw the region" in dock.reason_label.text()
    dock.set_region(QgsGeometry.fromRect(MOTHER_LODE), WGS84)
    assert dock.run_button.isEnabled() and not dock.reason_label.text()
    dock.mineral_rows["Zn"].set_source(None)
    assert not dock.run_button.isEnabled() and "Zn" in dock.reason_label.text()
    # the example data opens on the conterminous US
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(WGS84)
    canvas.setExtent(QgsRectangle(-180, -90, 180, 90))
    dock.zoom_to_example()
    extent = canvas.extent()
    assert extent.contains(QgsRectangle(*CONUS_EXTENT_WGS84).buffered(-1)) and extent.width() < 100
