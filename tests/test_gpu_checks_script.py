"""``scripts/gpu_checks.py``: the timing stack the GPU checks run on keeps the stack's grid, valid
cells and records, carries the model's aux band names and normalisation, and a model takes it."""
import sys
from pathlib import Path

import numpy as np

from core.data.stack import Stack
from core.data.synthetic import synthetic_stack
from core.inference.infer import infill
from core.model.model_file import read_card, save_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_checks  # noqa: E402


def test_timing_stack_round_trip(tmp_path):
    from test_infer_shared_aux import tiny_context_unet

    stack = synthetic_stack(70, 90, n_species=3, n_aux=2, seed=4)
    stack_file = stack.write(tmp_path / "stack.tif")
    model, card = tiny_context_unet(stack)
    model_file = save_model(tmp_path / "m.safetensors", model, card)
    gpu_checks.write_records(stack_file, tmp_path / "records.npz")
    gpu_checks.unpack(tmp_path / "records.npz", tmp_path / "timing.tif", model_file)
    timing = Stack.read(tmp_path / "timing.tif")
    assert timing.grid == stack.grid and timing.species == stack.species
    np.testing.assert_array_equal(timing.valid, stack.valid)
    np.testing.assert_array_equal(timing.presence, stack.presence)
    assert [(b.name, b.mean, b.std) for b in timing.aux_bands] == \
        [(b["name"], b["mean"], b["std"]) for b in read_card(model_file).aux_bands]
    assert np.isfinite(infill(timing, [model_file], device="cpu", window=64, overlap=16).mean).any()
