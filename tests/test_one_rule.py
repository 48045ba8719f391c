"""One home for each decision: the CLI, the Processing algorithms and the dock's job builder, given
the same inputs, get the same answer — the threshold of a 3-model ensemble, the known sites of the
clusters search, a multipoint records layer (core.data.features, core.inference.clusters.known_sites,
core.model.model_file.ensemble_threshold, core.data.prediction_io.prediction_threshold)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from plugin_support import stack_metadata, tiny_model
from qgis.core import (QgsCoordinateReferenceSystem, QgsGeometry, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)
from rasterio.warp import transform
from test_processing import REGION, coarse, processing, region_layer  # noqa: F401 (fixtures)

from core.cli import main as cli_main
from core.data.features import PointRecords, name_field_for, records_from_features, site_point
from core.model.model_file import ensemble_threshold, read_card
from core.data.prediction_io import prediction_file, read_prediction_info
from core.data.synthetic import synthetic_stack

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
THRESHOLDS = [(0.30, 0.20), (0.40, 0.35), (0.65, 0.70)]  # (pooled, "both") per model


@pytest.fixture(scope="module")
def ensemble(coarse, tmp_path_factory):
    """Three random-weight models for the coarse stack, each with its own validation thresholds."""
    folder = tmp_path_factory.mktemp("ensemble")
    paths = []
    for i, (pooled, both) in enumerate(THRESHOLDS):
        path = tiny_model(folder / f"seed{i}.safetensors", stack_metadata(coarse), threshold=pooled)
        card = path.with_suffix(".json")
        meta = json.loads(card.read_text())
        meta["metrics"]["validation"]["thresholds"] = {"both": both, "region": pooled, "species": pooled}
        card.write_text(json.dumps(meta))
        paths.append(str(path))
    return paths


def test_a_three_model_ensemble_has_one_threshold_everywhere(processing, coarse, ensemble, tmp_path,
                                                             qgis_iface, qgis_new_project):
    from m3_plugin.dock import M3Dock

    expected = ensemble_threshold([read_card(p) for p in ensemble], "both")
    assert expected == pytest.approx(np.mean([b for _, b in THRESHOLDS]))
    assert expected != pytest.approx(THRESHOLDS[0][1])  # not the first card's
    # the CLI: predict writes it, clusters reads it
    pred_cli = tmp_path / "cli.tif"
    west, south, east, north = REGION.xMinimum(), REGION.yMinimum(), REGION.xMaximum(), REGION.yMaximum()
    assert cli_main(["predict", "--stack", str(coarse), "--models", *ensemble, "--hide-species", "Au",
                     "--hide-bounds", str(west), str(south), str(east), str(north), "--device", "cpu",
                     "--no-quicklook", "--out", str(pred_cli)]) == 0
    assert read_prediction_info(pred_cli)[2]["threshold"] == pytest.approx(expected)
    # the Processing algorithms
    pred_alg = tmp_path / "alg.tif"
    processing.run("m3:infill", {"STACK": str(coarse), "MODEL": ensemble[0], "MORE_MODELS": ";".join(ensemble[1:]),
                                 "SPECIES": "Au", "REGION": region_layer(), "DRAWS": 1, "DEVICE": 1,
                                 "OUTPUT": str(pred_alg)})
    assert read_prediction_info(pred_alg)[2]["threshold"] == pytest.approx(expected)
    # the dock's job builder, with the stack's bands as its layers
    QgsProject.instance().addMapLayer(QgsRasterLayer(str(coarse), "stack", "gdal"))
    dock = M3Dock(qgis_iface)
    try:
        dock.set_model_paths(ensemble)
        assert dock.threshold_spin.value() == 0.0  # no fixed probability: the run flags the top share
        for sym, row in dock.mineral_rows.items():
            row.hide.setChecked(sym == "Au")
        dock.set_region(QgsGeometry.fromRect(REGION), WGS84)
        job = dock.build_job()
        # the ensemble's validated threshold, shown beside the run's own (core's one rule)
        assert job.validated_threshold == pytest.approx(expected)
    finally:
        dock.close_down()
        dock.deleteLater()
        QgsProject.instance().clear()


# -- known sites and a multipoint records layer ------------------------------------------------------

@pytest.fixture
def scene(tmp_path):
    """A prediction with two Au blobs: A far from any site, C with a multipoint site whose first
    point lies 2 cells from it and whose second point lies far away (in A's corner)."""
    stack = synthetic_stack(100, 120, n_species=5, n_aux=1)
    g = stack.grid
    stack.presence[:] = 0
    stack.presence[4, 35, 112] = 1  # a Cu presence cell
    au = np.full(g.shape, 0.1, np.float32)
    au[10:20, 10:25] = 0.7          # A
    au[60:75, 60:75] = 0.8          # C
    pred = tmp_path / "prediction.tif"
    with prediction_file(pred, g, ["Au"], {"threshold": 0.5}) as w:
        w.write_rows(0, au[None], np.zeros((1,) + g.shape, np.float32))
    x, y = g.cell_centres(np.array([67, 95]), np.array([77, 5]))
    lon, lat = transform(g.crs, "EPSG:4326", x, y)
    layer_path = tmp_path / "sites.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(layer_path))
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lyr = ds.CreateLayer("sites", srs, ogr.wkbMultiPoint)
    for name in ("Commodity", "site_name"):
        lyr.CreateField(ogr.FieldDefn(name, ogr.OFTString))
    f = ogr.Feature(lyr.GetLayerDefn())
    f.SetGeometry(ogr.CreateGeometryFromWkt(f"MULTIPOINT(({lon[0]!r} {lat[0]!r}),({lon[1]!r} {lat[1]!r}))"))
    f["Commodity"], f["site_name"] = "Gold", "Twin Shafts"
    lyr.CreateFeature(f)
    ds = None
    csv = tmp_path / "sites.csv"  # the same site for the CLI, at the multipoint's first point
    csv.write_text(f"lon,lat,commodity,name\n{lon[0]!r},{lat[0]!r},Gold,Twin Shafts\n")
    return SimpleNamespace(stack=stack, grid=g, prediction=pred, layer=layer_path, csv=csv, first=(lon[0], lat[0]))


def _clusters(path) -> list[tuple]:
    ds = ogr.Open(str(path))
    rows = sorted((round(f.GetField("area_km2"), 3), f.GetField("nearest_site"), round(f.GetField("nearest_record_km"), 3))
                  for f in ds.GetLayerByName("clusters"))
    return rows


def _task_clusters(scene, tmp_path, sites=None) -> list[tuple]:
    """The dock's task's clusters step on the scene (its stack in the plugin's own copy of core)."""
    from m3_plugin.core.data.stack import Stack
    from m3_plugin.infill_task import PREDICTION_FILE, InfillTask

    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    shutil.copy(scene.prediction, folder / PREDICTION_FILE)
    stack = Stack.read(scene.stack.write(tmp_path / "stack.tif"))
    job = SimpleNamespace(folder=folder, grid=stack.grid, threshold=0.5, sites=sites, cluster_min_area_km2=20.0,
                          cluster_min_distance_km=10.0)
    path, _ = InfillTask._clusters(stack, job)
    return _clusters(path)


def test_multipoint_site_is_its_first_point_for_every_reader(scene, tmp_path, processing):
    from m3_plugin import layer_sources as ls

    layer = QgsVectorLayer(str(scene.layer), "sites", "ogr")
    assert layer.isValid()
    field = ls.commodity_field(layer)
    assert field == "Commodity"
    dock_points = ls.point_records(layer, field)                                      # the dock's reader
    alg_points = ls.site_points(layer, layer.crs(), field, None, name="sites")        # the Processing reader
    for points in (dock_points, alg_points):
        assert (points.lon.tolist(), points.lat.tolist()) == ([scene.first[0]], [scene.first[1]])
        assert points.names == ["Twin Shafts"] and points.commodities == ["Gold"]
    # core's rule itself, on plain data
    multi = {"type": "MultiPoint", "coordinates": [[1.0, 2.0], [3.0, 4.0]]}
    assert site_point(multi) == (1.0, 2.0) and site_point({"type": "Point", "coordinates": []}) is None
    plain = records_from_features([(multi, {"commodity": "Au", "NAME": "x"})], "commodity",
                                  name_field_for(["commodity", "NAME"]))
    assert isinstance(plain, PointRecords) and plain.names == ["x"]

    # the clusters: CLI (records CSV at the first point), Processing (the layer), the dock's task (the layer)
    cli_out = tmp_path / "cli.gpkg"
    assert cli_main(["clusters", "--prediction", str(scene.prediction), "--records", str(scene.csv),
                     "--min-area-km2", "20", "--min-distance-km", "10", "--out", str(cli_out)]) == 0
    alg_out = tmp_path / "alg.gpkg"
    processing.run("m3:clusters", {"PREDICTION": str(scene.prediction), "SITES": layer, "MIN_AREA": 20.0,
                                   "MIN_DISTANCE": 10.0, "OUTPUT": str(alg_out)})
    cli, alg = _clusters(cli_out), _clusters(alg_out)
    task = _task_clusters(scene, tmp_path, dock_points)
    assert len(cli) == 1 and cli[0][1] == "Twin Shafts"  # C is next to the site: only A is a cluster
    assert cli == alg == task


def test_known_sites_from_a_stack_are_the_same_everywhere(scene, tmp_path, processing):
    """No sites given, the prediction's stack: its presence cells, for the CLI, Processing and the task."""
    stack_path = scene.stack.write(tmp_path / "stack.tif")
    cli_out = tmp_path / "cli.gpkg"
    assert cli_main(["clusters", "--prediction", str(scene.prediction), "--stack", str(stack_path),
                     "--min-area-km2", "20", "--min-distance-km", "10", "--out", str(cli_out)]) == 0
    alg_out = tmp_path / "alg.gpkg"
    processing.run("m3:clusters", {"PREDICTION": str(scene.prediction), "STACK": str(stack_path),
                                   "MIN_AREA": 20.0, "MIN_DISTANCE": 10.0, "OUTPUT": str(alg_out)})
    cli, alg = _clusters(cli_out), _clusters(alg_out)
    assert len(cli) == 2 and cli == alg == _task_clusters(scene, tmp_path)
