"""The M3 Processing algorithms through ``processing.run``, on a coarse (10-mile) stack of the real
embedded data; each gives what the same core function gives when called directly."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from plugin_support import stack_metadata, tiny_model
from qgis.core import (QgsApplication, QgsFeature, QgsGeometry, QgsProcessing, QgsProcessingContext,
                       QgsProcessingFeedback, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                       QgsProcessingModelChildParameterSource, QgsProcessingModelOutput, QgsProcessingModelParameter,
                       QgsProcessingParameterFeatureSource, QgsRectangle, QgsVectorLayer)

from core.data import defaults
from core.data.build_stack import build_stack
from core.inference.clusters import KnownSites, find_clusters
from core.data.grid import MILE_M
from core.masks.hiding import HideSpec
from core.inference.infer import infill
from core.inference.layer_inputs import VectorShapes, as_region, model_context_grid, window_in
from core.data.records import read_records
from core.data.species import SpeciesCatalog
from core.data.stack import Stack
from core.data.stack_sources import open_stack_source
from m3_plugin.processing_provider import M3ProcessingProvider

TEN_MILES = 10 * MILE_M
SPECIES = ["Au", "Ag", "Cu"]
# northern California and Nevada gold country, lon/lat
REGION = QgsRectangle(-122.0, 37.0, -117.0, 41.0)


@pytest.fixture(scope="module")
def processing(qgis_app):
    """Processing initialised (as QGIS does at start) with the M3 provider registered."""
    from processing.core.Processing import Processing

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    if registry.providerById("m3") is None:
        assert registry.addProvider(M3ProcessingProvider())
    import processing as proc

    yield proc
    registry.removeProvider(registry.providerById("m3"))


@pytest.fixture(scope="module")
def coarse(processing, tmp_path_factory):
    """The Build stack algorithm's output: 10-mile cells, three species, the embedded data."""
    import shutil

    folder = tmp_path_factory.mktemp("stack")
    out = folder / "stack_10mi.tif"
    # copies: QGIS writes statistics (.aux.xml) beside rasters it loads as layers
    aux = [shutil.copy(p, folder / p.name) for p in defaults.AUX_RASTERS]
    result = processing.run("m3:buildstack", {
        "RECORDS": str(defaults.RECORDS), "AUX": [str(p) for p in aux],
        "FAULTS": str(defaults.FAULTS), "OUTLINE": str(defaults.OUTLINE), "CRS": "EPSG:5070",
        "RESOLUTION": TEN_MILES, "SPECIES": ", ".join(SPECIES), "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    return out


@pytest.fixture(scope="module")
def model(coarse, tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny10.safetensors", stack_metadata(coarse))


def region_layer() -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "region", "memory")
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromRect(REGION))
    layer.dataProvider().addFeatures([f])
    return layer


def region_shapes() -> VectorShapes:
    import json

    return VectorShapes([json.loads(QgsGeometry.fromRect(REGION).asJson())], "EPSG:4326", "region")


def test_provider_offers_five_algorithms(processing):
    provider = QgsApplication.processingRegistry().providerById("m3")
    assert sorted(a.id() for a in provider.algorithms()) == ["m3:auxmap", "m3:buildstack", "m3:clusters",
                                                            "m3:combinemaps", "m3:infill"]
    assert {a.displayName() for a in provider.algorithms()} == {
        "Build stack", "Infill minerals", "Aux-only map", "Combine maps", "Find clusters"}


def test_build_stack_algorithm_equals_core(coarse, tmp_path):
    made = Stack.read(coarse)
    assert made.species == SPECIES and made.grid.resolution == pytest.approx(TEN_MILES)
    assert made.grid.crs.to_epsg() == 5070 and made.aux_names[5:7] == ["fault_distance_km", "soilC_Cu"]
    assert made.aux_names[-1] == "fault_slip_density" and len(made.aux_names) == 30   # the embedded vector layers
    assert 170 < made.grid.height < 190 and 280 < made.grid.width < 300
    direct = build_stack(tmp_path / "direct.tif", crs="EPSG:5070", resolution=TEN_MILES,
                         catalog=SpeciesCatalog().subset(SPECIES))
    np.testing.assert_array_equal(made.presence, direct.presence)
    np.testing.assert_array_equal(made.valid, direct.valid)
    np.testing.assert_array_equal(made.aux, direct.aux)


def test_build_stack_algorithm_takes_point_polygon_and_line_layers(processing, tmp_path):
    """Layers chosen in the dialog (a GeoPackage layer with a subset filter, a shapefile) become the
    same specs the CLI makes; the embedded vector layers can be left out."""
    from test_vector_aux import ALBERS, X0, Y0, square, write_layer

    from core.data.vector_aux import CategoricalPolygonsSpec, LineAttributeSpec, PointSamplesSpec

    gpkg = tmp_path / "inputs.gpkg"
    pts = [{"type": "Point", "coordinates": [X0 + x, Y0 + y]} for x, y in ((5e4, 5e4), (2e5, 1e5), (1e5, 2e5))]
    write_layer(gpkg, "point", pts, {"Cu_mgkg": [10.0, 100.0, 50.0], "horizon": ["C", "C", "A"]}, layer="soil")
    write_layer(gpkg, "line", [{"type": "LineString", "coordinates": [[X0, Y0], [X0 + 3e5, Y0 + 3e5]]}],
                {"slip_mm_yr": [1.5]}, layer="faults")
    shp = write_layer(tmp_path / "rocks.shp", "polygon", [square(X0, Y0, X0 + 1.5e5, Y0 + 3e5),
                                                          square(X0 + 1.5e5, Y0, X0 + 3e5, Y0 + 3e5)],
                      {"KIND": ["granite", "shale"]}, layer="rocks", driver="ESRI Shapefile")
    outline = write_layer(tmp_path / "outline.gpkg", "polygon", [square(X0, Y0, X0 + 3e5, Y0 + 3e5)], {"id": [1]},
                          crs=ALBERS)
    soil = QgsVectorLayer(f"{gpkg}|layername=soil|subset=\"horizon\" = 'C'", "soil C", "ogr")
    assert soil.isValid() and soil.featureCount() == 2
    params = {"OUTLINE": str(outline), "CRS": "EPSG:5070", "RESOLUTION": TEN_MILES,
              "SPECIES": "Au", "POINTS": soil, "POINT_FIELDS": ["Cu_mgkg"], "CATEGORIES": str(shp),
              "CATEGORY_FIELD": "KIND", "LINES": f"{gpkg}|layername=faults", "LINE_FIELD": "slip_mm_yr",
              "LINE_SIGMA": 20.0, "EMBEDDED_VECTORS": False, "OUTPUT": str(tmp_path / "s.tif")}
    made = Stack.read(processing.run("m3:buildstack", params)["OUTPUT"])
    assert made.aux_names[6:] == ["soil_C_Cu", "soil_C_sample_distance_km", "kind_granite", "kind_shale",
                                  "slip_mm_yr_density"]                  # after the rasters and fault distance
    assert "where \"horizon\" = 'C'" in made.aux_bands[6].source
    direct = build_stack(tmp_path / "direct.tif", outline=outline, resolution=TEN_MILES,
                         catalog=SpeciesCatalog().subset(["Au"]),
                         point_samples=[PointSamplesSpec(gpkg, ("Cu_mgkg",), "soil", "horizon = 'C'", prefix="soil_C")],
                         categorical_polygons=[CategoricalPolygonsSpec(shp, "KIND")],
                         line_attributes=[LineAttributeSpec(gpkg, "slip_mm_yr", "faults", sigma_km=20.0)])
    np.testing.assert_allclose(made.aux, direct.aux, atol=1e-6)
    # with no layer chosen, the embedded ones come back
    params.update({"POINTS": None, "CATEGORIES": None, "LINES": None, "EMBEDDED_VECTORS": True})
    names = Stack.read(processing.run("m3:buildstack", params)["OUTPUT"]).aux_names
    assert names[6] == "soilC_Cu" and "rock_type_999" in names and names[-1] == "fault_slip_density"


def test_build_stack_reports_a_geographic_crs(processing, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="projected CRS"):
        processing.run("m3:buildstack", {"CRS": "EPSG:4326", "RESOLUTION": TEN_MILES, "OUTPUT": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()


def test_infill_algorithm_in_a_region_equals_core(processing, coarse, model, tmp_path):
    out = tmp_path / "infill.tif"
    result = processing.run("m3:infill", {
        "STACK": str(coarse), "MODEL": str(model), "SPECIES": "Au, Cu", "REGION": region_layer(), "DRAWS": 2,
        "BATCH": 4, "DEVICE": 1, "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    with rasterio.open(out) as src:
        assert list(src.descriptions) == ["mean_Au", "mean_Cu", "std_Au", "std_Cu"]
        assert src.crs.to_epsg() == 5070
        got = src.read()
    # the same through core: the region's context window of the stack, the same hidden set
    stack = Stack.read(coarse)
    region = as_region(region_shapes())
    grid = model_context_grid(region, stack.grid.crs, stack.grid.resolution, 32)
    window = open_stack_source(stack).read_window(*window_in(stack.grid, grid))  # may hang over the edge
    expected = infill(window, [model], HideSpec(("Au", "Cu"), region), draws=2, batch_size=4, device="cpu")
    np.testing.assert_allclose(got[:2], expected.mean, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(got[2:], expected.std, atol=1e-5, equal_nan=True)
    hidden = HideSpec(("Au",), region).cells(grid, window.valid)
    np.testing.assert_array_equal(np.isfinite(got[0]), hidden)
    assert hidden.sum() > 100


def test_infill_algorithm_runs_a_pu_model_and_writes_its_presence(processing, coarse, tmp_path):
    """A PU model (two instances) runs like any other; the map is the presence instance's alone."""
    from core.model.model_file import load_model, save_model

    pu = tiny_model(tmp_path / "pu.safetensors", stack_metadata(coarse), pu=True)
    net, card = load_model(pu)
    card.model = dict(card.model, options={k: v for k, v in card.model["options"].items() if k != "pu"})
    presence_only = save_model(tmp_path / "presence.safetensors", net.presence, card)
    out = tmp_path / "infill_pu.tif"
    processing.run("m3:infill", {"STACK": str(coarse), "MODEL": str(pu), "SPECIES": "Au", "REGION": region_layer(),
                                 "DRAWS": 1, "DEVICE": 1, "OUTPUT": str(out)})
    with rasterio.open(out) as src:
        got = src.read(1)
    stack = Stack.read(coarse)
    grid = model_context_grid(as_region(region_shapes()), stack.grid.crs, stack.grid.resolution, 32)
    window = open_stack_source(stack).read_window(*window_in(stack.grid, grid))
    expected = infill(window, [presence_only], HideSpec(("Au",), as_region(region_shapes())), device="cpu")
    assert np.isfinite(got).sum() > 100
    np.testing.assert_allclose(got, expected.mean[0], atol=1e-5, equal_nan=True)


def test_clusters_algorithm_equals_core(processing, coarse, model, tmp_path):
    pred = tmp_path / "infill.tif"
    processing.run("m3:infill", {"STACK": str(coarse), "MODEL": str(model), "SPECIES": "Au",
                                 "REGION": region_layer(), "DRAWS": 1, "DEVICE": 1, "OUTPUT": str(pred)})
    with rasterio.open(pred) as src:
        mean = src.read(1)
    threshold = float(np.nanquantile(mean, 0.7))  # a random model: take its top 30 % of cells
    out = tmp_path / "clusters.gpkg"
    result = processing.run("m3:clusters", {"PREDICTION": str(pred), "THRESHOLD": threshold, "MIN_AREA": 0.0,
                                            "MIN_DISTANCE": 0.0, "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out) and result["COUNT"] > 0
    layer = QgsVectorLayer(f"{out}|layername=clusters", "c", "ogr")
    assert layer.isValid() and layer.featureCount() == result["COUNT"]
    fields = {f.name() for f in layer.fields()}
    assert {"species", "area_km2", "peak_prob", "mean_prob", "centroid_lon", "centroid_lat",
            "nearest_record_km", "nearest_site", "nearest_commodities"} <= fields
    # core with the default known sites (the embedded records) finds the same clusters
    from core.data.prediction_io import read_prediction_info

    grid, species, _ = read_prediction_info(pred)
    sites = KnownSites.from_records(read_records(defaults.RECORDS, SpeciesCatalog().subset(species)), grid)
    direct = find_clusters(pred, sites, threshold, 0.0, 0.0)
    assert len(direct) == result["COUNT"]
    areas = sorted(f["area_km2"] for f in layer.getFeatures())
    assert areas == pytest.approx(sorted(c.area_km2 for c in direct))
    del layer
    # known sites from a point layer: an Au site inside every cluster removes them all at distance 1 km
    sites_layer = QgsVectorLayer("Point?crs=EPSG:4326&field=commodities:string", "sites", "memory")
    feats = []
    for c in direct:
        f = QgsFeature(sites_layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(f"POINT({c.centroid_lon} {c.centroid_lat})"))
        f["commodities"] = "Gold"
        feats.append(f)
    sites_layer.dataProvider().addFeatures(feats)
    far = processing.run("m3:clusters", {"PREDICTION": str(pred), "SITES": sites_layer, "FIELD": "commodities",
                                         "THRESHOLD": threshold, "MIN_AREA": 0.0, "MIN_DISTANCE": 1e4,
                                         "OUTPUT": str(tmp_path / "none.gpkg")})
    assert far["COUNT"] == 0


def test_algorithms_chain_in_a_processing_model(processing, coarse, model, tmp_path):
    """Model Designer use: a model that infills a region of a stack and finds clusters in the result."""
    m = QgsProcessingModelAlgorithm("infill and clusters", "m3")
    m.addModelParameter(QgsProcessingParameterFeatureSource("region", "region", [QgsProcessing.TypeVectorPolygon]),
                        QgsProcessingModelParameter("region"))
    infill_child = QgsProcessingModelChildAlgorithm("m3:infill")
    infill_child.setChildId("infill")
    infill_child.addParameterSources("STACK", [QgsProcessingModelChildParameterSource.fromStaticValue(str(coarse))])
    infill_child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue(str(model))])
    infill_child.addParameterSources("SPECIES", [QgsProcessingModelChildParameterSource.fromStaticValue("Au")])
    infill_child.addParameterSources("REGION", [QgsProcessingModelChildParameterSource.fromModelParameter("region")])
    infill_child.addParameterSources("DRAWS", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    infill_child.addParameterSources("DEVICE", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    m.addChildAlgorithm(infill_child)
    clusters_child = QgsProcessingModelChildAlgorithm("m3:clusters")
    clusters_child.setChildId("clusters")
    clusters_child.addParameterSources("PREDICTION", [
        QgsProcessingModelChildParameterSource.fromChildOutput("infill", "OUTPUT")])
    clusters_child.addParameterSources("THRESHOLD", [QgsProcessingModelChildParameterSource.fromStaticValue(0.01)])
    clusters_child.addParameterSources("MIN_AREA", [QgsProcessingModelChildParameterSource.fromStaticValue(0.0)])
    clusters_child.addParameterSources("MIN_DISTANCE", [QgsProcessingModelChildParameterSource.fromStaticValue(0.0)])
    out = QgsProcessingModelOutput("clusters_out")
    out.setChildOutputName("OUTPUT")
    out.setChildId("clusters")
    clusters_child.setModelOutputs({"clusters_out": out})
    m.addChildAlgorithm(clusters_child)
    m.updateDestinationParameters()
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    target = str(tmp_path / "model_clusters.gpkg")
    results, ok = m.run({"region": region_layer(), "clusters:clusters_out": target}, context, feedback)
    assert ok, feedback.textLog()
    assert results["clusters:clusters_out"] == target
    layer = QgsVectorLayer(f"{target}|layername=clusters", "c", "ogr")
    assert layer.isValid() and layer.featureCount() > 0  # threshold 0.01: most of the region is flagged
    del layer


def test_infill_algorithm_hides_only_the_cells_without_a_record(processing, coarse, model, tmp_path):
    from core.masks.hiding import UnrecordedRegion

    out = tmp_path / "unrecorded.tif"
    processing.run("m3:infill", {"STACK": str(coarse), "MODEL": str(model), "SPECIES": "Au", "UNRECORDED": True,
                                 "DRAWS": 1, "BATCH": 4, "DEVICE": 1, "OUTPUT": str(out)})
    with rasterio.open(out) as src:
        got = src.read(1)
    stack = Stack.read(coarse)
    expected = infill(stack, [model], HideSpec(("Au",), UnrecordedRegion(stack)), batch_size=4, device="cpu")
    np.testing.assert_allclose(got, expected.mean[0], atol=1e-5, equal_nan=True)
    recorded = stack.presence.any(axis=0)
    assert np.isfinite(got[stack.valid & ~recorded]).all() and np.all(got[stack.presence[0] > 0] == 1.0)


def test_aux_only_map_and_combine_maps_algorithms_equal_core(processing, coarse, model, tmp_path):
    from core.data.prediction_io import read_band
    from core.inference.aux_map import make_aux_map
    from core.inference.combine import combined_probability

    aux_out, infill_out, both_out = tmp_path / "aux.tif", tmp_path / "infill.tif", tmp_path / "both.tif"
    processing.run("m3:auxmap", {"STACK": str(coarse), "SPECIES": "Au", "OUTPUT": str(aux_out)})
    stack = Stack.read(coarse)
    expected = make_aux_map(stack, ["Au"], seeds=1)
    got = read_band(aux_out, "mean_Au")
    np.testing.assert_allclose(got, expected.mean[0], atol=1e-6, equal_nan=True)
    assert np.isfinite(got[stack.valid]).all() and np.isnan(got[~stack.valid]).all()

    processing.run("m3:infill", {"STACK": str(coarse), "MODEL": str(model), "SPECIES": "Au", "DRAWS": 1,
                                 "BATCH": 4, "DEVICE": 1, "OUTPUT": str(infill_out)})
    processing.run("m3:combinemaps", {"MAPS": [str(infill_out), str(aux_out)], "OUTPUT": str(both_out)})
    want = combined_probability([read_band(infill_out, "mean_Au"), got])
    np.testing.assert_allclose(read_band(both_out, "mean_Au"), want, atol=1e-6, equal_nan=True)
    with pytest.raises(Exception, match="at least two"):
        processing.run("m3:combinemaps", {"MAPS": [str(aux_out)], "OUTPUT": str(tmp_path / "one.tif")})
