"""The kriging baseline reproduces a known field from a sample of it and respects the masks."""
from __future__ import annotations

import numpy as np
import torch

from core.evaluation.kriging import KrigingPredictor, krige_layer


def smooth_field(h: int = 48, w: int = 48) -> np.ndarray:
    r, c = np.mgrid[0:h, 0:w]
    return np.sin(r / 9.0) + np.cos(c / 11.0) + 0.5 * np.sin((r + c) / 15.0)


def test_kriging_reproduces_a_smooth_field_from_a_sample():
    field = smooth_field()
    known = np.random.default_rng(0).random(field.shape) < 0.15
    est = krige_layer(field, known, ~known)
    err = est - field[~known]
    rmse = float(np.sqrt(np.mean(err ** 2)))
    assert rmse < 0.05 * field.std()          # about 0.02 vs a std of about 1.1
    # and the estimate is better than the mean of the sample everywhere on average
    assert rmse < 0.1 * float(np.sqrt(np.mean((field[known].mean() - field[~known]) ** 2)))


def test_kriging_with_more_points_than_the_cap_still_reproduces_the_field():
    field = smooth_field()
    known = np.random.default_rng(1).random(field.shape) < 0.6
    est = krige_layer(field, known, ~known, max_points=150)
    assert np.sqrt(np.mean((est - field[~known]) ** 2)) < 0.1 * field.std()


def test_kriging_predictor_reads_only_visible_cells_and_falls_back_without_any():
    h = w = 32
    r, c = np.mgrid[0:h, 0:w]
    layer = (np.hypot(r - 16, c - 16) < 12).astype(np.uint8)     # a disc of presence
    presence = torch.from_numpy(np.stack([layer, layer, np.zeros_like(layer)]))[None]
    hidden = torch.zeros(1, 3, h, w, dtype=torch.bool)
    hidden[0, 0, 14:18, 14:18] = True                             # hole inside the disc
    hidden[0, 1] = True                                           # species 1 hidden everywhere
    hidden[0, 2, :4, :4] = True                                   # species 2: all visible are 0
    valid = torch.ones(1, h, w, dtype=torch.bool)
    freq = np.array([0.1, 0.2, 0.3])
    pred = KrigingPredictor(freq).predict(presence, hidden, torch.zeros(1, 0, h, w), valid)
    assert pred.shape == (1, 3, h, w) and float(pred.min()) >= 0 and float(pred.max()) <= 1
    assert float(pred[0, 0, 14:18, 14:18].min()) > 0.9            # the hole is filled with presence
    assert torch.allclose(pred[0, 1], torch.tensor(0.2))          # nothing visible: the frequency
    assert float(pred[0, 2, :4, :4].abs().max()) == 0.0           # constant data: that constant
    tampered = presence.clone()
    tampered[0, 0, 14:18, 14:18] = 0                              # hidden cells must not matter
    again = KrigingPredictor(freq).predict(tampered, hidden, torch.zeros(1, 0, h, w), valid)
    assert torch.equal(pred, again)
