"""Inference with what the aux bands alone determine computed once per window
(:mod:`core.model.shared_aux`): the same logits as the model's own forward, the same infill maps
as the reference path (the whole model per evaluation), and running statistics equal to the
statistics of the stacked evaluations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.data.synthetic import synthetic_stack
from core.inference.infer import inference_member, infill, prepare_for_inference
from core.masks.hiding import HideSpec, region_from_bounds
from core.model.model_file import ModelCard
from core.model.models import ModelConfig, build_model
from core.model.shared_aux import SharedAuxModel

S, A = 3, 2


def tiny_context_unet(stack, aux_prior: int = 0, added: bool = False, with_aux: bool = True) -> tuple[nn.Module, ModelCard]:
    """A small context U-Net (resnet18, narrow decoder) with non-trivial BatchNorm statistics and head."""
    a = len(stack.aux_bands) if with_aux else 0
    options = {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [1.5, 4], "aux_sigmas": [2] if a else []}
    if aux_prior:
        options.update(aux_prior=aux_prior, aux_prior_added=added)
    cfg = ModelConfig(arch="unet", in_channels=2 * S + a, classes=S, encoder_depth=18, options=options)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        model.head.weight.normal_(0, 0.05)
        model.head.bias.normal_(0, 0.05)
    card = ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands] if a else [],
                     grid={"crs": stack.grid.crs.to_string(), "resolution": stack.grid.resolution},
                     tile_size=32, model=cfg.to_dict(), threshold=0.4,
                     masking={"scenarios": {"region": 1.0, "species": 1.0, "both": 1.0}, "species_k": [1, 2],
                              "region_fraction": 0.5, "region_shape": "mixed", "blob_scale": 8})
    return model, card


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(150, 190, n_species=S, n_aux=A, seed=5)


@pytest.mark.parametrize("prior", [(0, False), (8, False), (8, True)])
def test_split_model_gives_the_model_logits(stack, prior):
    model, _ = tiny_context_unet(stack, *prior)
    split = SharedAuxModel(model, prepare_for_inference)
    torch.manual_seed(2)
    b, h, w = 3, 64, 96
    presence = (torch.rand(b, S, h, w) < 0.1).float()
    hidden = torch.rand(b, S, h, w) < 0.4
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[:, :, :20] = False
    aux = torch.randn(1, A, h, w).expand(b, -1, -1, -1)
    from core.model.inputs import model_inputs

    x = model_inputs(presence, hidden, aux, valid)
    with torch.inference_mode():
        ref = model(x)
        terms = split.aux_terms(x[:1, 2 * S:])
        out = split(x[:, :2 * S].contiguous(memory_format=torch.channels_last), terms)
    torch.testing.assert_close(out, ref, atol=2e-4, rtol=1e-4)


def members(stack, shared: bool, n: int = 2, with_aux: bool = True):
    out = []
    for k in range(n):
        model, card = tiny_context_unet(stack, with_aux=with_aux)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * k)
        out.append(inference_member(model, card, f"m{k}", shared_aux=shared))
    return out


@pytest.mark.parametrize("hide", ["nothing", "region"])
def test_shared_aux_infill_equals_the_reference_path(stack, hide):
    spec = (HideSpec() if hide == "nothing" else
            HideSpec(tuple(stack.species[:2]), region_from_bounds(_middle(stack), stack.grid.crs)))
    fast = members(stack, True)
    assert all(m.shared is not None for m in fast)
    ref_members = members(stack, False)
    assert all(m.shared is None for m in ref_members)
    kw = dict(hide=spec, draws=3, batch_size=2, device="cpu", window=96, overlap=32, seed=7)
    new = infill(stack, fast, **kw)
    ref = infill(stack, ref_members, **kw)
    assert new.window_evaluations == ref.window_evaluations
    np.testing.assert_array_equal(np.isnan(new.mean), np.isnan(ref.mean))
    np.testing.assert_allclose(new.mean, ref.mean, atol=1e-5, equal_nan=True)
    # the spread is sqrt(E[p²] - E[p]²) in float32: compare variances (the square root magnifies
    # rounding where the spread is near 0)
    np.testing.assert_allclose(new.std ** 2, ref.std ** 2, atol=2e-6, equal_nan=True)
    assert np.isfinite(new.mean).any()


def test_model_without_aux_bands_runs_split(stack):
    fast, ref = members(stack, True, 1, with_aux=False), members(stack, False, 1, with_aux=False)
    assert fast[0].shared is not None
    new = infill(stack, fast, draws=2, device="cpu", window=96, overlap=32)
    old = infill(stack, ref, draws=2, device="cpu", window=96, overlap=32)
    np.testing.assert_allclose(new.mean, old.mean, atol=1e-5, equal_nan=True)


def _middle(stack):
    g = stack.grid
    x0, y1 = g.transform * (40, 30)
    x1, y0 = g.transform * (150, 120)
    return (x0, y0, x1, y1)


def test_running_statistics_equal_the_stacked_evaluations(stack):
    """The accumulators (weight, weighted sum, weighted sum of squares) give the mean and spread
    of all evaluations stacked: four models, one window covering the grid (every weight 1)."""
    from core.inference import infer

    calls: list[torch.Tensor] = []

    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2 * S + A, S, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            calls.append(torch.sigmoid(y).detach().clone())
            return y

    _, card = tiny_context_unet(stack)
    ensemble = []
    for k in range(4):
        torch.manual_seed(k)
        ensemble.append(infer.EnsembleMember(Recording().eval(), card, f"rec{k}"))
    res = infill(stack, ensemble, HideSpec(tuple(stack.species)), batch_size=3, device="cpu",
                 window=256, overlap=32)
    probs = torch.cat(calls)[:, :, :stack.grid.height, :stack.grid.width].numpy()
    assert probs.shape[0] == 4
    valid = stack.valid
    np.testing.assert_allclose(res.mean[:, valid], probs.mean(0)[:, valid], atol=1e-5)
    np.testing.assert_allclose(res.std[:, valid], probs.std(0)[:, valid], atol=1e-4)


def test_a_member_keeps_one_copy_of_the_folded_weights_and_the_model_unchanged(stack):
    model, card = tiny_context_unet(stack)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 2 * S + A, 64, 64)
    with torch.inference_mode():
        ref = model(x)
    member = inference_member(model, card, "m")
    ptrs = lambda m: {p.data_ptr() for p in m.parameters()}  # noqa: E731
    whole, split = ptrs(member.model.backbone), ptrs(member.shared.backbone)
    # all but the first convolution's (split into its per-draw share in the split model)
    assert len(whole & split) == len(whole) - 2
    with torch.inference_mode():
        torch.testing.assert_close(member.model(x.contiguous(memory_format=torch.channels_last)), ref,
                                   atol=2e-4, rtol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    bf16 = inference_member(model, card, "m", precision="bf16")
    assert not ptrs(bf16.model.backbone) & ptrs(bf16.shared.backbone)
    assert next(bf16.model.parameters()).dtype == torch.float32


def test_draw_inputs_equal_the_model_inputs_per_draw_half():
    """core.model.inputs.draw_inputs: bit-equal to model_inputs' first 2S channels, for uint8,
    bool and float presence, views included."""
    from core.model.inputs import draw_inputs, model_inputs

    g = torch.Generator().manual_seed(5)
    presence = (torch.rand(2, 4, 9, 11, generator=g) < 0.3).to(torch.uint8)
    hidden = torch.rand(2, 4, 9, 11, generator=g) < 0.5
    valid = torch.rand(2, 9, 11, generator=g) < 0.8
    no_aux = torch.zeros(2, 0, 9, 11)
    for p in (presence, presence.bool(), presence.float(), presence[:, :, :, 2:]):
        h, v = hidden[..., -p.shape[-1]:], valid[..., -p.shape[-1]:]
        want = model_inputs(p, h, no_aux[..., -p.shape[-1]:], v)
        got = draw_inputs(p, h, v)
        assert got.dtype == torch.float32 and torch.equal(got, want)
