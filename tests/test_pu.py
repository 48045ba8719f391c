"""Positive-unlabeled learning with two M3 instances (core.model.pu): the instances combine as
documented, the observation instance learns a known survey coverage and sees nothing hidden,
and a PU model file round-trips and runs in predict like any other model."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.data.stack import Stack
from core.data.synthetic import synthetic_stack
from core.errors import InputError
from core.inference.infer import infill, load_members
from core.masks.hiding import HideSpec
from core.masks.tiles import HoldoutSplit
from core.model.inputs import model_inputs
from core.model.model_file import load_model, save_model
from core.model.models import ModelConfig, build_model
from core.model.pu import PUModel, record_logits
from core.training.presets import PU_LOSS
from core.training.train import TrainConfig, Trainer, train

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [2, 6]}
PU_SMALL = {"sigmas": [2, 8], "encoder_depth": 3, "decoder_channels": [16, 8, 8], "target_group": 1.0}


def covered_half_stack(seed: int = 0) -> tuple[Stack, np.ndarray]:
    """A stack whose minerals follow aux band 0 everywhere but whose records were made only in the
    western half (the survey's coverage); returns it and the true presence."""
    base = synthetic_stack(128, 128, n_species=3, n_aux=2, seed=seed)
    rng = np.random.default_rng(seed)
    favourable = base.aux[0] > 0.3
    truth = np.stack([(rng.random(base.valid.shape) < (0.35 if favourable.any() else 0)) & favourable & base.valid
                      for _ in base.species]).astype(np.uint8)
    west = np.zeros(base.valid.shape, bool)
    west[:, :64] = True
    records = (truth & west).astype(np.uint8)
    return Stack(base.grid, base.species, records, base.aux_bands, base.aux, base.valid, {"source": "pu test"}), truth


def _tiny_pu_config(steps: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(seed=seed, steps=steps, tiles=200, tile_size=32, batch_size=8, lr=3e-3, warmup_steps=5,
                       holdout=HoldoutSplit(block_size=32, val_fraction=0.0, test_fraction=0.0, seed=1),
                       val_every=0, checkpoint_every=1000, require_record=False,
                       model_options=dict(SMALL, pu=PU_SMALL)).with_overrides(PU_LOSS)


@pytest.fixture(scope="module")
def trained_on_half():
    stack, truth = covered_half_stack()
    torch.manual_seed(0)
    trainer = Trainer(stack, _tiny_pu_config(steps=60), torch.device("cpu"))
    for _ in range(60):
        trainer.train_step()
    return trainer.model.eval(), stack, truth


def test_instances_combine_as_presence_times_observation(trained_on_half):
    model, stack, _ = trained_on_half
    assert isinstance(model, PUModel)
    presence = torch.from_numpy(stack.presence)[None]
    hidden = torch.zeros_like(presence, dtype=torch.bool)
    hidden[:, 0, 40:90, 40:90] = True
    x = model_inputs(presence, hidden, torch.from_numpy(stack.aux)[None], torch.from_numpy(stack.valid)[None])
    with torch.no_grad():
        a, b = model.both(x)
        out = model(x)
        product = model.record_probability(x)
        trained_on = torch.sigmoid(record_logits(a, b))    # what the trainer's loss sees
    assert torch.equal(out, a)                                # the model's output is the presence instance's
    assert b.shape == (1, 1, 128, 128)                        # one observation map shared by the species
    expected = torch.sigmoid(a) * torch.sigmoid(b)
    assert torch.allclose(product, expected, rtol=0, atol=1e-7)
    assert torch.allclose(trained_on, expected, rtol=1e-5, atol=1e-6)
    assert (product <= torch.sigmoid(a) + 1e-7).all() and float((torch.sigmoid(a) - product).max()) > 0.05
    model.output = "record"                                   # predict --record
    try:
        with torch.no_grad():
            record = torch.sigmoid(model(x))
    finally:
        model.output = "presence"
    assert torch.allclose(record, expected, rtol=1e-5, atol=1e-6)


def test_observation_map_is_higher_where_the_survey_looked(trained_on_half):
    model, stack, _ = trained_on_half
    presence = torch.from_numpy(stack.presence)[None]
    valid = torch.from_numpy(stack.valid)
    hidden = torch.zeros_like(presence, dtype=torch.bool)
    x = model_inputs(presence, hidden, torch.from_numpy(stack.aux)[None], valid[None])
    with torch.no_grad():
        obs = torch.sigmoid(model.observation(x))[0, 0]
    west, east = valid.clone(), valid.clone()
    west[:, 48:] = False                                       # away from the edge of the coverage
    east[:, :80] = False
    w, e = float(obs[west].mean()), float(obs[east].mean())
    assert w > 2 * e and w - e > 0.05, (w, e)


def test_observation_input_sees_no_hidden_record_and_no_aux():
    torch.manual_seed(3)
    s, a = 3, 2
    model = build_model(ModelConfig("unet", 2 * s + a, s, 18, dict(SMALL, pu=PU_SMALL))).eval()
    presence = (torch.rand(2, s, 64, 64) < 0.05).to(torch.uint8)
    hidden = torch.zeros(2, s, 64, 64, dtype=torch.bool)
    hidden[:, :, 10:40, 20:50] = True                          # a region, every species
    hidden[:, 1] = True                                        # and a whole species
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    aux = torch.randn(2, a, 64, 64)
    other = presence.clone()
    other[hidden] = 1 - other[hidden]                          # every hidden record changed
    x1 = model_inputs(presence, hidden, aux, valid)
    x2 = model_inputs(other, hidden, torch.randn(2, a, 64, 64), valid)   # and other aux bands
    with torch.no_grad():
        assert torch.equal(model.observation.coverage(x1), model.observation.coverage(x2))
        assert torch.equal(model.observation(x1), model.observation(x2))
        shown = presence.clone()
        shown[:, 0, 5, 5] = 1 - shown[:, 0, 5, 5]              # a visible record changed: it does see those
        x3 = model_inputs(shown, hidden, aux, valid)
        assert not torch.equal(model.observation.coverage(x1), model.observation.coverage(x3))


@pytest.fixture(scope="module")
def pu_model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pu")
    stack, _ = covered_half_stack(seed=2)
    path = folder / "stack.tif"
    stack.write(path)
    cfg = _tiny_pu_config(steps=3).with_overrides({"holdout.val_fraction": 0.25, "val_tiles": 4})
    out = folder / "pu.safetensors"
    with warnings.catch_warnings():  # its validation tiles may hold no record: not what is tested here
        warnings.simplefilter("ignore")
        train(stack, cfg, out, device="cpu", log=lambda s: None)
    return out, path, stack


def test_pu_model_file_round_trips(pu_model_file, tmp_path):
    out, _, stack = pu_model_file
    model, card = load_model(out)
    assert isinstance(model, PUModel)
    card_json = json.loads(out.with_suffix(".json").read_text())
    assert card_json["model"]["options"]["pu"] == PU_SMALL
    described = card_json["data"]["pu"]
    assert "presence" in described["scheme"] and "no aux" in described["observation_instance"]
    assert described["loss"].startswith("1 BCE on hidden cells")      # Dice and recall off (PU_LOSS)
    stored = load_file(str(out))
    assert any(k.startswith("observation.") for k in stored) and any(k.startswith("presence.") for k in stored)
    again = tmp_path / "again.safetensors"
    save_model(again, model, card)
    reloaded, _ = load_model(again)
    x = torch.randn(1, 2 * 3 + 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded.record_probability(x), model.record_probability(x))


def _direct(model, stack, hidden_species: int, output: str) -> np.ndarray:
    presence = torch.from_numpy(stack.presence)[None]
    hidden = torch.zeros_like(presence, dtype=torch.bool)
    hidden[:, hidden_species] = True
    x = model_inputs(presence, hidden, torch.from_numpy(stack.aux)[None], torch.from_numpy(stack.valid)[None])
    model.output = output
    with torch.no_grad():
        p = torch.sigmoid(model(x))[0, hidden_species].numpy()
    model.output = "presence"
    return p


def test_predict_writes_presence_and_observation_on_request(pu_model_file, tmp_path):
    out, stack_path, stack = pu_model_file
    model, _ = load_model(out)
    hide = HideSpec(("Au",))
    presence = infill(stack, [out], hide, device="cpu", window=128).mean[0]
    observation = infill(stack, [out], hide, device="cpu", window=128, output="observation").mean[0]
    v = stack.valid
    assert np.allclose(presence[v], _direct(model, stack, 0, "presence")[v], atol=1e-4)
    assert np.allclose(observation[v], _direct(model, stack, 0, "observation")[v], atol=1e-4)
    assert not np.allclose(presence[v], observation[v], atol=1e-3)
    record = infill(stack, [out], hide, device="cpu", window=128, output="record").mean[0]
    assert np.allclose(record[v], _direct(model, stack, 0, "record")[v], atol=1e-4)
    assert np.allclose(record[v], presence[v] * observation[v], atol=1e-4)   # one draw: the product

    tif = tmp_path / "obs.tif"
    run = subprocess.run([sys.executable, str(ROOT / "train_cli.py"), "predict", "--stack", str(stack_path),
                          "--models", str(out), "--hide-species", "Au", "--observation", "--out", str(tif),
                          "--device", "cpu", "--no-quicklook"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    from core.data.prediction_io import read_band, read_prediction_info

    _, species, meta = read_prediction_info(tif)
    assert species == ["Au"] and meta["output"] == "observation"
    assert np.allclose(read_band(tif, "mean_Au")[v], observation[v], atol=1e-4)

    from script_support import load_script

    figure = load_script("docs/results/discovery/positive_unlabeled/observation_map.py")
    png = figure.observation_map(tif, tmp_path / "obs.png", stack_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    presence_tif = tmp_path / "presence.tif"
    infill(stack, [out], hide, device="cpu", window=128, out=presence_tif)
    with pytest.raises(InputError, match="not an observation map"):
        figure.observation_map(presence_tif, tmp_path / "no.png")


def test_loaded_members_map_only_the_output_they_were_loaded_for(pu_model_file):
    out, _, stack = pu_model_file
    hide = HideSpec(("Au",))
    members = load_members([out], torch.device("cpu"), output="observation")
    from_members = infill(stack, members, hide, device="cpu", window=128, output="observation").mean[0]
    from_file = infill(stack, [out], hide, device="cpu", window=128, output="observation").mean[0]
    np.testing.assert_allclose(from_members[stack.valid], from_file[stack.valid], atol=1e-6)
    with pytest.raises(ValueError, match="loaded for output"):
        infill(stack, members, hide, device="cpu", window=128)          # presence asked of observation members


def test_observation_of_a_model_without_pu_is_refused(pu_model_file, tmp_path):
    out, _, stack = pu_model_file
    model, card = load_model(out)
    card.model = dict(card.model, options={k: v for k, v in card.model["options"].items() if k != "pu"})
    plain = tmp_path / "plain.safetensors"
    save_model(plain, model.presence, card)                     # the presence instance alone: a plain model
    with pytest.raises(InputError, match="not a PU model"):
        infill(stack, [plain], HideSpec(("Au",)), device="cpu", output="observation")


def test_cli_pu_flag_and_preset():
    from core.cli import parser
    from core.commands.train import config_from_args
    from core.training.presets import PRESETS

    cfg = config_from_args(parser().parse_args(["train", "--out", "m.safetensors", "--pu"]))
    assert cfg.model_options["pu"] is True and cfg.model_options["context_sigmas"] == [2, 6]
    assert (cfg.loss.bce, cfg.loss.dice, cfg.loss.recall) == (1.0, 0.0, 0.0)
    given = config_from_args(parser().parse_args(["train", "--out", "m.safetensors", "--pu", "--loss-dice", "0.5"]))
    assert (given.loss.dice, given.loss.recall) == (0.5, 0.0)
    assert PRESETS["quick_pu"]["model_options"]["pu"] is True
    quick = {k: v for k, v in PRESETS["quick"].items() if k != "model_options"}
    assert {k: v for k, v in PRESETS["quick_pu"].items() if k != "model_options"} == dict(quick, **PU_LOSS)
