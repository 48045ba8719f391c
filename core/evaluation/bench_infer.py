"""``bench infer``: throughput of :func:`core.inference.infer.infill` against a naive reference measured in
the same run, and what a 150-evaluation CONUS map would take at that rate.

- ours: :func:`infill` as the CLI and plugin run it, ``draws`` evaluations of each window —
  windows of up to 8 tiles (the U-Net is fully convolutional, so a window larger than the
  training tile is a legitimate input; less work goes into overlaps and each forward pass is
  large enough to run efficiently), blended overlaps, what the aux bands alone determine computed
  once per window for all draws (:mod:`core.model.shared_aux`), batches of draws of a window,
  channels-last tensors, ``torch.inference_mode``, float32 (on CUDA without TF32);
- ours in bf16 (where bf16 is native: CUDA, or a CPU with AVX512-BF16/AMX): the same with the
  U-Net's backbone in bf16 (``predict --bf16``), and how far its map is from float32's on the
  CONUS map's workload (nothing hidden by the user, the model's own mask draws, the same seed):
  the largest and mean change of probability, and the ROC AUC of the part's records under each;
- whole model: the same as ours, but the whole model runs for every evaluation (the path before
  the aux share was split off; kept as the reference of ``tests/test_infer_shared_aux.py``);
- naive: one non-overlapping tile of the training size at a time, float32, batch of one,
  contiguous (NCHW) tensors, ``torch.no_grad``, the same input encoding and the same model;
- the arithmetic floor (:func:`arithmetic_floor`), in float32 and bf16: the model's
  multiply-adds per evaluation as if each ran at the measured rate of a reference convolution (the
  v0.4.1 model's stem over the per-draw channels, about the core's peak; the same for every model); how
  far ours is from it, and the CONUS map's least time on this machine with this model and window
  layout.

All infill every valid cell of every species (hidden in every evaluation); rates are per
evaluation. All run under the heap policy infill keeps (:func:`core.inference.heap.kept_heap`:
freed memory reused, not faulted in afresh), the naive reference and the floor's convolution too.
On CPU they run on a fixed part of the grid (:data:`CPU_PART`, all land on the CONUS stack), on
CUDA on the whole grid; they alternate ``repeats`` times after a warm-up and the best time of each
counts (other work on a shared machine slows both the same way). Rates are in megacells ("megapixels") per second of grid
covered per evaluation.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..data.stack_sources import GeoTiffStackSource, open_stack_source
from ..device import GpuUtilisation, bf16_native, exact_float32, pick_device
from ..inference.heap import kept_heap
from ..inference.infer import (EnsembleMember, _Infiller, default_overlap, default_window, inference_member,
                               infill)
from ..inference.sliding_windows import WindowLayout, round_up
from ..masks.hiding import HideSpec
from ..progress import SilentProgress
from ..model.inputs import model_inputs
from ..model.model_file import load_model
from ..model.shared_aux import SharedAuxModel

CPU_PART = (500, 400, 512, 512)  # row, col, height, width on the CONUS 1-mile stack (all land)
EVALUATIONS = 150                # the paper's 3 seeds x 50 draws


@dataclass
class PartDraws:
    """One member's mask draws over :data:`CPU_PART` as ``predict`` lays out one window there (the
    CONUS map's workload: nothing hidden by the user, the model's own draws), for scripts that time
    a draw's steps (``docs/results/lean_model/draw_parts.py``, ``docs/results/speed/heap_faults.py``)."""

    run: _Infiller
    presence: torch.Tensor     # (S, H, W) the part's records
    aux: torch.Tensor          # (A, H, W)
    valid: torch.Tensor        # (H, W)
    user: torch.Tensor         # (S, H, W) hidden by the user: nothing
    user_target: torch.Tensor  # the same for the model's output species

    def draw(self, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``d``'s hidden cells and target."""
        return self.run._draw(0, d, 0, self.user, self.valid, self.user_target)


def part_draws(stack_path: str | Path, member: EnsembleMember) -> PartDraws:
    """:class:`PartDraws` of ``member`` over the stack file's :data:`CPU_PART`, on the CPU."""
    r, c, h, w = CPU_PART
    stack = GeoTiffStackSource(stack_path).read_window(r, c, h, w)
    hide = HideSpec(())
    run = _Infiller(open_stack_source(stack), [member], hide, 50, 4, torch.device("cpu"), SilentProgress(),
                    WindowLayout.fitted(h, w, 512, 64), 0)
    presence, aux, valid = (torch.from_numpy(a) for a in (stack.presence, stack.aux, stack.valid))
    user = torch.from_numpy(run.flags).view(-1, 1, 1) & torch.from_numpy(hide.cells(stack.grid, stack.valid))
    return PartDraws(run, presence, aux, valid, user, user.index_select(0, run.out_index))


def naive_infill(stack, model: torch.nn.Module, tile: int, with_aux: bool, device: torch.device,
                 aux_index: Optional[list[int]] = None) -> np.ndarray:
    """The reference: one tile at a time, float32, batch 1, no overlap (hard tile edges).
    ``aux_index``: the model's aux bands among the stack's (None: all, in order)."""
    t = int(tile)
    s, (h, w) = len(stack.species), stack.grid.shape
    out = np.full((s, h, w), np.nan, np.float32)
    with torch.no_grad():
        for r in range(0, h, t):
            for c in range(0, w, t):
                win = stack.window(r, c, min(t, h - r), min(t, w - c))
                if not win.valid.any():
                    continue
                pad = ((0, t - win.grid.height), (0, t - win.grid.width))
                presence = torch.from_numpy(np.pad(win.presence, ((0, 0),) + pad))[None].to(device)
                aux = torch.from_numpy(np.pad(win.aux, ((0, 0),) + pad))[None].to(device)
                valid = torch.from_numpy(np.pad(win.valid, pad))[None].to(device)
                if not with_aux:
                    aux = aux[:, :0]
                elif aux_index is not None:
                    aux = aux[:, aux_index]
                hidden = torch.ones_like(presence, dtype=torch.bool)
                p = torch.sigmoid(model(model_inputs(presence, hidden, aux, valid)))[0].cpu().numpy()
                hh, ww = win.grid.shape
                out[:, r:r + hh, c:c + ww] = np.where(win.valid, p[:, :hh, :ww], np.nan)
    return out


def _bf16_figures(stack, fp32_member: EnsembleMember, bf16_member: EnsembleMember, draws: int, run_kw: dict,
                  seconds: float, seconds_naive: float, conus_per_second: float) -> dict[str, float]:
    """How much faster bf16 is, and how far its map is from float32's on the CONUS map's workload
    (nothing hidden by the user; each cell scored over the draws that hid it)."""
    from .discovery import roc_auc

    fp32, bf16 = (infill(stack, [m], HideSpec(), draws=draws, precision=m.precision, **run_kw).mean
                  for m in (fp32_member, bf16_member))
    diff = np.abs(bf16 - fp32)
    aucs = []
    for k in range(len(stack.species)):
        cells = np.isfinite(fp32[k])
        aucs.append((roc_auc(fp32[k][cells], stack.presence[k][cells]), roc_auc(bf16[k][cells], stack.presence[k][cells])))
    aucs = [a for a in aucs if not np.isnan(a[0])]
    return {"seconds_ours_bf16": seconds, "ratio_bf16": seconds_naive / seconds,
            "conus_150_evaluations_hours_bf16": conus_per_second * seconds / 3600,
            "bf16_mean_abs_difference": float(np.nanmean(diff)), "bf16_max_abs_difference": float(np.nanmax(diff)),
            "bf16_cells_changed_over_0_01": float(np.nanmean(diff > 0.01)),
            "auc_fp32": float(np.mean([a[0] for a in aucs])), "auc_bf16": float(np.mean([a[1] for a in aucs]))}


def arithmetic_floor(member: EnsembleMember, size: int, draws: int, device: torch.device,
                     repeats: int = 3) -> Optional[dict[str, float]]:
    """The least time an evaluation could take on this machine at this model's arithmetic: the
    multiply-adds of one draw of a ``size`` window (torch's ``FlopCounterMode``; the aux share
    counted once per ``draws``) as if every one ran at the measured rate of :func:`reference_conv`
    (the v0.4.1 model's stem on its per-draw channels, the dearest layer of that model; oneDNN
    runs it at about the core's peak). The same reference for every model, so that the floors of
    lean models (whose first convolution is a cheap 1 x 1 or 3 x 3) compare with the old one's.
    Element-wise work is not counted, so no schedule of this model and window layout beats it.
    None for a model that is not a split U-Net."""
    # its import warns that triton is missing (it counts no triton kernel here: none runs)
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    from torch.utils.flop_counter import FlopCounterMode

    shared = member.shared
    if shared is None:
        return None
    s, a = shared.n_species, shared.n_aux
    conv = reference_conv(2 * s + shared.context.channels, device, shared.dtype)
    draw = torch.zeros(1, 2 * s, size, size, device=device).contiguous(memory_format=torch.channels_last)
    aux = torch.zeros(1, a, size, size, device=device)
    stem_in = torch.zeros(1, conv.in_channels, size, size, device=device, dtype=shared.dtype
                          ).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), exact_float32(device):
        with FlopCounterMode(display=False) as counter:
            terms = shared.aux_terms(aux)
        aux_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            shared(draw, terms)
        draw_flops = counter.get_total_flops()
        best = float("inf")
        for _ in range(repeats + 1):  # the first pays for kernel selection
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            conv(stem_in)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    out_h, out_w = (-(-size // st) for st in conv.stride)
    stem_macs = conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] * out_h * out_w
    rate = stem_macs / best
    macs = (draw_flops + aux_flops / draws) / 2
    return {"macs_per_cell": macs / size ** 2, "stem_gmacs_per_s": rate / 1e9,
            "seconds_per_cell": macs / size ** 2 / rate}


def reference_conv(channels: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Conv2d:
    """The rate reference of :func:`arithmetic_floor`: a ResNet stem (7 x 7, stride 2, 64
    outputs, no bias) over ``channels`` inputs (the per-draw channels, 2S + the context features),
    channels-last, random weights (the rate does not depend on them)."""
    conv = torch.nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return conv.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()


def _random_member(source) -> EnsembleMember:
    """A U-Net with random weights shaped like the ``quick`` preset's, for the stack (when no
    model file is given: throughput does not depend on the weights)."""
    from ..model.model_file import ModelCard
    from ..model.models import ModelConfig, build_model
    from ..training.presets import preset

    quick = preset("quick")
    s, a = len(source.species), len(source.aux_bands)
    cfg = ModelConfig(arch="unet", in_channels=2 * s + a, classes=s, encoder_depth=quick["encoder_depth"],
                      options=dict(quick.get("model_options", {})))
    card = ModelCard(species=list(source.species), aux_bands=[vars(b) for b in source.aux_bands],
                     grid={"crs": source.grid.crs.to_string(), "resolution": source.grid.resolution},
                     tile_size=quick["tile_size"], model=cfg.to_dict())
    model = build_model(cfg).eval()
    return EnsembleMember(model, card, f"random-weight U-Net shaped like the quick preset")


def _active_windows(source, layout: WindowLayout) -> int:
    """Windows of the layout holding a valid cell of blend weight above 0 (what infill runs per
    evaluation)."""
    n = 0
    cols, h, w = layout.cols.starts, layout.rows.size, layout.cols.size
    c0 = cols[0]
    span = cols[-1] + w - c0
    for i, r in enumerate(layout.rows.starts):
        v = source.read_valid(r, c0, h, span)
        n += sum(bool((v[:, c - c0:c - c0 + w] & (layout.weights(i, j) > 0)).any()) for j, c in enumerate(cols))
    return n


def _valid_tiles(source, tile: int) -> int:
    n = 0
    g = source.grid
    for r in range(0, g.height, tile):
        v = source.read_valid(r, 0, tile, g.width)
        n += sum(bool(v[:, c:c + tile].any()) for c in range(0, g.width, tile))
    return n


def _peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2 ** 30 if sys.platform == "darwin" else 2 ** 20)


def bench_infer(stack_path: str | Path, model_path: Optional[str | Path] = None, device: str = "auto",
                batch_size: int = 4, window: Optional[int] = None, overlap: Optional[int] = None,
                repeats: int = 2, part: Optional[tuple[int, int, int, int]] = None,
                draws: int = 4, log=print) -> dict[str, Any]:
    """Time ours, the whole-model path and the naive reference on the same cells (see the module
    docstring); returns the figures, also logged line by line."""
    dev, why = pick_device(device)
    load0 = os.getloadavg()[0]
    log(f"device: {why}; torch threads: {torch.get_num_threads()}; load average {load0:.2f}")
    full = GeoTiffStackSource(stack_path)
    try:
        with kept_heap():  # the heap policy infill runs under, for the naive reference and the floor too
            return _bench(full, model_path, dev, why, load0, batch_size, window, overlap, repeats, part, draws, log)
    finally:
        full.close()


def _bench(full: GeoTiffStackSource, model_path: Optional[str | Path], dev: torch.device, why: str, load0: float,
           batch_size: int, window: Optional[int], overlap: Optional[int], repeats: int,
           part: Optional[tuple[int, int, int, int]], draws: int, log) -> dict[str, Any]:
    if model_path:
        model, card = load_model(model_path, dev)
        member = EnsembleMember(model, card, Path(model_path).name)
    else:
        member = _random_member(full)
        member.model.to(dev)
    # the reference runs the model as loaded; ours as infill prepares it
    naive_model = copy.deepcopy(member.model).to(memory_format=torch.contiguous_format)
    whole = inference_member(copy.deepcopy(member.model), member.card, member.name, shared_aux=False)
    bf16 = None
    if bf16_native(dev) and SharedAuxModel.supports(member.model):
        bf16 = inference_member(copy.deepcopy(member.model), member.card, member.name, precision="bf16")
    member = inference_member(member.model, member.card, member.name)
    members = [member]
    if part is None and dev.type == "cpu":
        part = CPU_PART
    if part is not None:
        r, c, h, w = part
        h, w = min(h, full.grid.height - r), min(w, full.grid.width - c)
        stack = full.read_window(r, c, h, w)
        where = f"part rows {r}:{r + h}, cols {c}:{c + w} of {full.path.name}"
    else:
        stack = full.read_window(0, 0, full.grid.height, full.grid.width)
        where = f"the whole grid of {full.path.name}"
    g = stack.grid
    cells = g.height * g.width
    size = round_up(window or default_window(members))
    ov = default_overlap(member.card.tile_size) if overlap is None else overlap
    hide = HideSpec(tuple(stack.species))
    log(f"model: {member.name} ({member.card.model_config.arch} resnet{member.card.model_config.encoder_depth}, "
        f"tile {member.card.tile_size}); {where}: {g.height} x {g.width} cells, "
        f"{int(stack.valid.sum())} valid; ours: {WindowLayout.fitted(g.height, g.width, size, ov).describe()}, "
        f"{draws} draws, batch {batch_size}; aux share split off: {member.shared is not None}")

    def ours(ensemble: list[EnsembleMember]) -> tuple[float, float, Any]:
        """Seconds and CPU seconds per evaluation, and the result."""
        if dev.type == "cuda":
            torch.cuda.synchronize()
        c0, t0 = time.process_time(), time.perf_counter()
        res = infill(stack, ensemble, hide, draws=draws, batch_size=batch_size, device=dev, window=size,
                     overlap=ov, precision=ensemble[0].precision)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / draws, (time.process_time() - c0) / draws, res

    tile = int(member.card.tile_size)
    aux_index = member.card.aux_index(full.aux_names)

    def naive() -> tuple[float, float, np.ndarray]:
        c0, t0 = time.process_time(), time.perf_counter()
        out = naive_infill(stack, naive_model, tile, member.with_aux, dev, aux_index)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0, out

    # warm-up: the first pass of each shape pays for kernel selection
    warm = stack.window(0, 0, min(g.height, size), min(g.width, size))
    for ensemble in (members, [whole]) + (([bf16],) if bf16 else ()):
        infill(warm, ensemble, HideSpec(tuple(stack.species)), batch_size=batch_size, device=dev, window=size,
               overlap=ov, precision=ensemble[0].precision)
    naive_infill(warm.window(0, 0, min(warm.grid.height, tile), min(warm.grid.width, tile)), naive_model,
                 tile, member.with_aux, dev, aux_index)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_ours, t_naive, t_whole, t_bf16, cpu_ours, cpu_naive = [], [], [], [], [], []
    res = ref = None
    utilisation = GpuUtilisation(dev)
    for i in range(repeats):
        dt, cpu, ref = naive()
        t_naive.append(dt)
        cpu_naive.append(cpu)
        with utilisation:
            dt, cpu, res = ours(members)
        t_ours.append(dt)
        cpu_ours.append(cpu)
        t_whole.append(ours([whole])[0])
        if bf16:
            dt, _, _ = ours([bf16])
            t_bf16.append(dt)
        log(f"  round {i + 1}, seconds per evaluation: naive {t_naive[-1]:.2f} (CPU time {cpu_naive[-1]:.2f}), "
            f"ours {t_ours[-1]:.2f} (CPU time {cpu_ours[-1]:.2f}), whole model {t_whole[-1]:.2f}"
            + (f", ours in bf16 {t_bf16[-1]:.2f}" if bf16 else ""))
    best_ours, best_naive, best_whole = min(t_ours), min(t_naive), min(t_whole)
    rate_ours, rate_naive = cells / best_ours / 1e6, cells / best_naive / 1e6
    mean = res.mean
    agree = float(np.nanmean(np.abs(mean - ref)))

    # CONUS estimates from the time per computed cell (the part's windows may be smaller)
    part_layout = WindowLayout.fitted(g.height, g.width, size, ov)
    per_cell_ours = best_ours * draws / max(1, res.window_evaluations * part_layout.rows.size
                                            * part_layout.cols.size)
    n_part_tiles = _valid_tiles(open_stack_source(stack), tile)
    per_tile = best_naive / max(1, n_part_tiles)
    layout = WindowLayout.fitted(full.grid.height, full.grid.width, size, ov)
    n_windows = _active_windows(full, layout)
    n_tiles = _valid_tiles(full, tile)
    conus_cells = EVALUATIONS * n_windows * layout.rows.size * layout.cols.size
    est_ours = conus_cells * per_cell_ours
    est_naive = EVALUATIONS * n_tiles * per_tile
    est_whole = est_ours * best_whole / best_ours
    part_cells = res.window_evaluations * part_layout.rows.size * part_layout.cols.size / draws
    floors = {name: f for name, m in (("float32", member), ("bf16", bf16))
              if m is not None and (f := arithmetic_floor(m, size, draws, dev)) is not None}
    load1 = os.getloadavg()[0]
    peak_rss = _peak_rss_gib()
    out = {"device": why, "threads": torch.get_num_threads(), "model": member.name, "where": where,
           "load_average_before_after": [load0, load1],
           "cells": cells, "window": size, "overlap": ov, "batch_size": batch_size,
           "seconds_ours": t_ours, "seconds_naive": t_naive,
           "cpu_seconds_ours": cpu_ours, "cpu_seconds_naive": cpu_naive,
           "cpu_time_ratio": min(cpu_naive) / min(cpu_ours),
           "mcells_per_s_ours": rate_ours, "mcells_per_s_naive": rate_naive,
           "ratio": rate_ours / rate_naive, "draws": draws,
           "seconds_whole_model": t_whole, "ratio_whole_model": best_naive / best_whole,
           "ratio_ours_vs_whole_model": best_whole / best_ours,
           "peak_resident_memory_gib": peak_rss,
           "mean_abs_difference_ours_vs_naive": agree,
           "conus_grid": [full.grid.height, full.grid.width], "conus_windows": n_windows,
           "conus_layout": layout.describe(),
           "conus_tiles": n_tiles,
           "conus_150_evaluations_hours_ours": est_ours / 3600,
           "conus_150_evaluations_hours_naive": est_naive / 3600,
           "conus_150_evaluations_hours_whole_model": est_whole / 3600,
           "conus_ratio": est_naive / est_ours}
    for name, f in floors.items():
        out[f"floor_{name}"] = dict(f, seconds_per_evaluation=f["seconds_per_cell"] * part_cells,
                                    conus_150_evaluations_hours=f["seconds_per_cell"] * conus_cells / 3600)
    if bf16:
        out.update(_bf16_figures(stack, member, bf16, draws, dict(batch_size=batch_size, device=dev, window=size,
                                                                  overlap=ov), min(t_bf16), best_naive,
                                 est_ours / best_ours))
    if dev.type == "cuda":
        out["gpu_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
        out["gpu_utilisation_percent"] = utilisation.mean
    log(f"ours : {rate_ours:.3f} Mcells/s per evaluation (best of {repeats}: {best_ours:.2f} s)")
    log(f"whole model per evaluation: {cells / best_whole / 1e6:.3f} Mcells/s ({best_whole:.2f} s)")
    log(f"naive: {rate_naive:.3f} Mcells/s (best of {repeats}: {best_naive:.2f} s)")
    log(f"ratio: {out['ratio']:.2f}x wall-clock, {out['cpu_time_ratio']:.2f}x process CPU time   "
        f"(mean |ours - naive| = {agree:.4f}: blended windows vs hard tiles); whole model "
        f"{out['ratio_whole_model']:.2f}x; ours vs whole model {out['ratio_ours_vs_whole_model']:.2f}x")
    if load0 > 1.0 or load1 > torch.get_num_threads() + 1.0:  # the bench's own threads count in load1
        log(f"note: load average {load0:.1f} → {load1:.1f}: other work shared the CPU; rerun on an idle machine "
            "for numbers to quote (the naive reference's many small steps suffer more from sharing)")
    log(f"CONUS {full.grid.height} x {full.grid.width}, {EVALUATIONS} evaluations at these rates: ours "
        f"{n_windows} active windows ({layout.describe()}) → {est_ours / 60:.1f} min; whole model "
        f"→ {est_whole / 60:.1f} min; naive {n_tiles} tiles x {per_tile * 1000:.0f} ms → {est_naive / 60:.1f} min "
        f"(ratio {est_naive / est_ours:.2f}x; ours counts the aux share once per {draws} draws, a map of 50 "
        "draws per model pays it less often)")
    if bf16:
        log(f"ours in bf16: {min(t_bf16):.2f} s per evaluation, ratio {out['ratio_bf16']:.2f}x, CONUS "
            f"{out['conus_150_evaluations_hours_bf16'] * 60:.1f} min; its map against float32's: |change| mean "
            f"{out['bf16_mean_abs_difference']:.2e}, largest {out['bf16_max_abs_difference']:.3f}, over 0.01 at "
            f"{100 * out['bf16_cells_changed_over_0_01']:.2f} % of the scored cells; ROC AUC of the part's records "
            f"(mean over species) {out['auc_fp32']:.4f} in float32, {out['auc_bf16']:.4f} in bf16 (the CONUS map's "
            f"workload: nothing hidden, {draws} draws, each cell over the draws that hid it)")
    else:
        log("ours in bf16: not timed (needs CUDA or a CPU with AVX512-BF16/AMX, and a split U-Net)")
    for name in floors:
        f = out[f"floor_{name}"]
        spent = min(t_bf16) if name == "bf16" else best_ours
        log(f"arithmetic floor in {name}: {f['macs_per_cell'] / 1e3:.0f} k multiply-adds per cell and evaluation "
            f"at the reference convolution's measured {f['stem_gmacs_per_s']:.0f} GMAC/s → "
            f"{f['seconds_per_evaluation']:.2f} s per evaluation here (ours takes {spent / f['seconds_per_evaluation']:.2f}x "
            f"that), CONUS {EVALUATIONS} evaluations ≥ {f['conus_150_evaluations_hours'] * 60:.1f} min with this "
            "model and window layout")
    log(f"peak resident memory of this process: {peak_rss:.2f} GiB")
    if "gpu_peak_memory_gib" in out:
        util = out["gpu_utilisation_percent"]
        log(f"GPU peak memory: {out['gpu_peak_memory_gib']:.2f} GiB; utilisation while ours ran: "
            f"{'unknown (no NVML)' if util is None else f'{util:.0f}% on average'}")
    return out


def floor_figures(stack_path: str | Path, model_path: Optional[str | Path] = None, draws: int = 50,
                  device: str = "cpu", window: Optional[int] = None, overlap: Optional[int] = None,
                  repeats: int = 5) -> dict[str, Any]:
    """:func:`arithmetic_floor` alone (no timed infill): the model's multiply-adds per cell and
    evaluation in the window layout ``bench infer`` and ``predict`` use, with the aux share paid
    once per ``draws``, and the least time of the 150-evaluation map of the whole grid at the
    reference convolution's rate measured now. For comparing models' arithmetic quickly."""
    dev, why = pick_device(device)
    full = GeoTiffStackSource(stack_path)
    try:
        if model_path:
            model, card = load_model(model_path, dev)
            member = inference_member(model, card, Path(model_path).name)
        else:
            raw = _random_member(full)
            member = inference_member(raw.model.to(dev), raw.card, raw.name)
        size = round_up(window or default_window([member]))
        ov = default_overlap(member.card.tile_size) if overlap is None else overlap
        with kept_heap():  # as bench_infer measures it
            floor = arithmetic_floor(member, size, draws, dev, repeats)
        if floor is None:
            raise ValueError(f"{member.name}: no arithmetic floor for a model that is not a split U-Net")
        layout = WindowLayout.fitted(full.grid.height, full.grid.width, size, ov)
        n_windows = _active_windows(full, layout)
        conus_cells = EVALUATIONS * n_windows * layout.rows.size * layout.cols.size
        return dict(floor, model=member.name, device=why, threads=torch.get_num_threads(), window=size, overlap=ov,
                    draws=draws, conus_windows=n_windows, conus_cells_per_evaluation=conus_cells / EVALUATIONS,
                    conus_150_evaluations_minutes=floor["seconds_per_cell"] * conus_cells / 60)
    finally:
        full.close()
