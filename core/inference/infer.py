"""Continent-scale infilling: sliding windows with blended seams over a stack, an ensemble of
model files × random mask draws, and the mean probability and spread of every hidden cell.

What each evaluation hides (one evaluation = one model file × one mask draw):

- the user's hidden set (:class:`core.masks.hiding.HideSpec`), in every evaluation;
- plus, when ``draws > 1`` or the user hides nothing, a random extra mask drawn from the
  model's own masking configuration (its card's ``masking``, the generator training used:
  :func:`core.masks.masking.draw_masks`). Draws are tied to the grid, not to the windows: the grid is
  cut into blocks of the model's tile size (on a lattice whose origin each draw shifts at
  random, so that block edges do not line up across draws) and block row ``i`` of draw ``d`` of
  model ``m`` is a pure function of ``(seed, m, d, i)``; overlapping windows see the same mask
  and shifting the windows changes nothing but the context at their edges.

Statistics, per species and cell, are taken over the evaluations in which the cell was hidden:
with a user hidden set those are all evaluations, on the user's cells only (the extra draws
vary the context around them); with nothing hidden by the user (the "where might minerals be"
map, like the paper's 3 seeds × 50 draws) each cell's mean is over the draws that hid it, and
cells never hidden are left empty (NaN).

Seams: every window's prediction is weighted by :mod:`core.inference.sliding_windows`' taper (a partition
of unity). The mean is exactly the ensemble mean of the blended maps. The spread is that of the
weighted mixture of (evaluation, window) predictions, which equals the ensemble's standard
deviation away from the overlaps and in them also counts how much the two windows disagree;
it is continuous across seams.

Windows are larger than the training tile (the U-Net is fully convolutional; by default up to
8 × the tile side, at least 512 cells, fitted to the grid) so that less work goes into the
overlaps (a region up to 512 cells across is one window) and each forward pass is large enough
to run efficiently. With the quick model, hiding
Au or Cu in a 256 × 256 region, windows of 64, 128, 256 and 512 cells gave the same average
precision within noise (Au 0.129/0.125/0.115/0.130, Cu 0.085/0.084/0.087/0.085).

Memory: the stack is read one strip of window rows at a time; the accumulators hold one strip;
finished rows go to the output (a GeoTIFF written by row blocks), so the peak does not grow with
the grid's height.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..data.grid import Grid
from ..data.stack import Stack, stack_fingerprint
from ..data.stack_sources import StackSource, open_stack_source
from ..device import check_precision, exact_float32, pick_device
from ..errors import InputError, ModelMismatchError
from ..masks.hiding import HideSpec, UnrecordedRegion
from ..model.inputs import draw_inputs, model_inputs
from ..model.shared_aux import AuxTerms, SharedAuxModel
from ..model.model_file import ModelCard, check_ensemble, ensemble_threshold, load_model
from ..progress import Progress, SilentProgress, check_cancelled
from .heap import kept_heap
from .sliding_windows import WindowLayout, round_up

MIN_WINDOW = 512      # default largest window side: at least this (cells)
WINDOW_TILES = 8      # ... and this many training tiles


@dataclass
class EnsembleMember:
    """One model file: the network (eval mode, on the device) and its card."""

    model: nn.Module
    card: ModelCard
    name: str
    aux_index: Optional[torch.Tensor] = None   # the model's aux bands among the stack's (None: all, in order)
    shared: Optional[SharedAuxModel] = None     # the same model split for many draws of a window (None: run ``model``)
    output: str = "presence"                    # which map the model returns (:func:`model_output`)
    precision: str = "fp32"                     # "bf16": the split model's backbone in bf16 (:func:`inference_member`)

    @property
    def with_aux(self) -> bool:
        """False for a model trained without the aux bands (2 × species input channels)."""
        return self.card.takes_aux


@dataclass
class InfillResult:
    """Per-species mean probability and standard deviation over the ensemble.

    ``mean``/``std`` are (len(species), H, W) float32 with NaN where no prediction was made
    (invalid cells, cells not hidden) when the result is kept in memory; when written to
    ``path`` they are None (use :meth:`read`)."""

    species: list[str]
    grid: Grid
    mean: Optional[np.ndarray]
    std: Optional[np.ndarray]
    path: Optional[Path]
    models: list[str]
    draws: int
    evaluations: int
    hide: str
    windows: str
    overlap: int
    threshold: float
    device: str
    seconds: float
    window_evaluations: int
    predicted_cells: dict[str, int] = field(default_factory=dict)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) arrays, from memory or from the written GeoTIFF."""
        if self.mean is not None:
            return self.mean, self.std
        from ..data.prediction_io import read_band

        mean = np.stack([read_band(self.path, f"mean_{s}") for s in self.species])
        std = np.stack([read_band(self.path, f"std_{s}") for s in self.species])
        return mean, std

    def tags(self) -> dict[str, Any]:
        return {"species": self.species, "models": self.models, "draws": self.draws,
                "evaluations": self.evaluations, "hide": self.hide, "windows": self.windows,
                "overlap": self.overlap, "threshold": self.threshold}


class _NoSink:
    """Where a rank other than 0 sends its rows (rank 0 writes the file)."""

    def write_rows(self, row0: int, mean: np.ndarray, std: np.ndarray) -> None:
        pass


class _ArraySink:
    """Keeps the whole result in memory (small grids, tests, the plugin's previews)."""

    def __init__(self, grid: Grid, n: int) -> None:
        self.mean = np.full((n,) + grid.shape, np.nan, np.float32)
        self.std = np.full((n,) + grid.shape, np.nan, np.float32)

    def write_rows(self, row0: int, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean[:, row0:row0 + mean.shape[1]] = mean
        self.std[:, row0:row0 + std.shape[1]] = std


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm into the convolution before it (one pass over the activations less;
    exact up to float rounding) and use channels-last tensors (oneDNN's fast convolutions on CPU,
    tensor cores on CUDA). A model that torch.fx cannot trace is left unfolded."""
    model = model.eval()
    try:
        from torch.fx.experimental.optimization import fuse

        model = fuse(model)
    except Exception:  # noqa: BLE001 — folding is an optimisation; any failure keeps the model as is
        pass
    return model.to(memory_format=torch.channels_last)


def inference_member(model: nn.Module, card: ModelCard, name: str, shared_aux: bool = True,
                     output: str = "presence", precision: str = "fp32") -> EnsembleMember:
    """A loaded model ready for inference: set to return ``output`` (:func:`model_output`; fixed
    from then on, since the preparation traces the model), BatchNorm folded, channels-last, and
    (``shared_aux``, for a context U-Net) split so that what the aux bands alone determine is
    computed once per window (:class:`core.model.shared_aux.SharedAuxModel`). ``precision``
    "bf16" runs the split model's backbone in bf16 (faster where bf16 is native, not exact; other
    models are refused)."""
    model = model_output(model.eval(), output, name)
    if not (shared_aux and SharedAuxModel.supports(model)):
        if precision == "bf16":
            raise InputError(f"{name}: bf16 inference needs a U-Net with context features (the bundled kind); "
                             "run this model without --bf16.")
        return EnsembleMember(prepare_for_inference(model), card, name, output=output, precision=precision)
    # the backbone folded once; the whole model (for the paths that run it) and the split model hold
    # the same folded weights in float32, so a member keeps one copy of them
    backbone = prepare_for_inference(model.backbone)
    whole = copy.deepcopy(model, {id(model.backbone): _sharing_weights(backbone)})
    shared = SharedAuxModel(model, lambda _: backbone if precision == "fp32" else copy.deepcopy(backbone))
    if precision == "bf16":
        shared.use_bfloat16()
    return EnsembleMember(whole.to(memory_format=torch.channels_last), card, name, shared=shared, output=output,
                          precision=precision)


def _sharing_weights(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (its own submodule objects, so that one can be swapped in either)
    holding the same parameter and buffer tensors."""
    memo: dict[int, Any] = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


def load_members(model_paths: Sequence[str | Path], device: torch.device,
                 shared_aux: bool = True, output: str = "presence", precision: str = "fp32") -> list[EnsembleMember]:
    """Load model files for inference (see :func:`inference_member`), on the device."""
    if not model_paths:
        raise InputError("No model file given; pass at least one .safetensors model.")
    check_precision(precision, device)
    members = []
    for p in model_paths:
        model, card = load_model(p, device)
        members.append(inference_member(model, card, Path(p).name, shared_aux, output, precision))
    return members


def model_output(model: nn.Module, output: str, name: str) -> nn.Module:
    """The model set to return ``output`` ("presence": its usual logits; "observation": a PU
    model's observation logits, one map repeated for every species; "record": a PU model's
    P(record) = presence × observation, as logits)."""
    from ..model.pu import OUTPUTS, PUModel

    if output not in OUTPUTS:
        raise InputError(f"Unknown model output '{output}'; choose one of {', '.join(OUTPUTS)}.")
    if output != "presence" and not isinstance(model, PUModel):
        raise InputError(f"{name} is not a PU model, so it has no {output} map; train one with "
                         "train --pu (or --preset quick_pu).")
    if isinstance(model, PUModel):
        model.output = output
    return model


def mask_spec_of(card: ModelCard):
    """The card's masking configuration as a :class:`core.masks.masking.MaskSpec` (defaults if none)."""
    from ..masks.masking import MaskSpec

    known = {f.name for f in fields(MaskSpec)}
    return MaskSpec.from_dict({k: v for k, v in (card.masking or {}).items() if k in known})


def default_window(members: Sequence[EnsembleMember]) -> int:
    """Larger than the tile for fully convolutional models (the U-Net); the tile otherwise (a
    ViT attends over the whole window, so a larger one would change what it computes)."""
    tile = max(int(m.card.tile_size) for m in members)
    if all(m.card.model_config.arch == "unet" for m in members):
        return round_up(max(MIN_WINDOW, WINDOW_TILES * tile))
    return round_up(tile)


def default_overlap(tile_size: int) -> int:
    """One tile (64 cells for 64-cell tiles). With the quick model on a 1024 × 1024 part of CONUS
    and 512-cell windows, shifting the window lattice changed cells near window edges by 0.0019 on
    average and cells away from them by 0.0026; with half a tile of overlap, 0.0076 vs 0.0021
    (see the README)."""
    return max(16, int(tile_size))


class _Infiller:
    """One infill run: plans the windows, runs the batches, accumulates, emits finished rows."""

    def __init__(self, source: StackSource, members: list[EnsembleMember], hide: HideSpec, draws: int,
                 batch_size: int, device: torch.device, progress: Progress, layout: WindowLayout,
                 seed: int) -> None:
        self.source, self.members, self.hide, self.draws = source, members, hide, draws
        self.batch_size, self.device, self.progress, self.layout, self.seed = (
            batch_size, device, progress, layout, seed)
        self.species = list(source.species)
        self.discovery = hide.is_empty
        self.flags = hide.species_flags(self.species)
        self.out_species = hide.output_species(self.species)
        self.out_index = torch.tensor([self.species.index(s) for s in self.out_species], device=device)
        self.all_species_out = self.out_species == self.species
        # asked where the unrecorded minerals are, the map shows the records themselves as known (1)
        self.show_records = isinstance(hide.region, UnrecordedRegion)
        self.extra = self.discovery or draws > 1
        self.specs = [mask_spec_of(m.card) if self.extra else None for m in members]
        self.rows, self.cols = layout.rows.starts, layout.cols.starts
        self.height, self.width = layout.rows.size, layout.cols.size   # of a window
        self.col0 = self.cols[0]
        self.span = self.cols[-1] + self.width - self.col0
        self.evaluations = len(members) * draws
        # draws of a window per forward pass of a split model: on a CPU one (a window of up to 512 x 512
        # cells keeps oneDNN busy; with the bundled model, 0.73 s per draw one at a time, 0.92 s in
        # fours, 1 thread), on CUDA the batch size
        self.forward_batch = batch_size if device.type == "cuda" else 1
        self._weights: dict[tuple[int, int], torch.Tensor] = {}
        # under torchrun: each rank runs every world-th active window of a strip; the strip's sums
        # are added over the ranks before its finished rows are emitted
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.world = torch.distributed.get_world_size() if distributed else 1
        self.rank = torch.distributed.get_rank() if distributed else 0
        self.window_evaluations = 0
        self.predicted = np.zeros(len(self.out_species), np.int64)
        # each model's map to calibrated probabilities for this kind of hiding (identity for an
        # uncalibrated card or a PU model's other outputs)
        scenario = hide.scenario(self.species)
        self._scales = {id(m): (m.card.calibration_maps().for_scenario(scenario)
                                if m.card.calibrated and m.output == "presence" else None) for m in members}

    # -- planning ---------------------------------------------------------------------------------
    def _strip_grid(self, r: int) -> Grid:
        return self.source.grid.window(r, self.col0, self.height, self.span)

    def plan(self) -> list[list[int]]:
        """For each window row, the window columns holding at least one cell to predict with a
        blend weight above 0 (a window whose cells to predict all lie in the dropped margins of its
        overlaps would add nothing: it is skipped)."""
        w = self.width
        active, cells = [], 0
        for i, r in enumerate(self.rows):
            valid = self.source.read_valid(r, self.col0, self.height, self.span)
            need = self.hide.cells(self._strip_grid(r), valid)
            active.append([j for j, c in enumerate(self.cols)
                           if (need[:, c - self.col0:c - self.col0 + w] & (self.layout.weights(i, j) > 0)).any()])
            cells += int(need.sum())
        if cells == 0:
            where = self.hide.region.description if self.hide.region is not None else "the stack"
            raise InputError(f"Nothing to predict: {where} holds no valid cell of the stack's grid. "
                             "Check the region and the CRS its coordinates are in.")
        return active

    # -- masks ------------------------------------------------------------------------------------
    def _extra_hidden(self, m: int, d: int, r: int) -> torch.Tensor:
        """(S, height, span) bool: draw ``d`` of model ``m`` over a strip: blocks of the model's
        tile size, each masked by the training generator, on a lattice fixed on the grid with an
        origin offset drawn per draw (so block edges fall elsewhere in every draw and average out)."""
        from ..masks.masking import generator_for, mask_factors

        b = int(self.members[m].card.tile_size)
        s = len(self.species)
        oy, ox = (int(v) for v in torch.randint(0, b, (2,), generator=generator_for(self.seed, m, d, 1 << 30)))
        bj_lo = -math.ceil(self.width / b) - 1                          # lattice columns fixed for the
        n = math.ceil((self.source.grid.width + self.width) / b) + 1 - bj_lo  # grid, whatever the windows
        top = r + oy                                                    # the strip in lattice rows
        bi0, bi1 = math.floor(top / b), math.floor((top + self.height - 1) / b)
        rows = bi1 + 1 - bi0
        where = torch.empty((rows, b, n, b), dtype=torch.bool)          # each block's cells, side by side
        which = torch.empty((s, rows, 1, n, 1), dtype=torch.bool)       # each block's hidden species
        for i, bi in enumerate(range(bi0, bi1 + 1)):
            spatial, species, _ = mask_factors(self.specs[m], n, s, b, b, generator_for(self.seed, m, d, bi))
            where[i].copy_(spatial.permute(1, 0, 2))
            which[:, i, 0, :, 0].copy_(species.t())
        full = (where.unsqueeze(0) & which).view(s, rows * b, n * b)    # one pass over the strip's cells
        rr, cc = top - bi0 * b, self.col0 + ox - bj_lo * b
        return full[:, rr:rr + self.height, cc:cc + self.span].to(self.device)

    # -- batches ----------------------------------------------------------------------------------
    def _window_weights(self, i: int, j: int) -> torch.Tensor:
        key = (0 if i == 0 else (2 if i == len(self.rows) - 1 else 1),
               0 if j == 0 else (2 if j == len(self.cols) - 1 else 1))
        if key not in self._weights:
            self._weights[key] = torch.from_numpy(self.layout.weights(i, j)).to(self.device)
        return self._weights[key]

    def _member_aux(self, member: EnsembleMember, aux: torch.Tensor) -> torch.Tensor:
        """The member's aux bands among the stack's (none for a model trained without them)."""
        if not member.with_aux:
            return aux[:0]
        return aux if member.aux_index is None else aux.index_select(0, member.aux_index)

    def _run_batch(self, member: EnsembleMember, jobs: list[tuple], acc: torch.Tensor,
                   terms: Optional[AuxTerms] = None) -> None:
        """jobs: (i, j, presence, hidden, aux, valid, target) window views; adds to ``acc``.
        With ``terms`` (all jobs then draws of one window) the member's split model runs on the
        per-draw channels only."""
        check_cancelled(self.progress)
        def batch(k: int) -> torch.Tensor:  # one job's view as it is (no copy), or the jobs stacked
            return jobs[0][k].unsqueeze(0) if len(jobs) == 1 else torch.stack([jb[k] for jb in jobs])
        presence, hidden, valid = batch(2), batch(3), batch(5)
        with torch.inference_mode():
            if terms is not None:
                x = draw_inputs(presence, hidden, valid)
                logits = member.shared(x, terms)  # (its per-draw buffer takes the channel planes as they are)
            else:
                aux = batch(4)
                x = model_inputs(presence, hidden, aux, valid).contiguous(memory_format=torch.channels_last)
                logits = member.model(x)
        with torch.inference_mode():
            p = torch.sigmoid(logits.float())
            if not self.all_species_out:
                p = p.index_select(1, self.out_index)
            if (scale := self._scales.get(id(member))) is not None:
                p = scale.apply(p)
            for b, (i, j, *_rest, target) in enumerate(jobs):
                c = self.cols[j] - self.col0
                wt = self._window_weights(i, j) * target
                wp = wt * p[b]
                view = acc[:, :, :, c:c + self.width]
                view[0] += wt
                view[1] += wp
                view[2].addcmul_(wp, p[b])
        self.window_evaluations += len(jobs)
        self.progress.advance(len(jobs))

    def _aux_terms(self, member: EnsembleMember, aux: torch.Tensor, valid: torch.Tensor) -> AuxTerms:
        """The aux bands' share of the member's model on one window (once for all its draws)."""
        with torch.inference_mode():
            return member.shared.aux_terms((aux * valid.to(aux.dtype)).unsqueeze(0))

    def _draw(self, m: int, d: int, r: int, user: torch.Tensor, valid: torch.Tensor,
              user_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, target) over the strip at row ``r`` in draw ``d`` of model ``m``."""
        check_cancelled(self.progress)
        hidden = (user | self._extra_hidden(m, d, r)) if self.extra else user
        if not self.discovery:
            target = user_target
        else:
            target = hidden & valid
            if not self.all_species_out:
                target = target.index_select(0, self.out_index)
        return hidden, target

    def _strip(self, i: int, cols: list[int], acc: torch.Tensor) -> None:
        """All evaluations of the active windows of window row ``i``. A split model
        (``member.shared``) runs batches of draws of one window, with the aux bands' share
        computed once per window; any other model batches windows and draws as they come."""
        r, size = self.rows[i], self.width
        win = self.source.read_window(r, self.col0, self.height, self.span)
        dev = self.device
        presence = torch.from_numpy(win.presence).to(dev)
        aux = torch.from_numpy(win.aux).to(dev)
        valid = torch.from_numpy(win.valid).to(dev)
        need = torch.from_numpy(self.hide.cells(win.grid, win.valid)).to(dev)
        user = torch.from_numpy(self.flags).to(dev).view(-1, 1, 1) & need
        user_target = user.index_select(0, self.out_index)
        for m, member in enumerate(self.members):
            aux_m = self._member_aux(member, aux)

            def job(j: int, hidden: torch.Tensor, target: torch.Tensor) -> Optional[tuple]:
                c = self.cols[j] - self.col0
                t = target[:, :, c:c + size]
                if self.discovery and not bool((t & (self._window_weights(i, j) > 0)).any()):
                    self.progress.advance(1)
                    return None
                return (i, j, presence[:, :, c:c + size], hidden[:, :, c:c + size], aux_m[:, :, c:c + size],
                        valid[:, c:c + size], t)

            if member.shared is None:
                jobs: list[tuple] = []
                for d in range(self.draws):
                    hidden, target = self._draw(m, d, r, user, valid, user_target)
                    for j in cols:
                        if (jb := job(j, hidden, target)) is not None:
                            jobs.append(jb)
                        if len(jobs) == self.batch_size:
                            self._run_batch(member, jobs, acc)
                            jobs = []
                if jobs:
                    self._run_batch(member, jobs, acc)
                continue
            # the strip's masks of batch_size draws at a time (memory does not grow with the draws);
            # the aux terms of each window once (memory: one model's, for one strip of windows)
            terms: dict[int, AuxTerms] = {}
            for d0 in range(0, self.draws, self.batch_size):
                draws = [self._draw(m, d, r, user, valid, user_target)
                         for d in range(d0, min(d0 + self.batch_size, self.draws))]
                for j in cols:
                    jobs = [jb for hidden, target in draws if (jb := job(j, hidden, target)) is not None]
                    if not jobs:
                        continue
                    if j not in terms:
                        c = self.cols[j] - self.col0
                        terms[j] = self._aux_terms(member, aux_m[:, :, c:c + size], valid[:, c:c + size])
                    for k in range(0, len(jobs), self.forward_batch):
                        self._run_batch(member, jobs[k:k + self.forward_batch], acc, terms[j])

    def _emit(self, i: int, acc: torch.Tensor, sink) -> None:
        """Write the rows that no later window touches, then slide the accumulators up."""
        r, size, stride = self.rows[i], self.height, self.layout.rows.stride
        last = i == len(self.rows) - 1
        n = size if last else stride
        lo, hi = max(r, 0), min(r + n, self.source.grid.height)
        if hi > lo:
            w = self.source.grid.width
            mean = np.empty((len(self.out_species), hi - lo, w), np.float32)
            std = np.empty_like(mean)
            for k in range(len(self.out_species)):  # one species at a time: small temporaries
                wsum, s1, s2 = acc[:, k, lo - r:hi - r, -self.col0:-self.col0 + w]
                has = wsum > 0
                m = s1 / torch.where(has, wsum, torch.ones_like(wsum))
                var = (s2 / torch.where(has, wsum, torch.ones_like(wsum))).sub_(m * m).clamp_min_(0)
                mean[k] = m.masked_fill_(~has, float("nan")).cpu().numpy()
                std[k] = var.sqrt_().masked_fill_(~has, float("nan")).cpu().numpy()
                self.predicted[k] += int(has.sum())
                if self.show_records:
                    known = self.source.read_presence(self.species.index(self.out_species[k]), lo, 0, hi - lo, w)
                    known &= ~has.cpu().numpy()
                    mean[k][known], std[k][known] = 1.0, 0.0
            sink.write_rows(lo, mean, std)
        if not last:
            if self.rank != 0:  # rank 0 carries the rows already summed over the ranks
                acc.zero_()
                return
            for k in range(acc.shape[1]):  # slide up, one species at a time
                acc[:, k, :size - stride] = acc[:, k, stride:].clone()
            acc[:, :, size - stride:] = 0

    def run(self, sink) -> None:
        with exact_float32(self.device):
            self._run(sink)

    def _run(self, sink) -> None:
        active = self.plan()
        self.progress.start(sum(len(a) for a in active) * self.evaluations, "infill (window evaluations)")
        acc = torch.zeros((3, len(self.out_species), self.height, self.span), dtype=torch.float32,
                          device=self.device)
        for i, cols in enumerate(active):
            check_cancelled(self.progress)
            mine = [j for k, j in enumerate(cols) if (k + i) % self.world == self.rank]  # rotates by strip
            if mine:
                self._strip(i, mine, acc)
            if self.world > 1:
                torch.distributed.all_reduce(acc)
            self._emit(i, acc, sink)
        if self.world > 1:
            count = torch.tensor([self.window_evaluations], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(count)
            self.window_evaluations = int(count.item())


def _resolve_device(device: Optional[str | torch.device]) -> tuple[torch.device, str]:
    if isinstance(device, torch.device):
        return device, str(device)
    return pick_device(device or "auto")


def check_members(members: list[EnsembleMember], source: StackSource) -> None:
    """Every model must fit the stack (species, aux bands, resolution); notes where each model's
    aux bands are among the stack's (a stack may hold more)."""
    for mb in members:
        try:
            mb.card.check_stack(source)
            index = mb.card.aux_index(source.aux_names)
        except ModelMismatchError as e:
            raise ModelMismatchError(f"{mb.name}: {e}") from None
        mb.aux_index = None if index is None else torch.tensor(index, device=next(mb.model.parameters()).device)


def infill(stack: Stack | StackSource | str | Path,
           model_paths: Sequence[str | Path] | Sequence[EnsembleMember],
           hide: Optional[HideSpec] = None,
           draws: int = 1,
           batch_size: int = 4,
           device: Optional[str | torch.device] = None,
           progress: Optional[Progress] = None,
           *,
           out: Optional[str | Path] = None,
           window: Optional[int] = None,
           overlap: Optional[int] = None,
           seed: int = 0,
           offset: tuple[int, int] = (0, 0),
           output: str = "presence",
           precision: str = "fp32") -> InfillResult:
    """Infill a stack (in memory, or a stack GeoTIFF read by windows) with an ensemble of model
    files × ``draws`` mask draws and return per-species mean probability and spread.

    ``model_paths``: model files (loaded with :func:`load_members`), or members already loaded
    (used as they are). With ``out`` the result is written there (GeoTIFF, atomically) and not
    kept in memory.
    ``window``/``overlap`` (cells) default to :func:`default_window`/:func:`default_overlap` of
    the models' tile size; ``offset`` (rows, cols) shifts the window lattice (for seam tests).
    ``output`` "observation" maps the observation probability of PU models (:mod:`core.model.pu`)
    instead of the presence probability, in the same layout (one band pair per species, equal
    bands: the observation is shared by the species); "record" maps their P(record).
    ``precision``: "fp32" (the default; on CUDA without TF32, so a GPU's map equals a CPU's within
    float rounding) or "bf16" (:func:`inference_member`; faster, not exact).
    Cancel through ``progress.cancelled()``: checked between batches; nothing is written then.
    In a process group (``torchrun``; :func:`torch.distributed.is_initialized`) the windows of each
    strip are shared out over the ranks, their sums added, and rank 0 alone writes ``out``.
    """
    t0 = time.perf_counter()
    hide = hide or HideSpec()
    progress = progress or SilentProgress()
    if draws < 1:
        raise InputError(f"The number of mask draws must be at least 1; got {draws}.")
    if batch_size < 1:
        raise InputError(f"The batch size must be at least 1; got {batch_size}.")
    dev, dev_note = _resolve_device(device)
    if out is not None:
        from ..output_paths import check_outputs

        check_outputs({"the output": out}, inputs={
            "stack": stack if isinstance(stack, (str, Path)) else getattr(stack, "path", None),
            "model": [m for m in model_paths if isinstance(m, (str, Path))]})
    source = open_stack_source(stack)
    try:
        if model_paths and isinstance(model_paths[0], EnsembleMember):
            members = list(model_paths)
            other = sorted({m.output for m in members} - {output})
            if other:  # a loaded member returns the map it was prepared for
                raise ValueError(f"members loaded for output {other} cannot map '{output}': load them "
                                 f"with load_members(..., output='{output}')")
            other = sorted({m.precision for m in members} - {precision})
            if other:
                raise ValueError(f"members loaded in {other} cannot run in '{precision}': load them "
                                 f"with load_members(..., precision='{precision}')")
        else:
            members = load_members(model_paths, dev, output=output, precision=precision)
        check_ensemble([m.card for m in members], [m.name for m in members])
        check_members(members, source)
        hide.species_flags(source.species)  # unknown species → InputError before any work
        tile = max(int(m.card.tile_size) for m in members)
        ov = default_overlap(tile) if overlap is None else int(overlap)
        g = source.grid
        layout = WindowLayout.fitted(g.height, g.width, window or default_window(members), ov, offset)
        engine = _Infiller(source, members, hide, draws, batch_size, dev, progress, layout, seed)
        if precision != "fp32":
            dev_note += f"; {precision}"
        scenario = hide.scenario(source.species)
        threshold = ensemble_threshold([m.card for m in members], scenario)
        result = InfillResult(engine.out_species, g, None, None, Path(out) if out else None,
                              [m.name for m in members], draws, engine.evaluations, hide.describe(),
                              layout.describe(), ov, threshold, dev_note, 0.0, 0)
        with kept_heap():  # each draw's temporaries reused, not faulted in afresh (core.inference.heap)
            try:
                if out is not None:
                    from ..data.prediction_io import prediction_file

                    tags = {**result.tags(), "stack": stack_fingerprint(source),  # clusters checks its stack
                            "probability_scale": "calibrated" if output == "presence" and all(
                                m.card.calibrated for m in members) else "model score"}
                    if output != "presence":
                        tags["output"] = output
                    if engine.rank == 0:
                        with prediction_file(out, g, engine.out_species, tags) as writer:
                            engine.run(writer)
                    else:
                        engine.run(_NoSink())
                else:
                    sink = _ArraySink(g, len(engine.out_species))
                    engine.run(sink)
                    result.mean, result.std = sink.mean, sink.std
            finally:
                progress.close()
        result.seconds = time.perf_counter() - t0
        result.window_evaluations = engine.window_evaluations
        result.predicted_cells = {s: int(n) for s, n in zip(engine.out_species, engine.predicted)}
        return result
    finally:
        if source is not stack:
            source.close()
