"""Neighbourhood-context features and the model wrapper that uses them."""
import numpy as np
import torch

from core.evaluation.baselines import gaussian_smoother, visible_share
from core.model.context import AuxFeatures, ContextFeatures, gaussian_kernel
from core.model.inputs import model_inputs
from core.model.model_file import ModelCard, load_model, save_model
from core.model.models import ModelConfig, build_model


def _inputs(s=3, a=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    presence = (torch.rand(1, s, h, w, generator=g) < 0.05).float()
    hidden = torch.zeros(1, s, h, w, dtype=torch.bool)
    hidden[:, 0, 8:24, 8:24] = True          # species 0 hidden in a square
    hidden[:, 1] = True                      # species 1 hidden everywhere
    valid = torch.ones(1, h, w, dtype=torch.bool)
    return presence, hidden, torch.randn(1, a, h, w, generator=g), valid


def test_kernel_is_normalised():
    k = gaussian_kernel(2.0)
    assert k.numel() == 13 and abs(float(k.sum()) - 1) < 1e-6 and int(k.argmax()) == 6


def test_share_matches_the_neighbour_density_smoother():
    presence, hidden, aux, valid = _inputs()
    feats = ContextFeatures(3, [2.0])(model_inputs(presence, hidden, aux, valid))
    share, log_share, weight = feats[0, 0:3], feats[0, 3:6], feats[0, 6:9]
    vis = (~hidden[0]).numpy()
    vis_p = (presence[0].numpy() * vis)
    expected, den = visible_share(vis_p, vis, gaussian_smoother(2.0))
    # scipy truncates the Gaussian at 4σ and we at 3σ: close, not equal
    np.testing.assert_allclose(share[2].numpy(), expected[2], atol=0.01)
    np.testing.assert_allclose(weight[2].numpy(), den[2], atol=0.01)
    # a species hidden everywhere has no visible neighbourhood: share 0, weight 0
    assert float(share[1].abs().max()) == 0 and float(weight[1].abs().max()) < 1e-6
    np.testing.assert_allclose(log_share.numpy(), np.log(share.numpy() + 1e-3), rtol=1e-5)
    # hidden cells never leak: changing hidden presence leaves the features unchanged
    changed = presence.clone()
    changed[:, 0, 8:24, 8:24] = 1 - changed[:, 0, 8:24, 8:24]
    again = ContextFeatures(3, [2.0])(model_inputs(changed, hidden, aux, valid))
    assert torch.equal(again, feats)


def _assert_round_trips(cfg: ModelConfig, path):
    """The model built from ``cfg``, saved and loaded, gives the same logits."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = model_inputs(*_inputs())
    card = ModelCard(species=["Au", "Ag", "Cu"], aux_bands=[], grid={}, tile_size=32, model=cfg.to_dict(),
                     masking={}, training={}, metrics={}, threshold=0.5)
    save_model(path, model, card)
    loaded, _ = load_model(path)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model(x), atol=1e-6)
    return model


def test_context_model_round_trips_through_a_model_file(tmp_path):
    cfg = ModelConfig("unet", 2 * 3 + 2, 3, 18, {"decoder_channels": [32, 16, 16, 8, 8], "context_sigmas": [2, 5]})
    _assert_round_trips(cfg, tmp_path / "m.safetensors")


def test_aux_features_are_the_local_mean_and_spread_of_each_aux_band():
    presence, hidden, aux, valid = _inputs(a=2)
    aux[:, 1] = 3.0                                      # a constant band: mean 3 inside, spread 0
    aux[:, 0, :, 16:] = aux[:, 0, :, 16:] + 5.0          # a step: spread peaks along it
    x = model_inputs(presence, hidden, aux, valid)
    feats = AuxFeatures(3, 2, [2.0])(x)
    assert feats.shape == (1, 4, 32, 32)
    mean, spread = feats[0, :2], feats[0, 2:]
    np.testing.assert_allclose(mean[1, 8:24, 8:24].numpy(), 3.0, rtol=1e-5)
    assert float(spread[1, 8:24, 8:24].abs().max()) < 1e-2
    assert float(spread[0, 8:24, 15:17].min()) > 2.0 > float(spread[0, 8:24, :8].max())
    # presence and hidden channels do not enter the aux features
    changed = x.clone()
    changed[:, :6] = 1 - changed[:, :6]
    assert torch.equal(AuxFeatures(3, 2, [2.0])(changed), feats)
    # with no aux band there is nothing to add
    assert AuxFeatures(3, 0, [2.0])(model_inputs(presence, hidden, aux[:, :0], valid)).shape[1] == 0


def test_a_model_with_aux_features_round_trips_and_ignores_them_without_aux(tmp_path):
    opts = {"decoder_channels": [32, 16, 16, 8, 8], "context_sigmas": [2], "aux_sigmas": [2, 4]}
    model = _assert_round_trips(ModelConfig("unet", 2 * 3 + 2, 3, 18, opts), tmp_path / "m.safetensors")
    assert model.head.in_channels == 9 + 2 * 2 * 2 + 3 + 2   # context, aux features, presence, aux bands
    # the same options on a model without aux bands build the plain context model
    no_aux = build_model(ModelConfig("unet", 2 * 3, 3, 18, opts))
    plain = build_model(ModelConfig("unet", 2 * 3, 3, 18, {k: v for k, v in opts.items() if k != "aux_sigmas"}))
    assert [p.shape for p in no_aux.parameters()] == [p.shape for p in plain.parameters()]


def test_features_written_in_bands_equal_the_features():
    """The inference path (:meth:`ContextFeatures.features_into`, element-wise steps in bands of
    rows) gives the training path's features exactly, whatever the band height."""
    presence, hidden, aux, valid = _inputs(h=37, w=29)
    x = model_inputs(presence, hidden, aux, valid)
    ctx = ContextFeatures(3, [1.5, 4.0])
    with torch.inference_mode():
        ref = ctx(x)
        for rows in (None, 5, 16, 100):
            out = torch.full_like(ref, float("nan"))
            ctx.features_into(x.contiguous(memory_format=torch.channels_last), out, rows)
            assert torch.equal(out, ref), rows
