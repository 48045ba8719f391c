"""``bench train`` runs both pipelines in one process and reports their ratio (no timing asserted)."""
import torch

from core.evaluation.bench_train import NaiveTiles, bench_train, format_train_bench
from core.data.synthetic import synthetic_stack
from core.masks.tiles import HoldoutSplit
from core.training.train import TrainConfig


def test_bench_train_measures_both_pipelines_on_the_same_model():
    stack = synthetic_stack(128, 128, n_species=3, n_aux=2, seed=0)
    cfg = TrainConfig(tiles=20, tile_size=32, batch_size=2, holdout=HoldoutSplit(block_size=32),
                      model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    r = bench_train(stack, cfg, torch.device("cpu"), steps=1, warmup=1)
    assert r["ours_tiles_per_s"] > 0 and r["naive_tiles_per_s"] > 0
    assert r["ratio"] == r["ours_tiles_per_s"] / r["naive_tiles_per_s"]
    assert r["ours_peak_gib"] is None  # GPU memory only on CUDA
    assert "ratio" in format_train_bench(r)


def test_naive_reference_masks_like_the_spec():
    stack = synthetic_stack(128, 128, n_species=3, n_aux=2, seed=0)
    cfg = TrainConfig(tile_size=32).with_overrides({"mask.scenarios": {"region": 1.0}, "mask.region_fraction": 0.5})
    data = NaiveTiles(stack, [(0, 0), (40, 40)], cfg, length=4)
    x, presence, hidden, valid = data[1]
    assert x.shape == (2 * 3 + 2, 32, 32) and presence.shape == hidden.shape == (3, 32, 32)
    assert torch.equal(hidden[0], hidden[2])  # region scenario: every species hidden in the same cells
    assert abs(hidden[0].float().mean().item() - 0.5) < 0.05


def test_bench_memory_runs_predict_per_configuration(tmp_path):
    """``bench memory`` runs predict in a fresh process per (models, draws) and reports each peak
    (no memory figure is asserted: it is a measurement)."""
    import pytest

    from core.errors import InputError
    from core.evaluation.bench_memory import bench_memory, parse_configs
    from core.model.model_file import save_model
    from test_infer_shared_aux import tiny_context_unet

    stack = synthetic_stack(96, 160, n_species=3, n_aux=2, seed=1)
    stack_file = stack.write(tmp_path / "stack.tif")
    model, card = tiny_context_unet(stack)
    model_file = save_model(tmp_path / "m.safetensors", model, card)
    lines = []
    r = bench_memory(stack_file, model_file, "cpu", parse_configs("1x1,2x2"), log=lines.append)
    assert [(x["models"], x["draws"]) for x in r["runs"]] == [(1, 1), (2, 2)]
    assert all(x["rss_gib"] > 0 and x["gpu_gib"] is None for x in r["runs"])
    assert r["runs"][1]["growth_gib"] == r["runs"][1]["rss_gib"] - r["runs"][0]["rss_gib"]
    assert any("growth" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "stack.tif"]  # nothing left
    with pytest.raises(InputError, match="models x draws"):
        parse_configs("3by4")


def test_gpu_utilisation_sampler_can_be_entered_again():
    """bench infer samples the GPU in every timed round: the sampler starts a thread each time."""
    from core.device import GpuUtilisation

    sampler = GpuUtilisation(torch.device("cuda"), every=0.01)  # without NVML or a GPU: no sample
    for _ in range(2):
        with sampler:
            pass
    assert sampler.mean is None
    with GpuUtilisation(torch.device("cpu")) as cpu:
        pass
    assert cpu.mean is None
