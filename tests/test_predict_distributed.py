"""``predict`` under torchrun: two CPU processes (gloo) share out the windows and write the same
GeoTIFF as one process (within float rounding: the sums are added in another order)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.data.synthetic import synthetic_stack
from core.model.model_file import save_model

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_the_one_process_geotiff(tmp_path):
    from test_infer_shared_aux import tiny_context_unet

    stack = synthetic_stack(150, 190, n_species=3, n_aux=2, seed=5)
    stack_file = stack.write(tmp_path / "stack.tif")
    model, card = tiny_context_unet(stack)
    model_file = save_model(tmp_path / "m.safetensors", model, card)
    common = ["predict", "--stack", str(stack_file), "--models", str(model_file), "--draws", "3",
              "--window", "96", "--overlap", "32", "--device", "cpu", "--no-quicklook"]
    two, one = tmp_path / "two.tif", tmp_path / "one.tif"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                          str(ROOT / "train_cli.py"), *common, "--out", str(two)],
                         env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote") == 1  # rank 0 alone reports and writes
    subprocess.run([sys.executable, str(ROOT / "train_cli.py"), *common, "--out", str(one)], check=True,
                   env=_env(), cwd=ROOT, capture_output=True, timeout=600)
    with rasterio.open(two) as a, rasterio.open(one) as b:
        assert a.descriptions == b.descriptions and a.transform == b.transform
        x, y = a.read(), b.read()
        n = a.count // 2
    np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
    assert np.isfinite(x).any()
    np.testing.assert_allclose(x[:n], y[:n], atol=1e-5, equal_nan=True)      # means
    np.testing.assert_allclose(x[n:] ** 2, y[n:] ** 2, atol=2e-6, equal_nan=True)  # variances
