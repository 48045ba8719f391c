"""Inference precision: float32 on every device by default (TF32 off on CUDA while inferring),
bf16 as an option for the split U-Net's backbone where bf16 is native."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.synthetic import synthetic_stack
from core.device import bf16_native, check_precision, exact_float32
from core.errors import InputError
from core.inference.infer import inference_member, infill
from tests.test_infer_shared_aux import S, A, tiny_context_unet

needs_bf16 = pytest.mark.skipif(not bf16_native(torch.device("cpu")),
                                reason="this CPU has no native bf16 (AVX512-BF16/AMX)")


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(96, 128, n_species=S, n_aux=A, seed=3)


def test_exact_float32_turns_tf32_off_on_cuda_and_restores_it():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with exact_float32(torch.device("cuda")):  # only sets flags: needs no GPU
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with exact_float32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_unknown_precision_is_refused():
    with pytest.raises(InputError, match="fp32, bf16"):
        check_precision("fp16", torch.device("cpu"))


def test_bf16_needs_a_split_model(stack):
    model, card = tiny_context_unet(stack)
    with pytest.raises(InputError, match="without --bf16"):
        inference_member(model, card, "m", shared_aux=False, precision="bf16")


@needs_bf16
def test_bf16_map_is_close_to_float32_and_says_so(stack):
    model, card = tiny_context_unet(stack)
    fp32 = inference_member(model, card, "m")
    model, card = tiny_context_unet(stack)
    bf16 = inference_member(model, card, "m", precision="bf16")
    assert next(bf16.shared.backbone.parameters()).dtype == torch.bfloat16
    kw = dict(draws=2, device="cpu", window=64, overlap=16, seed=3)
    ref = infill(stack, [fp32], **kw)
    new = infill(stack, [bf16], precision="bf16", **kw)
    assert "bf16" in new.device and "bf16" not in ref.device
    np.testing.assert_array_equal(np.isnan(new.mean), np.isnan(ref.mean))
    diff = np.abs(new.mean - ref.mean)
    assert np.nanmax(diff) > 0          # it did run in bf16
    assert np.nanmean(diff) < 5e-3 and np.nanmax(diff) < 0.1
    with pytest.raises(ValueError, match="precision='fp32'"):
        infill(stack, [bf16], **kw)     # members run in the precision they were loaded for
