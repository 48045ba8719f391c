"""The simple baselines on tiny arrays whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.evaluation.baselines import (CoPresencePredictor, FrequencyPredictor, NeighbourDensityPredictor,
                            species_frequency)


def test_frequency_is_the_share_of_training_cells():
    presence = np.zeros((2, 4, 5), np.uint8)
    presence[0, 0, :2] = 1
    presence[1, 3, 4] = 1                 # outside the training cells below
    train = np.ones((4, 5), bool)
    train[3] = False
    np.testing.assert_allclose(species_frequency(presence, train), [2 / 15, 0.0])
    pred = FrequencyPredictor.fit(presence, train).predict(
        torch.zeros(1, 2, 4, 5), torch.ones(1, 2, 4, 5, dtype=torch.bool), torch.zeros(1, 0, 4, 5),
        torch.ones(1, 4, 5, dtype=torch.bool))
    assert torch.allclose(pred[0, 0], torch.tensor(2 / 15)) and float(pred[0, 1].max()) == 0.0


def test_neighbour_density_is_the_share_of_visible_records_around():
    h = w = 9
    presence = torch.zeros(1, 2, h, w, dtype=torch.uint8)
    presence[0, 0, :, :4] = 1             # left of the hidden column present, right absent
    presence[0, 0, :, 4] = 1              # the hidden truth must not be read
    hidden = torch.zeros(1, 2, h, w, dtype=torch.bool)
    hidden[0, 0, :, 4] = True
    hidden[0, 1] = True                   # species 1: nothing visible
    valid = torch.ones(1, h, w, dtype=torch.bool)
    pred = NeighbourDensityPredictor(np.array([0.05, 0.07]), sigma=2.0).predict(
        presence, hidden, torch.zeros(1, 0, h, w), valid)
    assert float(pred[0, 0, 4, 4]) == pytest.approx(0.5, abs=1e-9)     # symmetric: half present
    assert float(pred[0, 0, 4, 0]) > 0.9 and float(pred[0, 0, 4, 8]) < 0.1
    assert torch.allclose(pred[0, 1], torch.tensor(0.07))


def test_co_presence_learns_that_two_species_occur_together():
    rng = np.random.default_rng(0)
    h, w = 60, 60
    a = (rng.random((h, w)) < 0.1).astype(np.uint8)
    noise = (rng.random((h, w)) < 0.02).astype(np.uint8)
    presence = np.stack([a, a, noise])    # species 0 and 1 always together; 2 unrelated
    train = np.ones((h, w), bool)
    model = CoPresencePredictor.fit(presence, train)
    t = torch.from_numpy(presence)[None]
    hidden = torch.zeros(1, 3, h, w, dtype=torch.bool)
    hidden[0, 0] = True                   # hide species 0; species 1 tells where it is
    pred = model.predict(t, hidden, torch.zeros(1, 0, h, w), torch.ones(1, h, w, dtype=torch.bool))[0, 0]
    assert float(pred[a == 1].min()) > 0.9 and float(pred[a == 0].max()) < 0.1
    hidden[0, 1] = True                   # hide the partner too: no longer predictable
    pred2 = model.predict(t, hidden, torch.zeros(1, 0, h, w), torch.ones(1, h, w, dtype=torch.bool))[0, 0]
    assert float(pred2[a == 1].mean()) < 0.5


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_untrained_predictors_take_inputs_on_the_evaluation_device(device):
    """compare and evaluate put the tiles on the GPU when there is one; every baseline must read
    them there and answer on the CPU (a GPU run of compare once stopped at kriging)."""
    from core.evaluation.kriging import KrigingPredictor

    g = torch.Generator().manual_seed(0)
    presence = (torch.rand(2, 2, 16, 16, generator=g) < 0.2).to(torch.uint8)
    hidden = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    hidden[:, 0, 4:12, 4:12] = True
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    freq = np.array([0.2, 0.2])
    co = CoPresencePredictor(np.zeros((2, 2 * 1 + 1)), freq)
    for p in (FrequencyPredictor(freq), NeighbourDensityPredictor(freq), co, KrigingPredictor(freq, max_points=50)):
        on_cpu = p.predict(presence, hidden, torch.zeros(2, 0, 16, 16), valid)
        there = p.predict(*(t.to(device) for t in (presence, hidden, torch.zeros(2, 0, 16, 16), valid)))
        assert there.device.type == "cpu" and there.dtype == torch.float32, p.name
        assert torch.equal(there, on_cpu), p.name
