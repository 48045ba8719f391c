"""Evaluation: exact metric arithmetic, identical masks for every model, thresholds from the
cards, the frequency baseline in the same output, test blocks only."""
import json
import math

import numpy as np
import pytest
import torch

from core.errors import InputError
from core.evaluation.evaluate import FrequencyPredictor, HoldoutMasks, collect, evaluate_models, random_draw_report
from core.masks.masking import MaskSpec
from core.model.metrics import HiddenCells, average_precision, best_dice_threshold, threshold_scores
from core.model.model_file import read_card
from core.data.synthetic import synthetic_stack
from core.masks.tiles import TEST, HoldoutSplit, StackTensors, holdout_tiles, train_frequency
from core.training.train import TrainConfig, train


def test_threshold_scores_and_average_precision_by_hand():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    y = np.array([1, 0, 1, 0, 1, 0])
    s = threshold_scores(p, y, 0.65)  # predicted: 0.9, 0.8, 0.7 -> tp 2, fp 1, fn 1
    assert s == {"dice": pytest.approx(4 / 6), "recall": pytest.approx(2 / 3), "precision": pytest.approx(2 / 3)}
    # AP = mean precision at each positive's rank: (1/1 + 2/3 + 3/5) / 3
    assert average_precision(p, y) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert best_dice_threshold(p, y) in (0.7, 0.2)  # Dice 2/3 at both; the first reached is kept
    assert math.isnan(average_precision(p, np.zeros(6)))


def test_ties_are_one_threshold():
    p = np.array([0.5, 0.5, 0.5, 0.5])
    y = np.array([1, 0, 0, 0])
    assert average_precision(p, y) == pytest.approx(0.25)  # a constant score's AUPRC is the prevalence


def test_random_draw_baseline_expectation():
    cells = HiddenCells(["Au", "Cu"])
    target = torch.zeros(1, 2, 10, 10)
    target[0, 0, :2] = 1  # 20 of 100 Au cells present
    hidden = torch.ones(1, 2, 10, 10, dtype=torch.bool)
    valid = torch.ones(1, 10, 10, dtype=torch.bool)
    cells.add(torch.zeros(1, 2, 10, 10), target, hidden, valid)
    r = random_draw_report(cells, {"Au": 0.1, "Cu": 0.3})
    au = r["per_species"]["Au"]  # E[tp] = 2, E[predicted] = 10, positives 20
    assert au["recall"] == pytest.approx(0.1) and au["precision"] == pytest.approx(0.2)
    assert au["dice"] == pytest.approx(2 * 2 / (10 + 20))
    assert r["overall"]["precision"] == pytest.approx(2 / (10 + 30))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small stack and two tiny models (seeds) trained on it."""
    d = tmp_path_factory.mktemp("eval")
    stack = synthetic_stack(192, 192, n_species=3, n_aux=2, seed=5)
    paths = []
    for seed in (0, 1):
        cfg = TrainConfig(seed=seed, steps=3, tiles=40, tile_size=32, batch_size=4, val_every=0, val_tiles=8,
                          holdout=HoldoutSplit(block_size=64, val_fraction=0.2, test_fraction=0.2, seed=1),
                          model_options={"decoder_channels": [16, 16, 8, 8, 8]})
        path = d / f"m{seed}.safetensors"
        train(stack, cfg, path, device="cpu", log=lambda s: None)
        paths.append(path)
    return stack, paths, d


def test_evaluate_reports_models_and_baseline_per_scenario(trained, capsys):
    stack, paths, d = trained
    out = d / "eval.json"
    result = evaluate_models(stack, paths, out, draws=3)
    saved = json.loads(out.read_text())
    assert saved["models"] == [str(p) for p in paths] and saved["test_tiles"] > 0
    label = saved["label"]
    for sc in ("region", "species", "both"):
        rows = saved["scenarios"][sc]
        assert set(rows) == {label, "frequency", "frequency_draw"}
        dice = rows[label]["overall"]["dice"]
        assert len(dice["values"]) == 2 and dice["mean"] == pytest.approx(np.mean(dice["values"]))
        assert dice["std"] == pytest.approx(np.std(dice["values"], ddof=1))
        assert set(rows[label]["per_species"]) == set(stack.species)
    card = read_card(paths[0])
    assert saved["thresholds"][str(paths[0])] == card.metrics["validation"]["thresholds"]
    assert set(saved["thresholds"]["frequency"]) == {"region", "species", "both"}
    shown = capsys.readouterr().out
    assert "frequency baseline (threshold on val)" in shown and "± " in shown
    assert result["scenarios"]["region"][label]["overall"]["recall"]["values"] == \
        saved["scenarios"]["region"][label]["overall"]["recall"]["values"]


def test_masks_are_identical_for_every_model_and_inside_test_blocks(trained):
    stack, paths, _ = trained
    split = HoldoutSplit.from_dict(read_card(paths[0]).data["holdout"]["split"])
    origins = holdout_tiles(stack, split, 32, "test")
    labels = split.cell_labels(stack.valid)
    assert all(np.all(labels[r:r + 32, c:c + 32] == TEST) for r, c in origins)
    a = HoldoutMasks(origins, 32, MaskSpec(species_k=(1, 1)), draws=3)
    b = HoldoutMasks(origins, 32, MaskSpec(species_k=(1, 1)), draws=3)
    for sc in ("region", "species", "both"):
        assert torch.equal(a.hidden(sc, 2, 3), b.hidden(sc, 2, 3))
    # with one species hidden per draw, 3 draws hide every species on every tile once
    per_tile = torch.stack([a.hidden("species", d, 3).flatten(2).any(2) for d in range(3)]).sum(0)
    assert torch.all(per_tile == 1)


def test_frequency_baseline_predicts_training_frequency(trained):
    stack, paths, _ = trained
    split = HoldoutSplit.from_dict(read_card(paths[0]).data["holdout"]["split"])
    freq = train_frequency(stack, split)
    pred = FrequencyPredictor(freq, stack.species)
    tensors = StackTensors(stack, torch.device("cpu"))
    masks = HoldoutMasks(holdout_tiles(stack, split, 32, "test"), 32, MaskSpec(species_k=(1, 1)), draws=1)
    cells = collect(pred, tensors, masks, list(stack.species), scenarios=("species",))["species"]
    p, _ = cells.arrays("Au")
    assert np.allclose(p, freq["Au"])


def test_models_with_other_split_are_refused(trained, tmp_path):
    stack, paths, _ = trained
    card = json.loads(paths[1].with_suffix(".json").read_text())
    card["data"]["holdout"]["split"]["seed"] = 99
    other = tmp_path / "other.safetensors"
    other.write_bytes(paths[1].read_bytes())
    other.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="hold-out split"):
        evaluate_models(stack, [paths[0], other])
