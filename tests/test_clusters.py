"""Discovered clusters on a synthetic probability map: which regions count, their fields, the GeoPackage."""
from __future__ import annotations

import numpy as np
import pytest
from osgeo import ogr
from rasterio.warp import transform

from core.inference.clusters import FIELDS, KnownSites, find_clusters, summary, write_clusters
from core.cli import main as cli_main
from core.errors import InputError
from core.data.grid import MILE_M
from core.data.prediction_io import prediction_file
from core.data.records import Records
from core.data.synthetic import synthetic_stack

KM2_PER_CELL = (MILE_M / 1000) ** 2  # 2.59 km2


@pytest.fixture()
def scene(tmp_path):
    """A 100 x 120 map with four high-probability blobs for Au:

    A (rows 10-19, cols 10-24: 150 cells) far from any record          → a cluster
    B (rows 60-61, cols 10-11: 4 cells) too small                        → not
    C (rows 60-74, cols 60-74) with an Au record 2 cells away            → not
    D (rows 30-39, cols 90-104) with a Cu record ("Old Cu mine") 8 cells away → a cluster
    and a Cu band with nothing above the threshold."""
    stack = synthetic_stack(100, 120, n_species=5, n_aux=1)
    g = stack.grid
    au = np.full(g.shape, 0.1, np.float32)
    au[10:20, 10:25] = 0.7
    au[14, 17] = 0.95
    au[60:62, 10:12] = 0.9
    au[60:75, 60:75] = 0.8
    au[30:40, 90:105] = 0.6
    cu = np.full(g.shape, 0.2, np.float32)
    au[:, :3] = np.nan
    cu[:, :3] = np.nan
    path = tmp_path / "pred.tif"
    with prediction_file(path, g, ["Au", "Cu"], {"threshold": 0.5}) as w:
        w.write_rows(0, np.stack([au, cu]), np.zeros((2,) + g.shape, np.float32))
    cells = [(67, 77), (35, 112)]  # an Au record by C, a Cu record by D
    x, y = g.cell_centres(np.array([r for r, _ in cells]), np.array([c for _, c in cells]))
    lon, lat = transform(g.crs, "EPSG:4326", x, y)
    records = Records(np.array(lon), np.array(lat), np.array([[True, False], [False, True]]), ["Au", "Cu"],
                      ["Au prospect", "Old Cu mine"], ["Gold", "Copper; Silver"])
    return path, KnownSites.from_records(records, g), g


def test_clusters_are_large_high_regions_far_from_records_of_the_species(scene):
    path, sites, g = scene
    found = find_clusters(path, sites, threshold=0.5, min_area_km2=10 * KM2_PER_CELL, min_distance_km=10.0)
    assert [c.species for c in found] == ["Au", "Au"]
    a, d = found  # sorted by peak probability
    assert a.cells == 150 and a.area_km2 == pytest.approx(150 * KM2_PER_CELL, rel=1e-6)
    assert a.peak_prob == pytest.approx(0.95) and a.mean_prob == pytest.approx((149 * 0.7 + 0.95) / 150, rel=1e-5)
    assert d.cells == 150 and d.peak_prob == pytest.approx(0.6)
    assert d.nearest_site == "Old Cu mine" and d.nearest_commodities == "Copper; Silver"
    assert d.nearest_record_km == pytest.approx(8 * MILE_M / 1000, rel=1e-3)
    # A's centroid is the centre of its cells
    x, y = g.cell_centres(np.array([14.5]), np.array([17.0]))
    lon, lat = transform(g.crs, "EPSG:4326", x, y)
    assert (a.centroid_lon, a.centroid_lat) == pytest.approx((lon[0], lat[0]), abs=1e-6)
    assert a.cell_index is None
    rows, cols = find_clusters(path, sites, 0.5, 10 * KM2_PER_CELL, 10.0, with_cells=True)[0].cell_index
    assert (rows.min(), rows.max(), cols.min(), cols.max(), len(rows)) == (10, 19, 10, 24, 150)
    # a smaller exclusion distance lets C in; a larger minimum area drops everything
    assert len(find_clusters(path, sites, 0.5, 10 * KM2_PER_CELL, 1.0)) == 3
    assert find_clusters(path, sites, 0.5, 1000 * KM2_PER_CELL, 10.0) == []


def test_clusters_geopackage_has_the_fields_and_polygons(scene, tmp_path):
    path, sites, g = scene
    found = find_clusters(path, sites, 0.5, 10 * KM2_PER_CELL, 10.0)
    out = write_clusters(found, tmp_path / "clusters.gpkg", g.crs)
    ds = ogr.Open(str(out))
    lyr = ds.GetLayerByName("clusters")
    names = [lyr.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(lyr.GetLayerDefn().GetFieldCount())]
    assert names == [n for n, _ in FIELDS]
    assert lyr.GetFeatureCount() == 2
    feats = sorted(lyr, key=lambda f: -f.GetField("peak_prob"))
    assert feats[0].GetField("species") == "Au"
    assert feats[1].GetField("nearest_site") == "Old Cu mine"
    # polygon area (in the grid's metres) equals the cluster's area
    assert feats[0].GetGeometryRef().GetArea() / 1e6 == pytest.approx(found[0].area_km2, rel=1e-6)
    assert lyr.GetSpatialRef().GetAuthorityCode(None) == "5070"
    assert "2 clusters: Au 2" in summary(found)
    assert not list(tmp_path.glob(".clusters*"))  # no temporary left behind


def test_no_clusters_still_writes_an_empty_layer(scene, tmp_path):
    path, sites, g = scene
    out = write_clusters(find_clusters(path, sites, 0.99, 1.0, 10.0), tmp_path / "none.gpkg", g.crs)
    ds = ogr.Open(str(out))  # keep the data source alive while its layer is used
    assert ds.GetLayerByName("clusters").GetFeatureCount() == 0
    with pytest.raises(InputError, match="GeoPackage"):
        write_clusters([], tmp_path / "x.shp", g.crs)


def test_clusters_command_with_presence_cells_as_records(scene, tmp_path, capsys):
    path, _, g = scene
    stack = synthetic_stack(100, 120, n_species=5, n_aux=1)
    stack.presence[:] = 0
    stack.presence[0, 67, 77] = 1   # Au by C
    stack.presence[4, 35, 112] = 1  # Cu by D
    stack_path = stack.write(tmp_path / "stack.tif")
    out = tmp_path / "c.gpkg"
    rc = cli_main(["clusters", "--prediction", str(path), "--stack", str(stack_path), "--min-area-km2", "20",
                   "--min-distance-km", "10", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "2 clusters: Au 2" in text and "threshold 0.500" in text
    ds = ogr.Open(str(out))
    feats = list(ds.GetLayerByName("clusters"))
    assert sorted(f.GetField("nearest_commodities") for f in feats) == ["Au", "Cu"]
