"""scripts/ship_bundled_model.py: the card's comparison names every scenario and species where the
shipped model's mean Dice or recall is below a rival's (by default kriging's or the no-aux U-Net's)."""
import pytest
from script_support import load_script


def _ship():
    return load_script("ship_bundled_model")


def _scores(dice, recall, cu_dice, cu_recall):
    m = lambda v: {"mean": v}
    return {"overall": {"dice": m(dice), "recall": m(recall)},
            "per_species": {"Cu": {"dice": m(cu_dice), "recall": m(cu_recall)},
                            "U": {"dice": m(None), "recall": m(None)}}}


def test_comparison_lists_dice_and_recall_shortfalls_per_rival():
    result = {"evaluation": "test blocks", "scenarios": {"region": {
        "bundled": _scores(0.30, 0.20, 0.40, 0.50),
        "unet_no_aux": _scores(0.25, 0.25, 0.40, 0.60),
        "kriging": _scores(0.10, 0.30, 0.10, 0.10)}}}
    out = _ship().comparison(result, "bundled")
    assert out["worse"] == ["region: overall recall 0.200 below kriging (0.300)",
                            "region: overall recall 0.200 below unet_no_aux (0.250)",
                            "region: Cu recall 0.500 below unet_no_aux (0.600)"]
    assert out["scenarios"]["region"]["bundled"] == {"dice": 0.30, "recall": 0.20}
    assert _ship().comparison(result, "bundled", ("kriging",))["worse"] == [
        "region: overall recall 0.200 below kriging (0.300)"]
    with pytest.raises(SystemExit, match="was not scored"):
        _ship().comparison(result, "other")


def test_the_card_keeps_the_discovery_auc_and_top_share_of_every_predictor():
    found = {"predictors": {"M3": {"utah": {"auc_10cell": {"mean": 0.61, "std": 0.01, "n": 3}, "auc_cell": {"mean": 0.6},
                                            "top10": {"mean": 0.27, "std": 0.01, "n": 3}}}}}
    rows = _ship().discovery_rows(found)["predictors"]
    assert rows == {"M3": {"utah": {"auc_10cell": {"mean": 0.61, "std": 0.01, "n": 3},
                                    "top10": {"mean": 0.27, "std": 0.01, "n": 3}}}}
