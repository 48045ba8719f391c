"""The M3 Processing algorithms as a QGIS user meets them: ``processing.run`` without
MODEL takes the bundled model, outputs load styled (not as black RGB composites), clusters are
coloured by species and labelled with the sites' name field, and errors name the M3 algorithm."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import (QgsCategorizedSymbolRenderer, QgsFeature, QgsGeometry, QgsProcessingException,
                       QgsProject, QgsRasterLayer, QgsSingleBandPseudoColorRenderer, QgsVectorLayer)

from m3_plugin import processing_provider
from test_processing import coarse, model, processing, region_layer  # noqa: F401 (fixtures)


def _run(processing, alg, params, load=False):
    if load:
        return processing.runAndLoadResults(alg, params)
    return processing.run(alg, params)


def test_infill_without_model_takes_the_bundled_model(processing, coarse, model, tmp_path, monkeypatch):
    monkeypatch.setattr(processing_provider.defaults, "BUNDLED_MODEL", model)
    out = tmp_path / "infill.tif"
    result = processing.run("m3:infill", {"STACK": str(coarse), "SPECIES": "Au", "REGION": region_layer(),
                                          "DRAWS": 1, "DEVICE": 1, "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    with rasterio.open(out) as src:
        assert list(src.descriptions) == ["mean_Au", "std_Au"]


def test_outputs_load_styled_and_clusters_by_species_with_site_names(processing, coarse, model, tmp_path,
                                                                      qgis_new_project, monkeypatch):
    # QGIS 3.44 (not 3.22) hands iface.layerTreeView() to C++, which refuses pytest-qgis's MagicMock
    monkeypatch.setattr("processing.gui.Postprocessing.iface", None, raising=False)
    pred = tmp_path / "infill.tif"
    processing.runAndLoadResults("m3:infill", {"STACK": str(coarse), "MODEL": str(model), "SPECIES": "Au, Cu",
                                               "REGION": region_layer(), "DRAWS": 1, "DEVICE": 1,
                                               "OUTPUT": str(pred)})
    rasters = [l for l in QgsProject.instance().mapLayers().values() if isinstance(l, QgsRasterLayer)]
    assert len(rasters) == 1
    renderer = rasters[0].renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer) and renderer.band() == 1
    labels = [i.label for i in renderer.shader().rasterShaderFunction().colorRampItemList()]
    assert any("threshold, Au flagged" in label for label in labels), labels
    del renderer, rasters

    with rasterio.open(pred) as src:
        threshold = min(float(np.nanquantile(src.read(b), 0.7)) for b in (1, 2))  # clusters of both species
    sites = QgsVectorLayer("Point?crs=EPSG:4326&field=commodities:string&field=mine:string", "sites", "memory")
    f = QgsFeature(sites.fields())
    f.setGeometry(QgsGeometry.fromWkt("POINT(-120 39)"))
    f["commodities"], f["mine"] = "Copper", "Big Pit"
    sites.dataProvider().addFeatures([f])
    processing.runAndLoadResults("m3:clusters", {
        "PREDICTION": str(pred), "SITES": sites, "FIELD": "commodities", "NAME_FIELD": "mine",
        "THRESHOLD": threshold, "MIN_AREA": 0.0, "MIN_DISTANCE": 0.0, "OUTPUT": str(tmp_path / "c.gpkg")})
    layer = next(l for l in QgsProject.instance().mapLayers().values()
                 if isinstance(l, QgsVectorLayer) and l.fields().indexOf("nearest_site") >= 0)
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    cats = {c.value(): c.symbol().color().name() for c in layer.renderer().categories()}
    assert set(cats) == {"Au", "Cu"} and len(set(cats.values())) == 2
    assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "nearest_site"
    assert "Big Pit" in {str(x["nearest_site"]) for x in layer.getFeatures()}
    del layer
    QgsProject.instance().clear()


def test_errors_name_the_m3_algorithm_not_the_cli(processing, tmp_path):
    from core.data import defaults

    with pytest.raises(QgsProcessingException) as err:
        processing.run("m3:infill", {"STACK": str(defaults.AUX_RASTERS[0]), "SPECIES": "Au",
                                     "OUTPUT": str(tmp_path / "x.tif")})
    text = str(err.value)
    assert "train_cli" not in text and "Build stack" in text, text
    assert processing_provider.for_processing("Make one with: python train_cli.py predict --out a.tif") == \
        "Make one with: the M3 algorithm 'Infill minerals' (m3:infill)"
