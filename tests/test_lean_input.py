"""The lean input path (:mod:`core.model.lean_input`, and the context model's ``cell_shuffle``):
shapes and arithmetic of each option, the old path unchanged, the aux share split off the 1 × 1
reduction exactly, and the model file's round trip."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.data.synthetic import synthetic_stack
from core.inference.infer import inference_member, infill, prepare_for_inference
from core.model.context import ContextModel
from core.model.inputs import model_inputs
from core.model.lean_input import ReducedInput, reduction_of
from core.model.model_file import ModelCard, card_problems, load_model, save_model
from core.model.models import ModelConfig, build_model
from core.model.shared_aux import SharedAuxModel

S, A = 3, 2
BASE = {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [1.5, 4], "aux_sigmas": [2]}
LEAN = {
    "reduction": {"input_reduction": 8},
    "reduction_stem3": {"input_reduction": 8, "stem_kernel": 3},
    "reduction_stem3_stages4": {"input_reduction": 8, "stem_kernel": 3, "encoder_stages": 4,
                                "decoder_channels": [16, 8, 8, 8]},
    "shuffle2_reduction_stem3_stages4": {"cell_shuffle": 2, "input_reduction": 8, "stem_kernel": 3,
                                         "encoder_stages": 4, "decoder_channels": [16, 8, 8, 8]},
}


def config(**options) -> ModelConfig:
    return ModelConfig(arch="unet", in_channels=2 * S + A, classes=S, encoder_depth=18, options={**BASE, **options})


def lively(model: nn.Module, seed: int = 1) -> nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm statistics and head (as after training)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        if isinstance(model, ContextModel):
            model.head.weight.normal_(0, 0.05)
            model.head.bias.normal_(0, 0.05)
            if model.cell_head is not None:
                model.cell_head.weight.normal_(0, 0.05)
    return model.eval()


def inputs(b: int = 3, h: int = 64, w: int = 96, seed: int = 2) -> torch.Tensor:
    """Model inputs of ``b`` draws of one window (the same aux bands in each)."""
    torch.manual_seed(seed)
    presence = (torch.rand(b, S, h, w) < 0.1).float()
    hidden = torch.rand(b, S, h, w) < 0.4
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[:, :, :20] = False
    aux = torch.randn(1, A, h, w).expand(b, -1, -1, -1)
    return model_inputs(presence, hidden, aux, valid)


@pytest.mark.parametrize("name", sorted(LEAN))
def test_lean_model_shapes(name):
    model = build_model(config(**LEAN[name])).eval()
    assert isinstance(model.backbone, ReducedInput)
    assert model.backbone.input_reduction.out_channels == 8
    assert model.backbone.net.encoder.conv1.in_channels == 8
    kernel = LEAN[name].get("stem_kernel", 7)
    assert model.backbone.net.encoder.conv1.kernel_size == (kernel, kernel)
    if "encoder_stages" in LEAN[name]:
        assert not hasattr(model.backbone.net.encoder, "layer4")  # never run: not built, not stored
    with torch.no_grad():
        for h, w in ((64, 64), (64, 96)):
            assert model(inputs(2, h, w)).shape == (2, S, h, w)


def test_the_old_path_is_unchanged():
    """Without the lean options the model is built exactly as before: smp's U-Net in the context
    model, the same parameter names, shapes and outputs for the same seed."""
    import segmentation_models_pytorch as smp

    cfg = config()
    torch.manual_seed(0)
    new = build_model(cfg)
    torch.manual_seed(0)
    old = ContextModel(lambda c, classes: smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=c, classes=S,
                                          decoder_channels=BASE["decoder_channels"]),
                       2 * S + A, S, BASE["context_sigmas"], BASE["aux_sigmas"])
    assert reduction_of(new.backbone) is None and new.backbone.encoder.conv1.kernel_size == (7, 7)
    assert [(k, v.shape) for k, v in new.state_dict().items()] == [(k, v.shape) for k, v in old.state_dict().items()]
    for a, b in zip(new.state_dict().values(), old.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x), old.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(LEAN))
def test_lean_models_cost_fewer_multiply_adds(name):
    from torch.utils.flop_counter import FlopCounterMode

    def flops(model):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs(1, 64, 64))
        return counter.get_total_flops()

    assert flops(build_model(config(**LEAN[name])).eval()) < 0.75 * flops(build_model(config()).eval())


@pytest.mark.parametrize("name", sorted(LEAN))
def test_aux_share_splits_off_the_reduction(name):
    """:class:`SharedAuxModel` splits the 1 × 1 reduction (not the stem) and gives the model's logits."""
    model = lively(build_model(config(**LEAN[name])))
    assert SharedAuxModel.supports(model)
    split = SharedAuxModel(copy.deepcopy(model), prepare_for_inference)
    f = LEAN[name].get("cell_shuffle", 1)
    assert split.stem.conv.kernel_size == (1, 1)
    assert split.stem.conv.in_channels == f * f * 2 * S + split.context.channels
    x = inputs()
    with torch.inference_mode():
        ref = model(x)
        terms = split.aux_terms(x[:1, 2 * S:])
        assert terms.stem.shape == (1, 8, x.shape[2] // f, x.shape[3] // f)  # k channels per block of f x f cells
        out = split(x[:, :2 * S].contiguous(memory_format=torch.channels_last), terms)
    torch.testing.assert_close(out, ref, atol=2e-4, rtol=1e-4)


def card_for(stack, cfg: ModelConfig) -> ModelCard:
    return ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"crs": stack.grid.crs.to_string(), "resolution": stack.grid.resolution},
                     tile_size=32, model=cfg.to_dict(), threshold=0.4,
                     masking={"scenarios": {"region": 1.0, "species": 1.0, "both": 1.0}, "species_k": [1, 2],
                              "region_fraction": 0.5, "region_shape": "mixed", "blob_scale": 8})


@pytest.mark.parametrize("name", sorted(LEAN))
def test_model_file_round_trip(tmp_path, name):
    """Saved and loaded through the model file (safetensors + JSON card): the card is valid, the
    weights are the same and so are the outputs; the split inference path equals the whole model's."""
    stack = synthetic_stack(96, 128, n_species=S, n_aux=A, seed=5)
    cfg = config(**LEAN[name])
    model = lively(build_model(cfg))
    card = card_for(stack, cfg)
    assert card_problems(card) == []
    path = save_model(tmp_path / "lean.safetensors", model, card)
    loaded, card2 = load_model(path)
    assert card2.model == cfg.to_dict()
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    fast = inference_member(loaded, card2, "fast")
    assert fast.shared is not None
    ref = inference_member(load_model(path)[0], card2, "ref", shared_aux=False)
    kw = dict(draws=2, batch_size=2, device="cpu", window=64, overlap=16, seed=3)
    torch.testing.assert_close(torch.from_numpy(infill(stack, [fast], **kw).mean),
                               torch.from_numpy(infill(stack, [ref], **kw).mean), atol=1e-5, rtol=0, equal_nan=True)


def test_bad_lean_options_are_refused():
    for options in ({"stem_kernel": 5}, {"encoder_stages": 2}, {"input_reduction": -1}):
        with pytest.raises(ValueError):
            build_model(config(**options))


def test_split_lean_model_runs_in_bf16():
    """The bf16 path (``predict --bf16``) casts the reduction with the backbone; its aux share follows."""
    model = lively(build_model(config(**LEAN["reduction_stem3"])))
    split = SharedAuxModel(copy.deepcopy(model), prepare_for_inference).use_bfloat16()
    x = inputs()
    with torch.inference_mode():
        terms = split.aux_terms(x[:1, 2 * S:])
        assert terms.stem.dtype == torch.bfloat16
        out = split(x[:, :2 * S].contiguous(memory_format=torch.channels_last), terms)
        ref = model(x)
    assert out.dtype == torch.float32
    assert (torch.sigmoid(out) - torch.sigmoid(ref)).abs().max() < 0.05


def test_cell_shuffle_works_on_blocks_of_cells():
    """With ``cell_shuffle`` 2 the backbone sees each 2 x 2 block of cells as 4 channels per input
    (nothing averaged away: the same block means with other cells give other logits), the context
    features read the block means at half the scales, the logits come back per cell, and the cell
    head sees each cell's own visible records and aux bands."""
    model = lively(build_model(config(cell_shuffle=2, **LEAN["reduction_stem3_stages4"])))
    plain = build_model(config(**LEAN["reduction_stem3_stages4"]))
    assert model.cell_shuffle == 2 and model.context.sigmas == [s / 2 for s in BASE["context_sigmas"]]
    assert model.backbone.input_reduction.in_channels == (4 * plain.backbone.input_reduction.in_channels
                                                           - 3 * (model.context.channels + model.aux_context.channels))
    assert model.head.out_channels == 4 * S and model.head.in_channels == model.context.channels + model.aux_context.channels
    assert (model.cell_head.in_channels, model.cell_head.out_channels) == (S + A, S)
    x = inputs(1)
    swapped = x.clone()  # the two cells of each block's top row swapped: the same block means
    swapped[..., 0::2, 0::2], swapped[..., 0::2, 1::2] = x[..., 0::2, 1::2], x[..., 0::2, 0::2]
    with torch.no_grad():
        torch.testing.assert_close(model.context(torch.nn.functional.avg_pool2d(x, 2)),
                                   model.context(torch.nn.functional.avg_pool2d(swapped, 2)))
        out, out_swapped = model(x), model(swapped)
    assert out.shape == (1, S, 64, 96)
    assert not torch.allclose(out, out_swapped)


def test_cell_shuffle_needs_context_and_no_prior():
    with pytest.raises(ValueError, match="context_sigmas"):
        build_model(ModelConfig(arch="unet", in_channels=2 * S + A, classes=S, options={"cell_shuffle": 2}))
    with pytest.raises(ValueError, match="aux prior"):
        build_model(config(**LEAN["shuffle2_reduction_stem3_stages4"], aux_prior=8))
    with pytest.raises(ValueError, match="cell_shuffle"):
        build_model(config(cell_shuffle=0))
    with pytest.raises(ValueError, match="encoder_stages 4 or fewer"):  # 2 x 2^5 cells would not divide the windows
        build_model(config(cell_shuffle=2))


def test_cell_block_presets_match_the_compared_variant():
    """``train --preset bundled_blocks`` trains what ``compare --preset bundled --variants unet_blocks``
    trains (one definition: presets.with_cell_blocks), and that model runs on the training tiles."""
    from core.evaluation.compare import variant_config
    from core.training.presets import PRESETS
    from core.training.train import TrainConfig

    base, blocks = (TrainConfig().with_overrides(PRESETS[n]) for n in ("bundled", "bundled_blocks"))
    assert variant_config(base, "unet_blocks", 3) == blocks.with_overrides({"seed": 3})
    assert blocks.steps == 3 * base.steps and blocks.model_options["cell_shuffle"] == 2
    cfg = ModelConfig(arch="unet", in_channels=2 * S + A, classes=S, encoder_depth=18, options=blocks.model_options)
    with torch.no_grad():
        assert build_model(cfg).eval()(inputs(1, blocks.tile_size, blocks.tile_size)).shape == (1, S, 64, 64)
