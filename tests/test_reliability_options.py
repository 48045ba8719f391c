"""Numbers, cards and stacks are checked where they come in: a numeric option that is not a finite
number in range, a model card field of the wrong type, a cut-short stack, a checkpoint of another
stack are refused with a message (never a traceback), and a training job that trains no step or
whose threshold rests on too little says so.

Every file is small and made here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.cli import main as cli_main
from core.data.synthetic import synthetic_stack
from core.errors import InputError
from core.model.model_file import read_card, save_model
from core.model.models import build_model
from tests.test_file_safety import card_for, small_inputs, build_stack_cli  # noqa: F401 — fixture
from tests.test_input_checks import build_cli, inside_points


def cli_exit(argv: list[str], capsys) -> tuple[int, str]:
    """The exit status and stderr of a command line refused by its parser (or run to the end)."""
    try:
        rc = cli_main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory) -> Path:
    return synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5).write(tmp_path_factory.mktemp("stack") / "s.tif")


def train_args(stack: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--stack", str(stack), "--out", str(out), "--tiles", "2", "--tile-size", "32",
            "--batch-size", "2", "--val-every", "0", "--device", "cpu", "--mask-species-k", "1", "1", *extra]


# -- numeric options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, words", [
    ("--steps", "0", "--steps: must be a whole number >= 1, not '0'"),
    ("--steps", "-5", "--steps: must be a whole number >= 1"),
    ("--lr", "nan", "--lr: must be a finite number > 0, not 'nan'"),
    ("--lr", "inf", "--lr: must be a finite number > 0"),
    ("--aux-dropout", "1", "--aux-dropout: must be a finite number >= 0 and < 1"),
    ("--val-fraction", "-0.1", "--val-fraction"),
])
def test_train_refuses_numbers_out_of_range(stack_file, tmp_path, capsys, option, value, words):
    out = tmp_path / "m.safetensors"
    rc, err = cli_exit(train_args(stack_file, out, option, value), capsys)
    assert rc == 2 and words in err
    assert not out.exists()


def test_train_api_refuses_zero_steps(tmp_path):
    from core.training.train import TrainConfig, train

    with pytest.raises(InputError, match="at least one step"):
        train(synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5), TrainConfig(steps=0), tmp_path / "m.safetensors",
              device="cpu", log=lambda s: None)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("value", ["nan", "-2000", "0", "inf"])
def test_build_stack_refuses_a_resolution_that_is_not_a_cell_size(small_inputs, tmp_path, capsys, value):  # noqa: F811
    rc, err = cli_exit(["build-stack", "--out", str(tmp_path / "s.tif"), "--records", str(small_inputs["records"]),
                        "--resolution", value], capsys)
    assert rc == 2 and "--resolution: must be a finite number > 0" in err


@pytest.mark.parametrize("option, value", [("--overlap", "-16"), ("--window", "0"), ("--draws", "0"),
                                           ("--batch-size", "-1"), ("--hide-bounds", "nan")])
def test_predict_refuses_numbers_out_of_range(stack_file, tmp_path, capsys, option, value):
    values = [value, "0", "1", "1"] if option == "--hide-bounds" else [value]
    rc, err = cli_exit(["predict", "--stack", str(stack_file), "--out", str(tmp_path / "p.tif"), option, *values],
                       capsys)
    assert rc == 2 and f"{option}: must be" in err


# -- model cards ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    stack = synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5)
    card = card_for(stack)
    card.model.update(arch="none", options={"context_sigmas": [2]})
    torch.manual_seed(0)
    return save_model(tmp_path_factory.mktemp("model") / "m.safetensors", build_model(card.model_config), card)


def tampered(model_file: Path, tmp_path: Path, edit) -> Path:
    weights = tmp_path / "t.safetensors"
    weights.write_bytes(model_file.read_bytes())
    card = json.loads(model_file.with_suffix(".json").read_text())
    edit(card)
    weights.with_suffix(".json").write_text(json.dumps(card))
    return weights


def _drop_mean(card: dict) -> None:
    del card["aux_bands"][0]["mean"]


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["grid"].update(resolution="4km"), "grid.resolution must be a cell size"),
    (_drop_mean, "aux band aux0: mean must be a finite number, not None"),
    (lambda c: c["aux_bands"][0].update(std="big"), "aux band aux0: std must be a finite positive number, not 'big'"),
    (lambda c: c["aux_bands"][0].update(std=0), "std must be a finite positive number, not 0"),
    (lambda c: c["masking"].update(species_k="x"), "masking is not a valid masking configuration"),
    (lambda c: c["masking"].update(region_fraction="half"), "masking is not a valid masking configuration"),
    (lambda c: c["metrics"].update(validation={"thresholds": {"region": "high"}}), "metrics.validation.thresholds"),
    (lambda c: c["training"].update(aux_dropout="x"), "training.aux_dropout must be a number"),
])
def test_card_fields_of_the_wrong_type_are_refused(model_file, tmp_path, edit, words):
    with pytest.raises(InputError, match=words):
        read_card(tampered(model_file, tmp_path, edit))


def test_predict_with_a_card_of_the_wrong_type_is_a_message(model_file, stack_file, tmp_path, capsys):
    weights = tampered(model_file, tmp_path, lambda c: c["grid"].update(resolution="4km"))
    rc, err = cli_exit(["predict", "--stack", str(stack_file), "--models", str(weights), "--device", "cpu",
                        "--out", str(tmp_path / "p.tif"), "--no-quicklook"], capsys)
    assert rc == 2 and "grid.resolution" in err and "t.json" in err


def test_a_card_with_fields_of_a_newer_version_is_read(model_file, tmp_path):
    weights = tampered(model_file, tmp_path, lambda c: c.update(provenance={"by": "a later version"}))
    assert read_card(weights).species == read_card(model_file).species


def test_a_card_that_is_not_an_object_is_refused(model_file, tmp_path):
    weights = tmp_path / "t.safetensors"
    weights.write_bytes(model_file.read_bytes())
    weights.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a valid M3 card"):
        read_card(weights)


# -- stacks -----------------------------------------------------------------------------------------------
def test_a_truncated_stack_is_a_message(stack_file, model_file, tmp_path, capsys):
    cut = tmp_path / "cut.tif"
    data = stack_file.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    rc, err = cli_exit(train_args(cut, tmp_path / "m.safetensors", "--steps", "1"), capsys)
    assert rc == 2 and "cut short or damaged" in err
    rc, err = cli_exit(["predict", "--stack", str(cut), "--models", str(model_file), "--out", str(tmp_path / "p.tif"),
                        "--device", "cpu", "--no-quicklook"], capsys)
    assert rc == 2 and "cut short or damaged" in err


def test_a_stack_whose_tag_is_damaged_is_a_message(stack_file, tmp_path, capsys):
    import rasterio

    broken = tmp_path / "b.tif"
    broken.write_bytes(stack_file.read_bytes())
    with rasterio.open(broken, "r+") as dst:
        dst.update_tags(M3_STACK=json.dumps({"species": ["Au"], "aux_bands": [{"name": "a", "std": 1}]}))
    rc, err = cli_exit(train_args(broken, tmp_path / "m.safetensors", "--steps", "1"), capsys)
    assert rc == 2 and "tag is damaged" in err


def test_point_samples_with_swapped_coordinates_are_a_message(tmp_path, capsys):
    pts = inside_points(6)
    soil = tmp_path / "soil.csv"
    soil.write_text("lon,lat,Cu_mgkg\n" + "".join(f"{y},{x},{10 + i}\n" for i, (x, y) in enumerate(pts)))
    records = tmp_path / "r.csv"
    records.write_text("lon,lat,commodities\n%s,%s,Gold\n" % pts[0])
    assert build_cli(tmp_path, records, "--points", f"{soil}::fields=Cu_mgkg::prefix=soil", "--species", "Au") == 2
    err = capsys.readouterr().err
    assert "out of range for WGS84 degrees" in err and "swapped" in err


# -- training: resume and validation ----------------------------------------------------------------------
def test_resume_on_another_stack_is_refused(stack_file, tmp_path, capsys):
    out, ckpt = tmp_path / "m.safetensors", tmp_path / "ckpt"
    common = ["--checkpoint-dir", str(ckpt), "--checkpoint-every", "1", "--model-option", "context_sigmas=[2]",
              "--arch", "none"]
    assert cli_main(train_args(stack_file, out, "--steps", "2", *common)) == 0
    other = synthetic_stack(64, 64, n_species=2, n_aux=1, seed=6)
    other.info = {"records": "other_records.csv"}
    other_file = other.write(tmp_path / "other.tif")
    capsys.readouterr()
    rc, err = cli_exit(train_args(other_file, out, "--steps", "2", "--resume", *common), capsys)
    assert rc == 2 and "made on another stack" in err and "other_records.csv" in err
    assert cli_main(train_args(stack_file, out, "--steps", "2", "--resume", *common)) == 0
    assert "resumed from" in capsys.readouterr().out


def test_a_threshold_chosen_on_one_validation_tile_is_flagged(tmp_path):
    from core.masks.tiles import HoldoutSplit
    from core.training.train import TrainConfig, train

    stack = synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5)
    cfg = TrainConfig(steps=1, tiles=4, tile_size=32, batch_size=2, val_every=0, checkpoint_every=0,
                      holdout=HoldoutSplit(block_size=32, val_fraction=0.25, test_fraction=0.25, seed=1),
                      arch="none", model_options={"context_sigmas": [2]}, require_record=False)
    cfg.mask.species_k = (1, 1)
    with pytest.warns(UserWarning, match=r"rest on 1 validation tile\(s\)|not measured"):
        train(stack, cfg, tmp_path / "m.safetensors", device="cpu", log=lambda s: None)
    assert read_card(tmp_path / "m.safetensors").metrics["validation"]["warning"]
