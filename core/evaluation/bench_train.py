"""Benchmarks that print a ratio against a baseline measured in the same run.

``train``: training throughput (tiles/s) of our pipeline — the stack held as tensors on the
device, tiles gathered and masks drawn for the whole batch in a few vectorised operations,
bf16 autocast on CUDA — against a naive reference: a torch ``DataLoader`` over a ``Dataset``
that crops and masks one tile at a time with numpy, and an fp32 model. Same architecture,
loss, optimizer and batch size.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np
import torch
from scipy import ndimage

from ..data.stack import Stack
from ..device import GpuUtilisation, pick_device
from ..masks.masking import SCENARIOS
from ..model.inputs import model_inputs
from ..model.models import build_model
from ..training.loss import masked_loss
from ..training.train import Trainer, TrainConfig


DATA_BATCHES = 10  # batches timed for the data-preparation-only rates


class NaiveTiles(torch.utils.data.Dataset):
    """The reference pipeline: per-sample numpy crop and mask (one tile per ``__getitem__``)."""

    def __init__(self, stack: Stack, origins: np.ndarray, config: TrainConfig, length: int, seed: int = 0):
        self.stack, self.origins, self.config, self.length, self.seed = stack, origins, config, length, seed

    def __len__(self) -> int:
        return self.length

    def _region(self, rng: np.random.Generator, k: int) -> np.ndarray:
        spec = self.config.mask
        if rng.random() < 0.5:
            area = spec.region_fraction * k * k
            aspect = np.exp(rng.uniform(-np.log(2), np.log(2)))
            rh = int(np.clip(round(np.sqrt(area * aspect)), 1, k))
            rw = int(np.clip(round(area / rh), 1, k))
            top, left = rng.integers(0, k - rh + 1), rng.integers(0, k - rw + 1)
            m = np.zeros((k, k), bool)
            m[top:top + rh, left:left + rw] = True
            return m
        cell = spec.blob_scale
        lattice = rng.standard_normal((k // cell + 2, k // cell + 2))
        field = ndimage.zoom(lattice, cell, order=1)[:k, :k]
        return field >= np.quantile(field, 1 - spec.region_fraction)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, i])
        k, s = self.config.tile_size, len(self.stack.species)
        r, c = self.origins[rng.integers(len(self.origins))]
        presence = self.stack.presence[:, r:r + k, c:c + k].astype(np.float32)
        aux = self.stack.aux[:, r:r + k, c:c + k].astype(np.float32)
        valid = self.stack.valid[r:r + k, c:c + k].copy()
        weights = np.array([self.config.mask.scenarios.get(x, 0.0) for x in SCENARIOS])
        scenario = SCENARIOS[rng.choice(3, p=weights / weights.sum())]
        lo, hi = self.config.mask.species_k
        chosen = rng.choice(s, size=min(s, rng.integers(lo, hi + 1)), replace=False)
        hidden = np.zeros((s, k, k), bool)
        region = self._region(rng, k)
        for sp in range(s):
            if scenario == "region":
                hidden[sp] = region
            elif sp in chosen:
                hidden[sp] = True if scenario == "species" else region
        x = model_inputs(torch.from_numpy(presence)[None], torch.from_numpy(hidden)[None],
                         torch.from_numpy(aux)[None], torch.from_numpy(valid)[None])[0]
        return x, torch.from_numpy(presence), torch.from_numpy(hidden), torch.from_numpy(valid)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def bench_train(stack: Stack, config: TrainConfig, device: torch.device, steps: int = 5, warmup: int = 2,
                workers: Optional[int] = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Tiles/s of both pipelines (model step included) and of their data preparation alone."""
    config = replace(config, steps=warmup + steps, val_every=0)
    b = config.batch_size

    # ours
    trainer = Trainer(stack, config, device)
    t0 = time.perf_counter()
    for i in range(DATA_BATCHES):
        tiles, hidden = trainer.batch(i)
        model_inputs(tiles.presence, hidden, tiles.aux, tiles.valid)
    _sync(device)
    ours_data = DATA_BATCHES * b / (time.perf_counter() - t0)
    _peak_reset(device)
    for _ in range(warmup):
        trainer.train_step()
    _sync(device)
    utilisation = GpuUtilisation(device)
    with utilisation:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        _sync(device)
        ours = steps * b / (time.perf_counter() - t0)
    ours_mem = _peak_gib(device)
    origins = trainer.origins.cpu().numpy()
    model_config = trainer.model_config
    del trainer
    _peak_reset(device)

    # naive reference
    if workers is None:
        workers = 0 if device.type == "cpu" else min(4, max(0, (os.cpu_count() or 1) - 1))
    def loader(n_batches: int, seed: int) -> torch.utils.data.DataLoader:
        data = NaiveTiles(stack, origins, config, length=b * n_batches, seed=seed)
        return torch.utils.data.DataLoader(data, batch_size=b, shuffle=False, num_workers=workers)

    t0 = time.perf_counter()
    for _ in loader(DATA_BATCHES, 1):
        pass
    naive_data = DATA_BATCHES * b / (time.perf_counter() - t0)
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    it = iter(loader(warmup + steps, 0))
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, target, hidden, valid = (t.to(device) for t in next(it))
        loss = masked_loss(model(x), target, hidden, valid, config.loss)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    naive = steps * b / (time.perf_counter() - t0)
    naive_mem = _peak_gib(device)
    return {"device": str(device), "batch_size": b, "tile_size": config.tile_size,
            "encoder_depth": config.encoder_depth, "steps_timed": steps, "naive_workers": workers,
            "ours_tiles_per_s": ours, "naive_tiles_per_s": naive, "ratio": ours / naive,
            "ours_data_tiles_per_s": ours_data, "naive_data_tiles_per_s": naive_data,
            "data_ratio": ours_data / naive_data, "ours_peak_gib": ours_mem, "naive_peak_gib": naive_mem,
            "ours_data_share_of_step": ours / ours_data, "ours_gpu_utilisation_percent": utilisation.mean}


def format_train_bench(r: dict[str, Any]) -> str:
    lines = [f"bench train on {r['device']}: batch {r['batch_size']} tiles of {r['tile_size']} cells, "
             f"resnet{r['encoder_depth']} U-Net, {r['steps_timed']} timed steps",
             f"  training step (data + forward + backward + AdamW):",
             f"    ours  {r['ours_tiles_per_s']:9.1f} tiles/s   (vectorised masks on the device"
             f"{', bf16 autocast' if r['device'].startswith('cuda') else ''})",
             f"    naive {r['naive_tiles_per_s']:9.1f} tiles/s   (per-sample numpy masking in a DataLoader with "
             f"{r['naive_workers']} workers, fp32)",
             f"    ratio {r['ratio']:9.2f} x",
             f"  data preparation alone: ours {r['ours_data_tiles_per_s']:.0f} tiles/s, naive "
             f"{r['naive_data_tiles_per_s']:.0f} tiles/s, ratio {r['data_ratio']:.1f} x",
             f"  ours' data preparation is {100 * r['ours_data_share_of_step']:.0f} % of its step time (it runs in the "
             "step, so the model waits that long)"]
    if r["device"].startswith("cuda"):
        util = r["ours_gpu_utilisation_percent"]
        lines.append("  GPU utilisation during ours' steps: " + ("unknown (no NVML)" if util is None else f"{util:.0f} %"))
    if r["ours_peak_gib"] is not None:
        lines.append(f"  peak GPU memory: ours {r['ours_peak_gib']:.2f} GiB, naive {r['naive_peak_gib']:.2f} GiB")
    return "\n".join(lines)


def run_train_bench(stack: Stack, config: TrainConfig, device_pref: str = "auto", steps: int = 5,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    device, why = pick_device(device_pref)
    log(f"device: {why}")
    result = bench_train(stack, config, device, steps=steps, log=log)
    log(format_train_bench(result))
    return result
