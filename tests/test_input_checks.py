"""Never report a wrong discovery, never drop a record without a word.

Each test feeds a bad or unusual input that earlier versions accepted silently (or answered with a
misleading message) and checks the clear refusal, warning or reading that replaces it. Every file
is small and made here.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform as transform_points

from core.data.aux_layers import resample_to_grid
from core.cli import main as cli_main
from core.errors import InputError, ModelMismatchError
from core.data.grid import Grid
from core.model.model_file import ModelCard, save_model
from core.model.models import ModelConfig, build_model
from core.data.records import read_records
from core.data.species import SpeciesCatalog
from core.data.stack import AuxBand
from core.data.synthetic import synthetic_stack

X0, Y0 = -2_000_000.0, 1_900_000.0   # a 20 x 20 km square in EPSG:5070 (north-west of Texas' panhandle)


# -- small inputs made here ----------------------------------------------------------------------
def lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = transform_points("EPSG:5070", "EPSG:4326", [x], [y])
    return lon[0], lat[0]


def write_outline(path: Path) -> Path:
    ring = [[X0, Y0], [X0 + 20_000, Y0], [X0 + 20_000, Y0 + 20_000], [X0, Y0 + 20_000], [X0, Y0]]
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::5070"}},
                                "features": [{"type": "Feature", "properties": {},
                                              "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return path


def write_raster(path: Path, bands: list[np.ndarray], nodata=None, crs="EPSG:5070",
                 transform=from_origin(X0 - 5_000, Y0 + 25_000, 1000.0, 1000.0)) -> Path:
    h, w = bands[0].shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=len(bands), dtype="float32", crs=crs,
                       transform=transform, nodata=nodata) as dst:
        for i, b in enumerate(bands, start=1):
            dst.write(b.astype(np.float32), i)
    return path


def varying() -> np.ndarray:
    return np.arange(30 * 30, dtype=np.float32).reshape(30, 30)


def small_grid() -> tuple[Grid, np.ndarray]:
    grid = Grid.from_bounds("EPSG:5070", (X0, Y0, X0 + 20_000, Y0 + 20_000), 2000.0)
    return grid, np.ones(grid.shape, bool)


def inside_points(n: int) -> list[tuple[float, float]]:
    return [lonlat(X0 + 2_000 + 1_500 * i, Y0 + 3_000 + 1_200 * i) for i in range(n)]


def build_cli(tmp_path: Path, records: Path, *extra: str) -> int:
    aux = write_raster(tmp_path / "aux.tif", [varying()])
    return cli_main(["build-stack", "--out", str(tmp_path / "s.tif"), "--records", str(records), "--aux", str(aux),
                     "--outline", str(write_outline(tmp_path / "outline.geojson")), "--faults", "none",
                     "--points", "none", "--categories", "none", "--line-attribute", "none",
                     "--resolution", "2000", *extra])


# -- commodity spellings: split, matched word by word, and the rest counted --------------------
SPELLINGS = [("Gold-Silver", {"Au", "Ag"}), ("Au/Ag", {"Au", "Ag"}), ("Copper Oxide", {"Cu"}),
             ("Uranium-Vanadium", {"U"}), ("Gold (placer)", {"Au"}), ("U V CU", {"U", "Cu"}),
             ("Lead and Zinc", {"Pb", "Zn"}), ("Sand and Gravel", set()), ("Aurum", set()),
             ("Gold", {"Au"}), ("gold;SILVER", {"Au", "Ag"}), ("Au Ag", {"Au", "Ag"})]


@pytest.mark.parametrize("text, expected", SPELLINGS)
def test_commodity_spellings_are_split_and_matched(text, expected):
    assert SpeciesCatalog().match(text) == expected


def test_an_english_word_that_is_a_symbol_names_no_species():
    cat = SpeciesCatalog().extended({"In": ["Indium"], "As": ["Arsenic"]})
    assert cat.match("gold in quartz veins") == {"Au"}
    assert cat.match("Indium") == {"In"} and cat.match("AU IN") == {"Au", "In"}


def test_records_naming_no_species_are_counted_and_reported_with_their_spelling(tmp_path):
    pts = inside_points(6)
    comm = ["Gold-Silver", "Aurum", "Aurum", "Sand and Gravel", "", "Copper Oxide"]
    csv = tmp_path / "r.csv"
    csv.write_text("lon,lat,commodities\n" + "".join(f"{x},{y},{c}\n" for (x, y), c in zip(pts, comm)))
    with pytest.warns(UserWarning, match=r"4 record\(s\) name none of the species.*'Aurum' \(2\)"):
        recs = read_records(csv)
    assert len(recs) == 2 and recs.skipped_no_species == 4
    assert recs.unmatched_spellings == {"Aurum": 2, "Sand and Gravel": 1, "(no commodity)": 1}
    assert recs.counts()["Au"] == 1 and recs.counts()["Ag"] == 1 and recs.counts()["Cu"] == 1


def test_build_stack_reports_the_records_naming_no_species(tmp_path, capsys):
    pts = inside_points(3)
    csv = tmp_path / "r.csv"
    csv.write_text("lon,lat,commodities\n" + "".join(f"{x},{y},{c}\n" for (x, y), c in
                                                      zip(pts, ["Gold (placer)", "Aurum", "Au/Ag"])))
    assert build_cli(tmp_path, csv) == 0
    out, err = capsys.readouterr()
    assert "skipped (naming none of the species): 1" in out and "'Aurum' (1)" in err
    with rasterio.open(tmp_path / "s.tif") as src:
        info = json.loads(src.tags()["M3_STACK"])["info"]
    assert info["records_skipped_no_species"] == 1 and info["records_no_species_spellings"] == {"Aurum": 1}
    assert info["presence_counts"]["Au"] == 2


# -- --extra-species ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, message", [("Gold=Aurum", "'gold' would name both Au and Gold"),
                                           ("=Cerium", "symbol"), ("Ce=Cerium,Ce=cer", "twice"),
                                           ("Mo=Molybdenum,Zz=moly|Mo", "'mo' would name both Mo and Zz")])
def test_extra_species_that_steal_a_spelling_or_lack_a_symbol_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        SpeciesCatalog().extended(SpeciesCatalog.parse_extra(spec))


def test_extra_species_still_add_spellings_and_species():
    cat = SpeciesCatalog().extended(SpeciesCatalog.parse_extra("Au=Aurum|oro,Ce=Cerium"))
    assert cat.match("Aurum; cerium") == {"Au", "Ce"} and cat.symbols[-1] == "Ce"


def test_build_stack_cli_refuses_a_stolen_spelling(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    csv.write_text("lon,lat,commodities\n%s,%s,Gold\n" % inside_points(1)[0])
    assert build_cli(tmp_path, csv, "--extra-species", "Gold=Aurum") == 2
    assert "would name both Au and Gold" in capsys.readouterr().err
    assert not (tmp_path / "s.tif").exists()


# -- aux rasters: constant, all nodata -----------------------------------------------------------
def test_constant_aux_raster_is_refused(tmp_path):
    grid, valid = small_grid()
    path = write_raster(tmp_path / "flat.tif", [np.full((30, 30), 7.0)])
    with pytest.raises(InputError, match=r"flat.tif is constant over the region \(its only band holds 7"):
        resample_to_grid(path, grid, valid)


def test_multiband_raster_whose_band_1_is_constant_is_refused(tmp_path):
    grid, valid = small_grid()
    path = write_raster(tmp_path / "two.tif", [np.zeros((30, 30)), varying()])
    with pytest.raises(InputError, match="band 1 of 2.*gdal_translate -b"):
        resample_to_grid(path, grid, valid)


@pytest.mark.parametrize("fill, nodata", [(np.nan, None), (-9999.0, -9999.0)])
def test_all_nodata_aux_raster_is_not_called_outside_the_grid(tmp_path, fill, nodata):
    grid, valid = small_grid()
    path = write_raster(tmp_path / "empty.tif", [np.full((30, 30), fill)], nodata=nodata)
    with pytest.raises(InputError, match="holds no data in every cell") as e:
        resample_to_grid(path, grid, valid)
    assert "does not overlap" not in str(e.value)


def test_raster_outside_the_grid_still_says_so(tmp_path):
    grid, valid = small_grid()
    path = write_raster(tmp_path / "europe.tif", [varying()], crs="EPSG:4326", transform=from_origin(5, 50, 0.1, 0.1))
    with pytest.raises(InputError, match="does not overlap"):
        resample_to_grid(path, grid, valid)


# -- records CSVs: byte-order mark, column spellings, named columns -------------------------------
def test_records_csv_with_a_byte_order_mark_is_read(tmp_path):
    (x, y), = inside_points(1)
    csv = tmp_path / "bom.csv"
    csv.write_bytes("\ufefflatitude,longitude,commod1\n{},{},Gold\n".format(y, x).encode("utf-8"))
    recs = read_records(csv)
    assert len(recs) == 1 and recs.counts()["Au"] == 1


def test_third_party_column_spellings_are_recognised(tmp_path):
    (x, y), = inside_points(1)
    csv = tmp_path / "critical_minerals.csv"
    csv.write_text(f'Site Name,Longitude,Latitude,Commodity,Source\nBig Mine,{x},{y},"Gold, Silver",usmin\n')
    recs = read_records(csv)
    assert recs.counts()["Au"] == 1 and recs.counts()["Ag"] == 1
    assert recs.names == ["Big Mine"] and recs.datasets == ["usmin"]


def test_records_columns_named_by_the_user(tmp_path, capsys):
    from core.data.records import RecordColumns

    pts = inside_points(2)
    csv = tmp_path / "odd.csv"
    csv.write_text("E,N,Metals,From\n" + "".join(f"{x},{y},Au;Cu,survey{i}\n" for i, (x, y) in enumerate(pts)))
    with pytest.raises(InputError, match="--lon-column.*Found: E, N, Metals, From"):
        read_records(csv)
    recs = read_records(csv, columns=RecordColumns(lon="E", lat="N", commodity="Metals", source="From"))
    assert recs.counts()["Cu"] == 2 and recs.datasets == ["survey0", "survey1"]
    with pytest.raises(InputError, match="--lon-column 'Easting' is not a column"):
        read_records(csv, columns=RecordColumns(lon="Easting", lat="N", commodity="Metals"))
    assert build_cli(tmp_path, csv, "--lon-column", "E", "--lat-column", "N", "--commodity-column", "Metals",
                     "--source-column", "From") == 0
    assert "presence cells per species: Au 2" in capsys.readouterr().out


# -- clusters: the stack must be the prediction's ------------------------------------------------
def card_for(stack) -> ModelCard:
    cfg = ModelConfig(arch="unet", in_channels=2 * len(stack.species) + len(stack.aux_bands),
                      classes=len(stack.species), encoder_depth=18)
    return ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"crs": stack.grid.crs.to_string(), "resolution": stack.grid.resolution},
                     tile_size=32, model=cfg.to_dict(), threshold=0.4,
                     masking={"scenarios": {"region": 1.0, "species": 1.0, "both": 1.0}, "species_k": [1, 1],
                              "region_fraction": 0.5, "region_shape": "mixed", "blob_scale": 8})


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """A stack, a model for it and the stack's prediction (every cell; nothing hidden)."""
    from core.inference.infer import infill

    d = tmp_path_factory.mktemp("pred")
    stack = synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5)
    stack_path = stack.write(d / "stack.tif")
    torch.manual_seed(0)
    model = save_model(d / "m.safetensors", build_model(card_for(stack).model_config), card_for(stack))
    pred = d / "pred.tif"
    infill(stack_path, [model], device="cpu", out=pred, window=64, overlap=16)
    return stack, stack_path, model, pred


def clusters(pred: Path, stack_path: Path, out: Path) -> int:
    return cli_main(["clusters", "--prediction", str(pred), "--stack", str(stack_path), "--threshold", "0.99",
                     "--out", str(out)])


def test_clusters_accepts_the_prediction_s_own_stack(predicted, tmp_path):
    _, stack_path, _, pred = predicted
    assert clusters(pred, stack_path, tmp_path / "c.gpkg") == 0


def test_clusters_refuses_a_stack_with_other_records(predicted, tmp_path, capsys):
    stack, _, _, pred = predicted
    other = replace(stack, presence=np.zeros_like(stack.presence))
    other.info = {**stack.info, "presence_counts": other.presence_counts()}
    path = other.write(tmp_path / "other_records.tif")
    assert clusters(pred, path, tmp_path / "c.gpkg") == 2
    assert "made from another stack than other_records.tif" in capsys.readouterr().err
    assert not (tmp_path / "c.gpkg").exists()


def test_clusters_refuses_a_stack_with_other_species(predicted, tmp_path, capsys):
    stack, _, _, pred = predicted
    other = replace(stack, species=["Au", "Cu"])
    path = other.write(tmp_path / "other_species.tif")
    assert clusters(pred, path, tmp_path / "c.gpkg") == 2
    assert "Ag that other_species.tif lacks" in capsys.readouterr().err


def test_clusters_refuses_a_stack_on_another_grid(predicted, tmp_path, capsys):
    _, _, _, pred = predicted
    path = synthetic_stack(48, 64, n_species=2, n_aux=1, seed=5).write(tmp_path / "other_grid.tif")
    assert clusters(pred, path, tmp_path / "c.gpkg") == 2
    assert "different grids" in capsys.readouterr().err


# -- predict: the stack's aux normalisation must be the model's ----------------------------------
def test_predict_refuses_a_stack_normalised_with_other_statistics(predicted, tmp_path, capsys):
    from core.inference.infer import infill

    stack, _, model, _ = predicted
    regional = replace(stack, aux_bands=[AuxBand(b.name, b.mean + 0.8, b.std * 0.5, b.units, b.source)
                                         for b in stack.aux_bands])
    path = regional.write(tmp_path / "regional.tif")
    with pytest.raises(ModelMismatchError, match="z-scored with other statistics.*aux0.*another outline"):
        infill(path, [model], device="cpu", window=64, overlap=16)
    rc = cli_main(["predict", "--stack", str(path), "--models", str(model), "--device", "cpu", "--window", "64",
                   "--overlap", "16", "--out", str(tmp_path / "p.tif")])
    assert rc == 2 and "z-scored with other statistics" in capsys.readouterr().err
    assert not (tmp_path / "p.tif").exists()


def test_predict_accepts_statistics_equal_up_to_rounding(predicted):
    from core.inference.infer import infill

    stack, _, model, _ = predicted
    same = replace(stack, aux_bands=[AuxBand(b.name, b.mean + 1e-7, b.std * (1 + 1e-7), b.units, b.source)
                                     for b in stack.aux_bands])
    assert infill(same, [model], device="cpu", window=64, overlap=16).mean is not None


# -- training on too little data -----------------------------------------------------------------
def test_training_whose_validation_holds_no_record_warns_and_says_so_in_the_card(tmp_path):
    from core.model.model_file import read_card
    from core.masks.tiles import VAL, HoldoutSplit
    from core.training.train import TrainConfig, train

    stack = synthetic_stack(64, 64, n_species=4, n_aux=1, seed=5)
    split = HoldoutSplit(block_size=32, seed=1)
    stack.presence[:, split.cell_labels(stack.valid) == VAL] = 0  # no record in the validation blocks
    cfg = TrainConfig(steps=1, tiles=8, tile_size=32, batch_size=2, holdout=split, val_every=0, val_tiles=4,
                      checkpoint_every=0, model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    out = tmp_path / "tiny.safetensors"
    with pytest.warns(UserWarning, match=r"threshold \(0.5\) and validation scores are not measured.*no hidden record"):
        train(stack, cfg, out, device="cpu", log=lambda s: None)
    assert "not measured" in read_card(out).metrics["validation"]["warning"]


def test_validation_problem_names_a_stack_without_validation_tiles():
    from core.training.train import validation_problem

    assert "no validation tile" in validation_problem({"threshold": 0.5, "thresholds": {}, "scenarios": {}, "tiles": 0})
    ok = {"threshold": 0.3, "tiles": 8, "scenarios": {"region": {"overall": {"positives": 50}}}}
    assert validation_problem(ok) == ""
    few = {"threshold": 0.0, "tiles": 1, "scenarios": {"region": {"overall": {"positives": 3}}}}
    assert "rest on 1 validation tile(s) holding 3 hidden record cell(s)" in validation_problem(few)


def test_map_layer_points_naming_no_species_are_counted_too():
    from core.inference.layer_inputs import PointRecords, catalog_for, records_from_points

    pts = PointRecords(np.array([-120.0, -119.0, -118.0]), np.array([38.0, 38.5, 39.0]),
                       ["Gold-Silver", "Clay", "Clay"], ["a", "b", "c"])
    recs = records_from_points(pts, catalog_for(["Au", "Ag"]))
    assert len(recs) == 1 and recs.skipped_no_species == 2 and recs.unmatched_spellings == {"Clay": 2}
    assert "'Clay' (2)" in recs.unmatched_note()
