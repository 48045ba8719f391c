"""The ViT baseline: same inputs and outputs as the U-Net, registered in the model factory."""
from __future__ import annotations

import torch

from core.model.inputs import model_inputs
from core.model.models import MODEL_BUILDERS, ModelConfig, build_model
from core.model.vit import PatchViT, sincos_position_codes


def test_vit_is_a_registered_architecture_with_the_unets_shapes():
    s, a = 3, 2
    cfg = ModelConfig(arch="vit", in_channels=2 * s + a, classes=s, options={"patch": 4, "embed_dim": 32,
                                                                           "depth": 1, "heads": 2})
    vit = build_model(cfg)
    unet = build_model(ModelConfig(arch="unet", in_channels=2 * s + a, classes=s, encoder_depth=18))
    assert isinstance(vit, PatchViT) and "vit" in MODEL_BUILDERS
    presence = (torch.rand(2, s, 32, 32) < 0.2).to(torch.uint8)
    hidden = torch.rand(2, s, 32, 32) < 0.5
    x = model_inputs(presence, hidden, torch.randn(2, a, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool))
    assert vit(x).shape == unet(x).shape == (2, s, 32, 32)


def test_vit_handles_tiles_not_a_multiple_of_the_patch_and_learns():
    torch.manual_seed(0)
    vit = PatchViT(in_channels=4, classes=2, patch=8, embed_dim=32, depth=1, heads=4)
    assert vit(torch.randn(1, 4, 37, 21)).shape == (1, 2, 37, 21)
    x = torch.randn(4, 4, 16, 16)
    y = (x[:, :2] > 0).float()  # a per-pixel function of the input
    opt = torch.optim.AdamW(vit.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(vit(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_position_codes_differ_between_patches():
    codes = sincos_position_codes(4, 5, 16)
    assert codes.shape == (20, 16)
    assert torch.cdist(codes, codes).add(torch.eye(20) * 10).min() > 1e-3
