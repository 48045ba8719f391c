"""Never lose a user's file, never show a traceback.

An output that is an input (or another output) is refused before any work; every output is
checked for writability up front; stale partial files of killed runs are cleaned; bad CRSs,
grids too large for memory, bad model cards and mismatched weights get clear messages.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from core.cli import main as cli_main
from core.errors import InputError, M3Error
from core.model.model_file import ModelCard, card_path, load_model, read_card, save_model
from core.model.models import ModelConfig, build_model
from core.data.synthetic import synthetic_stack

ROOT = Path(__file__).resolve().parents[1]
S, A = 2, 1


# -- small inputs made here ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(64, 64, n_species=S, n_aux=A, seed=5)


def card_for(stack, **changes) -> ModelCard:
    cfg = ModelConfig(arch="unet", in_channels=2 * len(stack.species) + len(stack.aux_bands),
                      classes=len(stack.species), encoder_depth=18)
    card = ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"crs": stack.grid.crs.to_string(), "resolution": stack.grid.resolution},
                     tile_size=32, model=cfg.to_dict(), threshold=0.4,
                     masking={"scenarios": {"region": 1.0, "species": 1.0, "both": 1.0}, "species_k": [1, 1],
                              "region_fraction": 0.5, "region_shape": "mixed", "blob_scale": 8})
    for k, v in changes.items():
        setattr(card, k, v)
    return card


@pytest.fixture(scope="module")
def model_file(stack, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    card = card_for(stack)
    return save_model(tmp_path_factory.mktemp("models") / "m.safetensors", build_model(card.model_config), card)


@pytest.fixture
def stack_file(stack, tmp_path) -> Path:
    return stack.write(tmp_path / "stack.tif")


def predict(stack_file: Path, model_file: Path, *extra: str) -> int:
    return cli_main(["predict", "--stack", str(stack_file), "--models", str(model_file), "--device", "cpu",
                     "--window", "64", "--overlap", "16", *map(str, extra)])


def fingerprint(path: Path) -> bytes:
    return path.read_bytes()


def write_outline(path: Path) -> Path:
    """A 20 x 20 km square in EPSG:5070 (GeoJSON)."""
    x0, y0 = -2_000_000.0, 1_900_000.0
    ring = [[x0, y0], [x0 + 20_000, y0], [x0 + 20_000, y0 + 20_000], [x0, y0 + 20_000], [x0, y0]]
    path.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:5070"}},
        "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return path


def write_records(path: Path) -> Path:
    from rasterio.warp import transform

    lon, lat = transform("EPSG:5070", "EPSG:4326", [-1_990_000.0], [1_910_000.0])
    path.write_text(f"longitude,latitude,commodities\n{lon[0]},{lat[0]},Gold\n")
    return path


def write_raster(path: Path) -> Path:
    data = np.arange(30 * 30, dtype=np.float32).reshape(30, 30)
    with rasterio.open(path, "w", driver="GTiff", width=30, height=30, count=1, dtype="float32", crs="EPSG:5070",
                       transform=from_origin(-2_005_000.0, 1_925_000.0, 1000.0, 1000.0)) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture
def small_inputs(tmp_path) -> dict[str, Path]:
    return {"outline": write_outline(tmp_path / "outline.geojson"), "records": write_records(tmp_path / "recs.csv"),
            "aux": write_raster(tmp_path / "aux.tif")}


def build_stack_cli(inputs: dict[str, Path], out: Path, *extra: str) -> int:
    return cli_main(["build-stack", "--out", str(out), "--records", str(inputs["records"]),
                     "--aux", str(inputs["aux"]), "--outline", str(inputs["outline"]), "--faults", "none",
                     "--points", "none", "--categories", "none", "--line-attribute", "none",
                     "--resolution", "2000", "--species", "Au", *map(str, extra)])


def read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` look read-only to the writability checks (tests may run as root)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(os.path.realpath(path)) == Path(os.path.realpath(folder)):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


# -- data loss -----------------------------------------------------------------------------------
def test_predict_out_equal_to_the_stack_is_refused(stack_file, model_file, capsys):
    before = fingerprint(stack_file)
    assert predict(stack_file, model_file, "--out", stack_file, "--no-quicklook") == 2
    assert "--stack" in capsys.readouterr().err
    assert fingerprint(stack_file) == before


def test_predict_out_through_another_spelling_of_the_stack_is_refused(stack_file, model_file, tmp_path):
    before = fingerprint(stack_file)
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.tif"
    link.symlink_to(stack_file)
    assert predict(stack_file, model_file, "--out", tmp_path / "sub" / ".." / "link.tif", "--no-quicklook") == 2
    assert fingerprint(stack_file) == before


def test_predict_png_output_is_not_overwritten_by_its_quicklook(stack_file, model_file, tmp_path, capsys):
    out = tmp_path / "pred.png"
    assert predict(stack_file, model_file, "--out", out) == 2
    assert "--quicklook" in capsys.readouterr().err
    assert not out.exists()


def test_quicklook_equal_to_the_stack_is_refused(stack_file, model_file, tmp_path):
    before = fingerprint(stack_file)
    out = tmp_path / "pred.tif"
    assert predict(stack_file, model_file, "--out", out, "--quicklook", stack_file) == 2
    assert fingerprint(stack_file) == before
    assert not out.exists()


def test_infill_api_refuses_to_write_over_its_stack(stack_file, model_file):
    """The Processing algorithm and the dock call infill() directly: it checks too."""
    from core.inference.infer import infill

    before = fingerprint(stack_file)
    with pytest.raises(InputError, match="stack"):
        infill(stack_file, [model_file], device="cpu", out=stack_file)
    assert fingerprint(stack_file) == before


@pytest.mark.parametrize("which", ["records", "aux", "outline"])
def test_build_stack_out_equal_to_an_input_is_refused(small_inputs, which, capsys):
    target = small_inputs[which]
    before = fingerprint(target)
    assert build_stack_cli(small_inputs, target) == 2
    assert str(target.name) in capsys.readouterr().err
    assert fingerprint(target) == before


def test_build_stack_api_refuses_to_write_over_an_input(small_inputs):
    from core.data.build_stack import build_stack

    before = fingerprint(small_inputs["aux"])
    with pytest.raises(InputError, match="aux"):
        build_stack(small_inputs["aux"], records=small_inputs["records"], aux_rasters=[small_inputs["aux"]],
                    faults=None, outline=small_inputs["outline"], resolution=2000, point_samples=(),
                    categorical_polygons=(), line_attributes=())
    assert fingerprint(small_inputs["aux"]) == before


def test_build_stack_small_inputs_still_work(small_inputs, tmp_path):
    assert build_stack_cli(small_inputs, tmp_path / "ok.tif") == 0
    assert (tmp_path / "ok.tif").exists()


KILLED_WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from core.atomic import atomic_path
with atomic_path({target!r}) as tmp:
    tmp.write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    time.sleep(60)
"""


def _partial_files(folder: Path, name: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(f".{name}.") and ".part" in p.name)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_partial_file_of_a_killed_run_is_cleaned_by_the_next_write(tmp_path, sig):
    from core.atomic import atomic_path

    target = tmp_path / "pred.tif"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(root=str(ROOT), target=str(target))],
                            stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.exists()
    proc.send_signal(sig)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert _partial_files(tmp_path, target.name) == [tmp]  # left behind by the killed run
    with atomic_path(target) as new:
        new.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert _partial_files(tmp_path, target.name) == []


def test_partial_file_of_a_running_writer_is_kept(tmp_path):
    from core.atomic import atomic_path

    target = tmp_path / "stack.tif"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(root=str(ROOT), target=str(target))],
                            stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(proc.stdout.readline().strip())
        with atomic_path(target) as new:
            new.write_bytes(b"done")
        assert tmp.exists()  # another process is still writing it
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_old_partial_files_without_a_pid_are_cleaned_only_when_old(tmp_path):
    from core.atomic import STALE_PARTIAL_AGE_S, atomic_path

    target = tmp_path / "stack.tif"
    old = tmp_path / ".stack.tif.abcd1234.part.tif"
    young = tmp_path / ".stack.tif.efgh5678.part.tif"
    other = tmp_path / ".other.tif.abcd1234.part.tif"
    for p in (old, young, other):
        p.write_bytes(b"x")
    past = time.time() - STALE_PARTIAL_AGE_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    with atomic_path(target) as new:
        new.write_bytes(b"done")
    assert not old.exists() and young.exists() and other.exists()


def test_predict_quicklook_into_a_read_only_folder_fails_before_the_geotiff(stack_file, model_file, tmp_path,
                                                                             monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    out = tmp_path / "pred.tif"
    assert predict(stack_file, model_file, "--out", out, "--quicklook", ro / "q.png") == 2
    assert "not writable" in capsys.readouterr().err
    assert not out.exists()


def test_predict_quicklook_into_a_missing_folder_fails_before_the_geotiff(stack_file, model_file, tmp_path):
    out = tmp_path / "pred.tif"
    assert predict(stack_file, model_file, "--out", out, "--quicklook", tmp_path / "nowhere" / "q.png") == 2
    assert not out.exists()


# -- messages instead of tracebacks ----------------------------------------------------------------
def test_build_stack_bad_crs_is_a_message(small_inputs, tmp_path, capsys):
    assert build_stack_cli(small_inputs, tmp_path / "s.tif", "--crs", "foo") == 2
    err = capsys.readouterr().err
    assert "foo" in err and "--crs" in err


def test_predict_bad_bounds_crs_is_a_message(stack_file, model_file, tmp_path, capsys):
    assert predict(stack_file, model_file, "--out", tmp_path / "p.tif", "--hide-bounds", "0", "0", "1", "1",
                   "--bounds-crs", "foo") == 2
    err = capsys.readouterr().err
    assert "foo" in err and "--bounds-crs" in err


def _tampered(model_file: Path, tmp_path: Path, edit) -> Path:
    weights = tmp_path / "t.safetensors"
    weights.write_bytes(model_file.read_bytes())
    card = json.loads(card_path(model_file).read_text())
    edit(card)
    card_path(weights).write_text(json.dumps(card))
    return weights


def test_card_with_unknown_architecture_names_the_file(model_file, tmp_path):
    weights = _tampered(model_file, tmp_path, lambda c: c["model"].update(arch="transformerXL"))
    with pytest.raises(InputError, match=r"t\.json.*transformerXL|transformerXL.*t\.json"):
        load_model(weights)


@pytest.fixture(scope="module")
def context_model_file(stack, tmp_path_factory) -> Path:
    """A U-Net with context features (as the presets train): its head's size follows the card."""
    torch.manual_seed(0)
    card = card_for(stack)
    card.model["options"] = {"context_sigmas": [2, 6]}
    return save_model(tmp_path_factory.mktemp("models") / "ctx.safetensors", build_model(card.model_config), card)


def _more_context(card: dict) -> None:
    card["model"]["options"]["context_sigmas"] = [2, 6, 12]


def test_card_whose_layer_sizes_do_not_fit_the_weights_names_the_file(context_model_file, tmp_path):
    weights = _tampered(context_model_file, tmp_path, _more_context)
    with pytest.raises(M3Error, match=r"t\.safetensors.*size") as e:
        load_model(weights)
    assert "t.json" in str(e.value)


def test_predict_with_a_mismatched_card_is_a_message(stack_file, context_model_file, tmp_path, capsys):
    weights = _tampered(context_model_file, tmp_path, _more_context)
    assert predict(stack_file, weights, "--out", tmp_path / "p.tif", "--no-quicklook") == 2
    assert "t.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(tile_size=0), "tile_size"),
    (lambda c: c.update(tile_size="64"), "tile_size"),
    (lambda c: c.update(threshold="high"), "threshold"),
    (lambda c: c.update(threshold=1.5), "threshold"),
    (lambda c: c["model"].update(options={"no_such_option": 3}), "no_such_option"),
    (lambda c: c["model"].update(in_channels=0), "in_channels"),
    (lambda c: c.update(species="Au"), "species"),
])
def test_bad_cards_are_refused_on_load(model_file, tmp_path, edit, words):
    weights = _tampered(model_file, tmp_path, edit)
    with pytest.raises(InputError, match=words) as e:
        read_card(weights)
    assert "t.json" in str(e.value)


def test_train_checkpoint_dir_in_a_read_only_folder_is_a_message(stack_file, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    out = tmp_path / "m.safetensors"
    rc = cli_main(["train", "--stack", str(stack_file), "--out", str(out), "--checkpoint-dir", str(ro / "ckpt"),
                   "--steps", "1", "--tiles", "2", "--tile-size", "32", "--batch-size", "2", "--val-every", "0",
                   "--device", "cpu"])
    assert rc == 2
    assert "not writable" in capsys.readouterr().err
    assert not out.exists()


def test_train_checkpoint_dir_under_a_file_is_a_message(stack_file, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "m.safetensors"
    rc = cli_main(["train", "--stack", str(stack_file), "--out", str(out), "--checkpoint-dir",
                   str(blocker / "ckpt"), "--steps", "1", "--tiles", "2", "--tile-size", "32", "--batch-size", "2",
                   "--val-every", "0", "--device", "cpu"])
    assert rc == 2
    assert "a_file" in capsys.readouterr().err


def test_grid_too_large_for_memory_is_refused_up_front(small_inputs, tmp_path, monkeypatch, capsys):
    import core.data.build_stack as bs

    monkeypatch.setattr(bs, "memory_limit_bytes", lambda: 10_000, raising=False)
    assert build_stack_cli(small_inputs, tmp_path / "s.tif", "--resolution", "200") == 2
    err = capsys.readouterr().err
    assert "--resolution" in err and "GiB" in err
    assert not (tmp_path / "s.tif").exists()


def test_conus_at_30_m_is_refused_without_allocating(tmp_path, capsys):
    from core.data import defaults

    t0 = time.perf_counter()
    rc = cli_main(["build-stack", "--out", str(tmp_path / "s.tif"), "--resolution", "30",
                   "--records", str(defaults.RECORDS)])
    assert rc == 2
    assert "--resolution" in capsys.readouterr().err
    assert time.perf_counter() - t0 < 60


# -- the other commands and the Processing algorithms use the same check ----------------------------
def test_clusters_out_equal_to_the_prediction_is_refused(stack_file, model_file, tmp_path, capsys):
    pred = tmp_path / "pred.gpkg"  # a prediction GeoTIFF given a .gpkg name
    assert predict(stack_file, model_file, "--out", pred, "--no-quicklook") == 0
    before = fingerprint(pred)
    capsys.readouterr()
    assert cli_main(["clusters", "--prediction", str(pred), "--stack", str(stack_file), "--out", str(pred)]) == 2
    assert "--prediction" in capsys.readouterr().err
    assert fingerprint(pred) == before


def test_evaluate_out_equal_to_a_model_card_is_refused(stack_file, model_file, tmp_path, capsys):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(model_file.read_bytes())
    card = card_path(weights)
    card.write_bytes(card_path(model_file).read_bytes())
    before = fingerprint(card)
    rc = cli_main(["evaluate", "--stack", str(stack_file), "--models", str(weights), "--out", str(card),
                   "--device", "cpu"])
    assert rc == 2 and fingerprint(card) == before


def test_train_unknown_model_option_is_a_message(stack_file, tmp_path, capsys):
    rc = cli_main(["train", "--stack", str(stack_file), "--out", str(tmp_path / "m.safetensors"),
                   "--model-option", "no_such_option=3", "--steps", "1", "--device", "cpu"])
    assert rc == 2
    assert "no_such_option" in capsys.readouterr().err


@pytest.fixture(scope="module")
def processing(qgis_app):
    from qgis.core import QgsApplication
    from processing.core.Processing import Processing

    from m3_plugin.processing_provider import M3ProcessingProvider

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    added = registry.providerById("m3") is None
    if added:
        assert registry.addProvider(M3ProcessingProvider())
    import processing as proc

    yield proc
    if added:
        registry.removeProvider(registry.providerById("m3"))


def test_processing_infill_refuses_to_write_over_its_stack(processing, stack_file, model_file):
    from qgis.core import QgsProcessingException

    before = fingerprint(stack_file)
    with pytest.raises(QgsProcessingException, match="stack"):
        processing.run("m3:infill", {"STACK": str(stack_file), "MODEL": str(model_file), "DEVICE": 0,
                                     "OUTPUT": str(stack_file)})
    assert fingerprint(stack_file) == before


def test_processing_build_stack_refuses_to_write_over_its_records(processing, small_inputs):
    from qgis.core import QgsProcessingException

    target = small_inputs["records"]
    before = fingerprint(target)
    with pytest.raises(QgsProcessingException, match="records"):
        processing.run("m3:buildstack", {"RECORDS": str(target), "AUX": [str(small_inputs["aux"])],
                                         "OUTLINE": str(small_inputs["outline"]), "CRS": "EPSG:5070",
                                         "RESOLUTION": 2000, "SPECIES": "Au", "OUTPUT": str(target)})
    assert fingerprint(target) == before
