"""The predictor interface: trained models and the aux-routing ablation."""
from __future__ import annotations

import torch

from core.model.models import ModelConfig, build_model
from core.model.predictors import ModelPredictor, Predictor, WholeSpeciesAuxPredictor


class Constant:
    """A predictor returning one value everywhere and counting its calls."""

    def __init__(self, value: float, name: str) -> None:
        self.value, self.name, self.calls = value, name, 0

    def predict(self, presence, hidden, aux, valid):
        self.calls += 1
        return torch.full(hidden.shape, self.value)


def test_aux_routing_uses_the_aux_model_only_for_species_hidden_entirely():
    with_aux, without_aux = Constant(0.9, "a"), Constant(0.1, "b")
    routed = WholeSpeciesAuxPredictor(with_aux, without_aux)
    assert isinstance(routed, Predictor)
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    valid[0, :, 6:] = False
    hidden = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    hidden[0, 0] = True                # whole tile
    hidden[0, 2, :, :6] = True         # every valid cell of tile 0: also "entirely"
    hidden[1, 1, :4] = True            # half the tile: a region
    p = routed.predict(torch.zeros(2, 3, 8, 8), hidden, torch.zeros(2, 0, 8, 8), valid)
    assert float(p[0, 0, 0, 0]) == float(p[0, 2, 0, 0]) == torch.tensor(0.9).item()
    assert float(p[1, 1, 0, 0]) == torch.tensor(0.1).item()
    hidden[1] = False
    routed.predict(torch.zeros(2, 3, 8, 8), hidden, torch.zeros(2, 0, 8, 8), valid)
    assert (with_aux.calls, without_aux.calls) == (2, 1)   # no region left: the no-aux model not run


def test_model_predictor_drops_the_aux_bands_of_a_model_trained_without_them():
    s, a = 2, 3
    model = build_model(ModelConfig("vit", 2 * s, s, options={"patch": 4, "embed_dim": 16, "depth": 1, "heads": 2}))
    pred = ModelPredictor(model, "no_aux", 2 * s, s)
    presence = (torch.rand(1, s, 16, 16) < 0.3).to(torch.uint8)
    hidden = torch.rand(1, s, 16, 16) < 0.5
    out = pred.predict(presence, hidden, torch.randn(1, a, 16, 16), torch.ones(1, 16, 16, dtype=torch.bool))
    assert out.shape == (1, s, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1
    same = pred.predict(presence, hidden, torch.randn(1, a, 16, 16), torch.ones(1, 16, 16, dtype=torch.bool))
    assert torch.equal(out, same)      # the aux values do not matter
