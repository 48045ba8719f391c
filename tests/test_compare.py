"""compare / sweep / interdependence on a tiny synthetic stack: every predictor is scored on the
same masks by the same code, and the trained ones come from the same trainer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation import compare as compare_module
from core.evaluation import evaluate as evaluate_module
from core.training import train as train_module
from core.evaluation.compare import VARIANTS, compare
from core.evaluation.sweep import parse_lever_values, sweep
from core.errors import InputError
from core.data.synthetic import synthetic_stack
from core.training.train import TrainConfig

TINY = {"steps": 2, "tiles": 16, "tile_size": 32, "batch_size": 2, "val_every": 0, "checkpoint_every": 0,
        "val_tiles": 4, "holdout.block_size": 32, "holdout.val_fraction": 0.15, "holdout.test_fraction": 0.15,
        "model_options": {"decoder_channels": [16, 16, 16, 16, 16], "context_sigmas": [2], "aux_sigmas": [2]}}
pytestmark = pytest.mark.slow  # trains 12 tiny models: tens of seconds on 2 CPU cores

EXPECTED = {"unet", "unet_no_aux", "unet_no_context", "context_head", "vit", "unet_aux_whole_species", "kriging", "co_presence",
            "neighbour_density", "frequency"}


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(128, 128, n_species=3, n_aux=2, seed=0)


@pytest.fixture(scope="module")
def config():
    return TrainConfig().with_overrides(TINY)


@pytest.fixture(scope="module")
def run(stack, config, tmp_path_factory):
    """One compare run with spies on the trainer step and the scoring function."""
    out = tmp_path_factory.mktemp("compare")
    trained, scored = [], []
    step, score = train_module.Trainer.train_step, evaluate_module.score_predictor

    def spy_step(self):
        trained.append(type(getattr(self.model, "backbone", self.model)).__name__)
        return step(self)

    def spy_score(predictor, *args, **kwargs):
        scored.append(predictor.name)
        return score(predictor, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module.Trainer, "train_step", spy_step)
        mp.setattr(compare_module, "score_predictor", spy_score)
        result = compare(stack, config, [0, 1], out, draws=2, device="cpu", log=lambda s: None)
    return result, out, trained, scored


def test_compare_writes_a_row_per_predictor_and_scenario_with_mean_and_std(run):
    result, out, _, _ = run
    data = json.loads((out / "compare.json").read_text())
    rows = {(r["scenario"], r["predictor"]): r for r in data["rows"]}
    for sc in ("region", "species", "both"):
        for name in EXPECTED:
            row = rows[(sc, name)]
            for m in ("dice", "recall"):
                assert set(row[m]) == {"mean", "std"}
                assert row[m]["mean"] is None or 0.0 <= row[m]["mean"] <= 1.0 or np.isnan(row[m]["mean"])
        for name in ("unet", "unet_no_aux", "vit"):
            assert rows[(sc, name)]["seeds"] == 2
            assert len(data["scenarios"][sc][name]["overall"]["dice"]["values"]) == 2
    assert set(data["scenarios"]["region"]["kriging"]["per_species"]) == {"Au", "Ag", "Zn"}
    for png in ("pr_curves.png", "map_panel.png", "interdependence.png"):
        assert (out / png).stat().st_size > 5000
    md = (out / "compare.md").read_text()
    assert "| unet | 2 |" in md and "| kriging | 1 |" in md
    inter = data["interdependence"]
    assert np.array(inter["drop"]["auprc"]).shape == (3, 3)
    assert np.allclose(np.diag(np.array(inter["drop"]["auprc"], float)), 0.0, equal_nan=True)


def test_vit_and_unet_share_the_trainer_and_the_scoring_code(run):
    result, out, trained, scored = run
    # the same Trainer.train_step trained both architectures (2 steps x 2 seeds each)
    assert trained.count("Unet") == 3 * 2 * 2 and trained.count("PatchViT") == 2 * 2
    assert trained.count("NoBackbone") == 2 * 2
    # one scoring function for every predictor, the same one `evaluate` uses
    assert compare_module.score_predictor is evaluate_module.score_predictor
    assert {"unet", "vit", "kriging", "frequency"} <= set(scored)
    assert scored.count("vit") == scored.count("unet") == 2
    cards = {v: json.loads((out / "models" / f"{v}_seed0.json").read_text()) for v in VARIANTS}
    assert cards["vit"]["model"]["arch"] == "vit" and cards["unet"]["model"]["arch"] == "unet"
    same = {k for k in cards["unet"]["training"] if k not in ("arch", "model_options", "use_aux")}
    assert all(cards["vit"]["training"][k] == cards["unet"]["training"][k] for k in same)
    assert cards["unet_no_aux"]["model"]["in_channels"] == 2 * 3
    # the context ablation drops only the context features; the ViT keeps them like the U-Net
    assert cards["unet"]["model"]["options"]["context_sigmas"] == [2] == cards["vit"]["model"]["options"]["context_sigmas"]
    assert "context_sigmas" not in cards["unet_no_context"]["model"]["options"]
    # the aux features go wherever the aux bands go: not into the no-aux or no-context variants
    assert cards["unet"]["model"]["options"]["aux_sigmas"] == [2] == cards["context_head"]["model"]["options"]["aux_sigmas"]
    assert all("aux_sigmas" not in cards[v]["model"]["options"] for v in ("unet_no_aux", "unet_no_context"))


def test_compare_reuses_trained_models_and_refuses_mismatched_ones(run, stack, config):
    _, out, _, _ = run
    again = compare(stack, config, [0], out / "again", models_dir=out / "models", variants=["unet"],
                    baselines=["frequency"], draws=1, device="cpu", interdependence=False, figures=False,
                    log=lambda s: None)
    first = json.loads((out / "compare.json").read_text())
    # an already trained file (here unet seed 0 under another name) is scored on the same masks
    extra = compare(stack, config, [0], out / "extra", models_dir=out / "models", variants=["unet_no_aux"],
                    baselines=["frequency"], draws=1, device="cpu", interdependence=False, figures=False,
                    extra_models={"shipped": [out / "models" / "unet_seed0.safetensors"]}, log=lambda s: None)
    for sc in ("region", "species", "both"):
        assert extra["scenarios"][sc]["shipped"]["overall"] == again["scenarios"][sc]["unet"]["overall"]
    with pytest.raises(InputError, match="taken"):
        compare(stack, config, [0], out / "bad", extra_models={"kriging": [out / "models" / "unet_seed0.safetensors"]},
                log=lambda s: None)
    only = compare(stack, config, [0, 1], out / "train_only", models_dir=out / "models", train_only=True,
                   device="cpu", log=lambda s: None)
    assert set(only["models"]) == set(VARIANTS) and not (out / "train_only" / "compare.json").exists()
    assert again["thresholds"]["unet"][0] == first["thresholds"]["unet"][0]
    with pytest.raises(InputError, match="other settings"):
        compare(stack, config.with_overrides({"steps": 3}), [0], out / "bad", models_dir=out / "models",
                variants=["unet"], baselines=[], device="cpu", interdependence=False, figures=False,
                log=lambda s: None)


def test_sweep_plots_a_metric_against_the_lever(stack, config, tmp_path):
    result = sweep(stack, config, "aux", parse_lever_values("aux", ["on", "off"]), [0], tmp_path, draws=1,
                   device="cpu", log=lambda s: None)
    assert result["values"] == ["on", "off"]
    assert set(result["points"]["off"]["scenarios"]) == {"region", "species", "both"}
    assert (tmp_path / "sweep_aux.png").stat().st_size > 5000
    card = json.loads((tmp_path / "models" / "unet_aux_off_seed0.json").read_text())
    assert card["training"]["use_aux"] is False
    with pytest.raises(InputError):
        parse_lever_values("tiles", ["many"])
