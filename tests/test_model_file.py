"""Model files: safetensors + JSON card, round trip without pickle, clear mismatch errors."""
import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.training.checkpoint import load_checkpoint, save_checkpoint
from core.errors import ModelMismatchError
from core.data.grid import Grid
from core.model.model_file import ModelCard, load_model, save_model
from core.model.models import ModelConfig, build_model
from core.data.stack import AuxBand
from core.data.synthetic import synthetic_stack

SMALL = {"decoder_channels": [16, 16, 8, 8, 8]}


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(64, 64, n_species=3, n_aux=2, seed=2)


def _card(stack):
    cfg = ModelConfig("unet", 2 * 3 + 2, 3, 18, SMALL)
    return ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"crs": stack.grid.crs.to_string(), "resolution": stack.grid.resolution},
                     tile_size=32, model=cfg.to_dict(), threshold=0.3)


@pytest.fixture
def no_pickle(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("unpickling was attempted")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_round_trip_without_pickle(stack, tmp_path, no_pickle):
    card = _card(stack)
    torch.manual_seed(0)
    model = build_model(card.model_config)
    path = save_model(tmp_path / "m.safetensors", model, card)
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then a JSON header
    loaded, card2 = load_model(path)
    assert card2 == card
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert json.loads((tmp_path / "m.json").read_text())["threshold"] == 0.3


def test_checkpoint_round_trip_without_pickle(stack, tmp_path, no_pickle):
    card = _card(stack)
    model = build_model(card.model_config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 8, 32, 32)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    model2 = build_model(card.model_config)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=5.0)
    assert load_checkpoint(tmp_path, model2, opt2)["step"] == 1
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 1e-3 and s2["param_groups"][0]["betas"] == (0.9, 0.999)
    for i in s1["state"]:
        for name in s1["state"][i]:
            assert torch.equal(torch.as_tensor(s1["state"][i][name]), torch.as_tensor(s2["state"][i][name]))


def test_species_mismatch_is_clear(stack):
    card = replace(_card(stack), species=["Au", "Cu", "Ni"])
    with pytest.raises(ModelMismatchError, match=r"species .*Au.*Cu.*Ni.*build-stack --species"):
        card.check_stack(stack)


def test_aux_mismatch_is_clear(stack):
    other = stack.aux_bands[:1] + [AuxBand("gravity", 0.0, 1.0)]
    card = replace(_card(stack), aux_bands=[vars(b) for b in other])
    with pytest.raises(ModelMismatchError, match="lacks 1 of them: gravity") as err:
        card.check_stack(stack)
    assert "build-stack without --aux" in str(err.value)  # says how to get the model's layers


def test_resolution_mismatch_is_clear(stack):
    card = _card(stack)
    coarse = replace(stack, grid=Grid(stack.grid.crs, stack.grid.transform * stack.grid.transform.scale(2),
                                      stack.grid.height, stack.grid.width))
    with pytest.raises(ModelMismatchError, match="resolution"):
        card.check_stack(coarse)
    card.check_stack(stack)  # the matching stack passes


def test_threshold_per_scenario_falls_back_to_the_pooled_one():
    card = ModelCard(species=["Au"], aux_bands=[], grid={}, tile_size=32, model={}, threshold=0.4,
                     metrics={"validation": {"thresholds": {"species": 0.7, "both": 0.6}}})
    assert card.threshold_for("species") == 0.7 and card.threshold_for("both") == 0.6
    assert card.threshold_for("region") == 0.4 and card.threshold_for(None) == 0.4
