"""Calibration: each method recovers the truth of synthetic miscalibrated scores, keeps their
ranking, survives a card round trip, and the scale a map is written in follows the card."""
import numpy as np
import pytest
import torch

from core.model.calibration import (FITTERS, POOLED, Calibration, ScaleMap, choose_method,
                                    expected_calibration_error, reliability)


def _overconfident(n=200_000, seed=0):
    """Scores far above the truth: the true probability is sigmoid(z - 5), the score sigmoid(2 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    truth = (rng.random(n) < 1 / (1 + np.exp(-(z - 5)))).astype(np.uint8)
    score = 1 / (1 + np.exp(-2 * z))
    return score, truth


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_fit_brings_ece_down_and_keeps_order(method):
    p, y = _overconfident()
    before = expected_calibration_error(p, y)
    m = FITTERS[method](p, y)
    q = m.apply_numpy(p)
    p2, y2 = _overconfident(seed=1)  # a fresh draw: no fitting on what is scored
    after = expected_calibration_error(m.apply_numpy(p2), y2)
    assert before > 0.2
    assert after < 0.01
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) > 0)  # strictly monotone, ends included: the ranking (and AUPRC) is kept
    from core.model.metrics import average_precision

    assert average_precision(q, y) == pytest.approx(average_precision(p, y), abs=1e-9)


def test_temperature_cannot_move_the_midpoint():
    """Temperature keeps 0.5 at 0.5, so it cannot fix scores that are high for every cell: it is
    measured, and loses the choice, on such scores."""
    p, y = _overconfident()
    t = FITTERS["temperature"](p, y)
    assert t.apply_numpy(np.array([0.5]))[0] == pytest.approx(0.5)
    groups = (np.arange(len(p)) % 2).astype(np.int8)
    best, cross = choose_method(p, y, groups)
    assert best in ("platt", "isotonic")
    assert cross["temperature_log_loss"] > cross[f"{best}_log_loss"]


def test_torch_and_numpy_agree_and_round_trip():
    p, y = _overconfident(50_000)
    cal = Calibration({sc: FITTERS[m](p, y) for sc, m in [("region", "platt"), ("both", "isotonic"),
                                                          (POOLED, "temperature")]}, {"thresholds": {}})
    again = Calibration.from_dict(cal.to_dict())
    x = torch.rand(3, 4, 5)
    for sc in ("region", "both", None, "species"):  # species: not fitted -> the pooled map
        a = again.apply(x, sc).numpy()
        b = cal.for_scenario(sc).apply_numpy(x.numpy().astype(np.float64))
        assert np.allclose(a, b, atol=1e-6)
    assert cal.for_scenario("species").method == "temperature"


@pytest.mark.parametrize("bad", [{"method": "magic"}, {"method": "platt", "a": "x", "b": 0},
                                 {"method": "platt", "a": -1.0, "b": 0}, {"method": "temperature", "t": 0},
                                 {"method": "isotonic", "x": [0, 1], "y": [1, 0]}])
def test_bad_maps_are_refused(bad):
    with pytest.raises(ValueError):
        ScaleMap.from_dict(bad)


def test_reliability_counts_every_cell():
    p = np.array([0.0, 0.05, 0.5, 0.99, 1.0])
    r = reliability(p, np.array([0, 0, 1, 1, 1]), bins=15)
    assert sum(r["cells"]) == 5
    assert expected_calibration_error(p, np.array([0, 0, 1, 1, 1])) == pytest.approx((0.05 + 0.5 + 0.01) / 5)


def test_card_threshold_and_scale_follow_the_calibration():
    from core.model.model_file import ModelCard, card_problems

    card = ModelCard(species=["Au"], aux_bands=[], grid={}, tile_size=8,
                     model={"arch": "unet", "in_channels": 2, "classes": 1},
                     metrics={"validation": {"thresholds": {"region": 0.9}}})
    assert card.threshold_for("region") == 0.9 and not card.calibrated
    card.calibration = {"scenarios": {"region": {"method": "platt", "a": 1.0, "b": -3.0}},
                        "thresholds": {"region": 0.2, "pooled": 0.1}}
    assert card_problems(card) == []
    assert card.threshold_for("region") == 0.2 and card.threshold_for(None) == 0.1
    assert "calibrated" in card.scale_note
    card.calibration = {"scenarios": {"region": {"method": "platt", "a": 1.0}}, "thresholds": {}}
    assert any("calibration" in b for b in card_problems(card))


def test_isotonic_reads_float32_like_float64_at_steep_ends():
    """The float32 reading (a map applied per draw) equals the float64 one within float rounding,
    also past a steep last segment (a float32 input above the last knot reads the map's top)."""
    m = ScaleMap.from_dict({"method": "isotonic", "x": [1e-8, 1e-5, 0.3, 0.9998211, 0.99999674],
                            "y": [0.0, 1e-4, 0.05, 0.64, 0.79898649]})
    p = torch.cat([torch.rand(10_000), torch.tensor([0.0, 1e-9, 0.9999997615814209, 1.0, 0.99999674])])
    a = m.apply(p)
    assert a.dtype == torch.float32
    b = m.apply_numpy(p.numpy().astype(np.float64))
    assert np.abs(a.numpy() - b).max() < 2e-6
    assert np.allclose(m.apply(p.double()).numpy(), b, atol=1e-12)
