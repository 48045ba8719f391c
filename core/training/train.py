"""The trainer: masked reconstruction of presence layers with AdamW.

Determinism: the tiles and masks of step ``t`` are a pure function of ``(seed, t)`` (drawn on
the training device: CUDA runs draw other masks than CPU runs, each reproducibly), the model
is initialised from ``seed``, and the learning rate is a function of ``t``. A checkpoint
therefore needs only weights, optimizer state and the step, and ``--resume`` after a kill ends
where an uninterrupted run ends.

Distribution: under ``torchrun`` every rank draws the same global batch and takes its share;
the loss is normalised by counts summed over all ranks and micro-batches, so N processes of
B/N tiles compute the gradient of one process with B tiles in micro-batches of the same size
(batch-norm statistics are per micro-batch in both cases).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, check_writable
from ..data.stack import Stack, stack_fingerprint
from ..device import pick_device
from ..errors import InputError
from ..masks.masking import (DRAW_SCENARIOS, SCENARIOS, UNRECORDED, MaskSpec, draw_masks, drop_aux_bands,
                             generator_for, reveal_draws, reveal_records, source_reveal)
from ..masks.tiles import HoldoutSplit, StackTensors, TileBatch, holdout_tiles, train_frequency, training_tiles
from ..model.inputs import model_inputs
from ..model.model_file import ModelCard, git_commit, save_model
from ..model.models import AUX_CONTEXT_OPTION, CONTEXT_OPTION, ModelConfig, build_model
from ..model.predictors import ModelPredictor
from ..model.pu import PU_OPTION, PUModel, card_description, pu_spec, record_logits
from ..progress import Progress, check_cancelled
from .checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from .loss import LossWeights, combine, loss_counts, loss_sums, presence_within, prior_sum, target_group_cells, target_group_sum
from .validation import HoldoutMasks, collect, pooled_threshold

# Fields that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = ("checkpoint_every", "val_every")
# Fewer validation tiles or hidden record cells than these: the threshold is not a measurement.
MIN_VALIDATION_TILES = 4
MIN_VALIDATION_RECORDS = 20


@dataclass
class TrainConfig:
    """Everything that determines a trained model. ``batch_size`` is the global batch (all
    ranks); ``micro_batch`` (0: the whole per-rank batch) is the forward/backward chunk."""

    seed: int = 0
    steps: int = 300
    tiles: int = 2000
    tile_size: int = 64
    arch: str = "unet"
    encoder_depth: int = 18
    model_options: dict[str, Any] = field(default_factory=dict)
    use_aux: bool = True
    aux_dropout: float = 0.0
    batch_size: int = 8
    micro_batch: int = 0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    min_valid: float = 0.25
    require_record: bool = True
    augment: bool = True
    loss: LossWeights = field(default_factory=LossWeights)
    mask: MaskSpec = field(default_factory=MaskSpec)
    holdout: HoldoutSplit = field(default_factory=HoldoutSplit)
    checkpoint_every: int = 100
    val_every: int = 100
    val_tiles: int = 64
    val_draws: int = 2
    target_radius: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mask"] = self.mask.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["loss"] = LossWeights(**d.get("loss", {}))
        d["mask"] = MaskSpec.from_dict(d.get("mask", {}))
        d["holdout"] = HoldoutSplit.from_dict(d.get("holdout", {}))
        return cls(**d)

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainConfig":
        """A copy with values replaced; nested ones by dotted keys (``mask.region_fraction``)."""
        d = self.to_dict()
        names = {f.name for f in fields(self)}
        for key, value in overrides.items():
            if value is None:
                continue
            head, _, tail = key.partition(".")
            if head not in names or (tail and not isinstance(d[head], dict)) or (tail and tail not in d[head]):
                raise InputError(f"Unknown training option '{key}'.")
            if tail:
                d[head][tail] = value
            else:
                d[head] = value
        return TrainConfig.from_dict(d)


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak; ``step`` is 0-based."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    r = config.min_lr_ratio
    return config.lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


@dataclass
class Dist:
    """This process's place in a distributed run (world 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t

    def finish(self) -> None:
        """Wait for every rank, then leave the process group (a rank that exits while gloo's
        threads still run can abort: "terminate called without an active exception")."""
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def init_distributed(prefer: str = "auto") -> tuple[Dist, torch.device, str]:
    """Join the process group when started by torchrun (gloo on CPU, nccl on CUDA); pick the
    device. Returns the rank info, the device and a sentence saying which."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device, why = pick_device(prefer)
    if world <= 1:
        return Dist(), device, why
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend)
    if device.type == "cuda":
        device = torch.device("cuda", local)
    backend = torch.distributed.get_backend()
    return Dist(rank, world, local), device, f"{why}; rank {rank} of {world} ({backend})"


class Trainer:
    """Holds the model, optimizer and data of one run and takes training steps."""

    def __init__(self, stack: Stack, config: TrainConfig, device: torch.device, dist: Dist = Dist(),
                 record_sources: Optional[np.ndarray] = None) -> None:
        """``record_sources``: (H, W) int64 bits of the sources that recorded each cell
        (:func:`core.data.record_sources.source_bits`), needed by the unrecorded scenario hiding by source."""
        self.stack, self.config, self.device, self.dist = stack, config, device, dist
        c = config
        c.mask.validate(len(stack.species))
        self.by_source = UNRECORDED in c.mask.scenarios and c.mask.hide_by == "source"
        if self.by_source and record_sources is None:
            raise InputError("The unrecorded scenario hiding by source needs the records' sources (train_cli.py "
                             "train reads them from --records); or hide a share of records (--unrecorded-by share).")
        if not 0 <= c.aux_dropout < 1:
            raise InputError(f"aux_dropout is a probability in [0, 1); got {c.aux_dropout}.")
        if c.target_radius < 0:
            raise InputError(f"target_radius is a number of cells, 0 or more; got {c.target_radius}.")
        if c.batch_size % dist.world:
            raise InputError(f"Batch size {c.batch_size} does not split over {dist.world} processes; "
                             "use a multiple of the number of processes.")
        self.local_batch = c.batch_size // dist.world
        self.micro = c.micro_batch or self.local_batch
        if self.local_batch % self.micro:
            raise InputError(f"Micro-batch {self.micro} does not divide the per-process batch {self.local_batch}.")
        self.origins = torch.from_numpy(training_tiles(stack, c.holdout, c.tile_size, c.tiles, c.seed,
                                                       c.min_valid, c.require_record)).to(device)
        self.tensors = StackTensors(stack, device, record_sources if self.by_source else None)
        n_s, n_a = len(stack.species), len(stack.aux_bands) if c.use_aux else 0
        self.model_config = ModelConfig(c.arch, 2 * n_s + n_a, n_s, c.encoder_depth, dict(c.model_options))
        torch.manual_seed(c.seed)
        self.model = build_model(self.model_config).to(device)
        self.wrapped: nn.Module = self.model
        if dist.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.step = 0
        self.history: dict[str, list] = {"loss": [], "val": []}
        self.amp = device.type == "cuda"

    def batch(self, step: int) -> tuple[TileBatch, torch.Tensor]:
        """This rank's share of the global batch of ``step``: tiles and hidden cells."""
        c = self.config
        g = generator_for(c.seed, step, device=self.device)
        idx = torch.randint(len(self.origins), (c.batch_size,), generator=g, device=self.device)
        codes = torch.randint(8, (c.batch_size,), generator=g, device=self.device)
        n_s = len(self.stack.species)
        hidden, scenario = draw_masks(c.mask, c.batch_size, n_s, c.tile_size, c.tile_size, g)
        lo, hi = self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch
        tiles = self.tensors.gather(self.origins[idx[lo:hi]], c.tile_size, codes[lo:hi] if c.augment else None)
        if c.use_aux and c.aux_dropout > 0:  # drawn last: without dropout the batch is what it always was
            kept = drop_aux_bands(c.aux_dropout, c.batch_size, tiles.aux.shape[1], g)[lo:hi]
            tiles = TileBatch(tiles.presence, tiles.aux * kept, tiles.valid, tiles.sources)
        hidden = hidden[lo:hi]
        if UNRECORDED in c.mask.scenarios:  # after the rest, for the same reason
            if self.by_source:
                pick = torch.rand(c.batch_size, generator=g, device=self.device)[lo:hi]
                unrecorded = (scenario == DRAW_SCENARIOS.index(UNRECORDED))[lo:hi]
                reveal = source_reveal(tiles.sources, pick, unrecorded)
            else:
                reveal = reveal_draws(c.mask, scenario, c.tile_size, c.tile_size, g)[lo:hi]
            hidden = reveal_records(hidden, tiles.presence, reveal)
        return tiles, hidden

    def train_step(self) -> float:
        """One optimizer step; returns the global batch's loss."""
        c = self.config
        tiles, hidden = self.batch(self.step)
        target = presence_within(tiles.presence, c.target_radius)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(c, self.step)
        counts = self.dist.all_reduce(loss_counts(target, hidden, tiles.valid))
        prior_cells = self.dist.all_reduce(tiles.valid.sum().double() * tiles.presence.shape[1])
        pu = isinstance(self.model, PUModel)
        if pu:
            group_cells = self.dist.all_reduce(target_group_cells(hidden, tiles.valid).sum().double())
        self.wrapped.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        n_micro = self.local_batch // self.micro
        for m in range(n_micro):
            part = tiles.slice(m * self.micro, (m + 1) * self.micro)
            h = hidden[m * self.micro:(m + 1) * self.micro]
            y = target[m * self.micro:(m + 1) * self.micro]
            aux = part.aux if c.use_aux else part.aux[:, :0]
            x = model_inputs(part.presence, h, aux, part.valid)
            sync = m == n_micro - 1 or self.dist.world == 1
            ctx = self.wrapped.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                    logits = self.wrapped(x)
                if pu:  # the records are explained by presence x observation (core.model.pu)
                    observation = self.model.last_observation
                    logits = record_logits(logits, observation)
                sums = loss_sums(logits, y, h, part.valid, c.loss)
                loss = combine(sums, counts, c.loss) * self.dist.world
                if pu and self.model.target_group > 0:
                    own = target_group_sum(observation, part.presence, h, part.valid)
                    loss = loss + (self.model.target_group * own / group_cells.clamp_min(1.0).to(own.dtype)
                                   * self.dist.world)
                if c.loss.prior > 0 and getattr(self.model, "prior", None) is not None:
                    own = prior_sum(self.model.last_prior, part.presence, part.valid)
                    loss = loss + c.loss.prior * own / prior_cells.clamp_min(1.0).to(own.dtype) * self.dist.world
                loss.backward()
            total += loss.detach().double() / self.dist.world
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        value = float(self.dist.all_reduce(total))
        self.history["loss"].append(value)
        return value

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"step": self.step, "config": self.config.to_dict(), "history": self.history,
                "stack": stack_fingerprint(self.stack), "records": str(self.stack.info.get("records", ""))}

    def save(self, directory: Path) -> None:
        save_checkpoint(directory, self.model, self.optimizer, self.checkpoint_meta())

    def resume(self, directory: Path) -> bool:
        """Load the checkpoint in ``directory`` when there is one; False when there is none."""
        meta = read_checkpoint_meta(directory)
        if meta is None:
            return False
        # a checkpoint written before a setting existed was made with its default
        mine, theirs = self.config.to_dict(), TrainConfig.from_dict(meta["config"]).to_dict()
        diff = sorted(k for k in set(mine) | set(theirs)
                      if k not in RESUMABLE_CHANGES and mine.get(k) != theirs.get(k))
        if diff:
            raise InputError(f"The checkpoint in {directory} was made with other settings ({', '.join(diff)}); "
                             "resume with the same options, or use another --checkpoint-dir to start afresh.")
        mine = stack_fingerprint(self.stack)
        if meta.get("stack") and meta["stack"] != mine:  # checkpoints of older versions carry none
            made_on = f" (records {meta['records']})" if meta.get("records") else ""
            raise InputError(f"The checkpoint in {directory} was made on another stack{made_on}: resuming it on "
                             f"this one (records {self.stack.info.get('records', '?')}) would train on two stacks and "
                             "write a card naming the second. Resume with the stack it was made on, or use another "
                             "--checkpoint-dir to start afresh.")
        load_checkpoint(directory, self.model, self.optimizer)
        self.step, self.history = int(meta["step"]), meta["history"]
        return True

    def predictor(self) -> ModelPredictor:
        n_s = len(self.stack.species)
        return ModelPredictor(self.model, "training", self.model_config.in_channels, n_s, self.device, batch_size=32)

    def val_masks(self, draws: int) -> HoldoutMasks:
        c = self.config
        origins = holdout_tiles(self.stack, c.holdout, c.tile_size, "val", c.min_valid)
        if len(origins) > c.val_tiles:
            pick = np.random.default_rng([c.holdout.seed, 3]).choice(len(origins), c.val_tiles, replace=False)
            origins = origins[np.sort(pick)]
        return HoldoutMasks(origins, c.tile_size, c.mask.only("region", species_k=1), draws)

    def validate(self, draws: int) -> dict[str, Any]:
        """Scores on the validation blocks (eval mode; training state untouched). ``threshold``
        maximises Dice over all scenarios pooled (the card's general threshold); ``thresholds``
        maximise it per scenario, and each scenario is scored at its own."""
        masks = self.val_masks(draws)
        if len(masks.origins) == 0:
            return {"threshold": 0.5, "thresholds": {}, "scenarios": {}, "tiles": 0}
        cells = collect(self.predictor(), self.tensors, masks, list(self.stack.species))
        self.model.train()
        per = {sc: c.best_threshold() for sc, c in cells.items()}
        return {"threshold": pooled_threshold(cells), "thresholds": per, "tiles": int(len(masks.origins)),
                "draws": draws, "scenarios": {sc: cells[sc].report(per[sc]) for sc in SCENARIOS}}


def validation_figure(path: Path, trainer: Trainer) -> Path:
    """Loss and validation Dice against step, and one validation tile: visible input, hidden
    truth and prediction of its most recorded species ("both" scenario)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = trainer.val_masks(1)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    ax = axes[0]
    ax.plot(np.arange(1, len(trainer.history["loss"]) + 1), trainer.history["loss"], lw=0.7, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if trainer.history["val"]:
        ax2 = ax.twinx()
        v = trainer.history["val"]
        ax2.plot([e["step"] for e in v], [e["dice"] for e in v], "o-", color="C1", label="val Dice")
        ax2.set_ylabel("validation Dice (pooled)")
    ax.set_title(f"step {trainer.step}")
    if len(masks.origins):
        presence = trainer.stack.presence
        counts = [presence[:, r:r + masks.tile_size, c:c + masks.tile_size].sum() for r, c in masks.origins]
        i = int(np.argmax(counts))
        origin = torch.from_numpy(masks.origins[i:i + 1])
        tile = trainer.tensors.gather(origin, masks.tile_size)
        s = int(tile.presence[0].flatten(1).sum(1).argmax())
        n_s = len(trainer.stack.species)
        forced = torch.nn.functional.one_hot(torch.tensor([s]), n_s).bool()
        hidden, _ = draw_masks(masks.spec.only("both"), 1, n_s, masks.tile_size, masks.tile_size,
                               generator_for(masks.seed, 99), species=forced)
        hidden = hidden.to(tile.presence.device)
        prob = trainer.predictor().predict(tile.presence, hidden, tile.aux, tile.valid)[0, s].numpy()
        trainer.model.train()
        truth = tile.presence[0, s].cpu().numpy().astype(float)
        hid = hidden[0, s].cpu().numpy()
        valid = tile.valid[0].cpu().numpy()
        visible = np.where(hid, np.nan, truth)
        visible[~valid] = np.nan
        name = trainer.stack.species[s]
        greys, magma = plt.get_cmap("Greys").copy(), plt.get_cmap("magma").copy()
        greys.set_bad("#cfe3f0")
        magma.set_bad("#cfe3f0")
        axes[1].imshow(visible, cmap=greys, vmin=0, vmax=1, interpolation="nearest")
        axes[1].contour(hid, levels=[0.5], colors="C3", linewidths=0.8)
        axes[1].set_title(f"{name}: visible records; hidden (red outline)")
        axes[2].imshow(np.where(hid & valid, truth, np.nan), cmap=greys, vmin=0, vmax=1, interpolation="nearest")
        axes[2].set_title(f"{name}: hidden records (truth)")
        im = axes[3].imshow(np.where(hid & valid, prob, np.nan), cmap=magma, vmin=0,
                            vmax=max(0.05, float(prob.max())), interpolation="nearest")
        axes[3].set_title(f"{name}: predicted probability (hidden cells)")
        fig.colorbar(im, ax=axes[3], fraction=0.046)
        for a in axes[1:]:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path


def model_card(trainer: Trainer, validation: dict[str, Any], run: dict[str, Any]) -> ModelCard:
    stack, c = trainer.stack, trainer.config
    split = c.holdout
    summary = split.summary(stack.valid)
    pu = trainer.model_config.options.get(PU_OPTION)
    return ModelCard(
        species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
        grid={"crs": stack.grid.crs.to_string(), "crs_wkt": stack.grid.crs.to_wkt(),
              "resolution": stack.grid.resolution},
        tile_size=c.tile_size, model=trainer.model_config.to_dict(), masking=c.mask.to_dict(),
        training=c.to_dict(), metrics={"validation": validation, "run": run},
        threshold=float(validation["threshold"]), git_commit=git_commit(),
        data={"holdout": {"split": split.to_dict(), **summary},
              "train_frequency": train_frequency(stack, split), "training_tiles": int(len(trainer.origins)),
              "stack_info": {k: v for k, v in stack.info.items() if isinstance(v, (str, int, float))},
              **({"pu": card_description(pu_spec(pu), c.loss.to_dict())} if pu else {})})


def train(stack: Stack, config: TrainConfig, out: str | Path, checkpoint_dir: Optional[str | Path] = None,
          resume: bool = False, device: str = "auto", progress: Optional[Progress] = None,
          log: Callable[[str], None] = print, record_sources: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Train, checkpointing to ``checkpoint_dir`` (default ``<out>.ckpt``), and write the model
    file ``out`` (rank 0). Returns the validation scores and run facts. ``record_sources``: see
    :class:`Trainer`."""
    out = Path(out)
    if not (isinstance(config.steps, int) and config.steps >= 1):
        raise InputError(f"Training needs at least one step (steps {config.steps!r}); give --steps 1 or more.")
    dist, dev, why = init_distributed(device)
    say = log if dist.main else (lambda s: None)
    if dist.main:
        check_writable(out)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else out.with_name(out.stem + ".ckpt")
    say(f"device: {why}")
    trainer = Trainer(stack, config, dev, dist, record_sources)
    c = config
    arch = {"unet": f"U-Net with a resnet{c.encoder_depth} encoder",
            "none": "the context features' linear head alone"}.get(c.arch, c.arch)
    if c.model_options.get(CONTEXT_OPTION) and c.arch != "none":
        arch += f" + context features at {c.model_options[CONTEXT_OPTION]} cells"
    if c.model_options.get(AUX_CONTEXT_OPTION) and c.use_aux:
        arch += f" + aux mean and spread at {c.model_options[AUX_CONTEXT_OPTION]} cells"
    if c.use_aux and c.aux_dropout:
        arch += f" (aux bands blanked with probability {c.aux_dropout} in training)"
    if c.model_options.get(PU_OPTION):
        arch = (f"positive-unlabeled: records = presence x observation; presence: {arch}; observation: "
                "a small U-Net on the visible records' coverage (no aux)")
    say(f"model: {arch}, {trainer.model_config.in_channels} input channels, "
        f"{sum(p.numel() for p in trainer.model.parameters()) / 1e6:.1f} M parameters; "
        f"{len(trainer.origins)} training tiles of {c.tile_size} cells; {c.steps} steps of {c.batch_size} tiles")
    if resume:
        if trainer.resume(ckpt):
            say(f"resumed from {ckpt} at step {trainer.step}")
        else:
            say(f"no checkpoint in {ckpt}; starting afresh")
    bar = progress if dist.main else None
    if bar is not None:
        bar.start(c.steps, "train")
        if trainer.step:
            bar.advance(trainer.step)
    t_start = time.perf_counter()
    step0 = trainer.step
    try:
        while trainer.step < c.steps:
            check_cancelled(progress)
            t0 = time.perf_counter()
            loss = trainer.train_step()
            dt = time.perf_counter() - t0
            if bar is not None:
                bar.advance(1, loss=loss, tiles_s=c.batch_size / dt)
            if dist.main and c.val_every and trainer.step % c.val_every == 0:
                v = trainer.validate(c.val_draws)
                pooled = _pooled_dice(v)
                trainer.history["val"].append({"step": trainer.step, "dice": pooled, "threshold": v["threshold"]})
                ckpt.mkdir(parents=True, exist_ok=True)
                validation_figure(ckpt / "validation.png", trainer)
            due = bool(c.checkpoint_every) and trainer.step % c.checkpoint_every == 0
            if dist.main and (due or trainer.step == c.steps):
                trainer.save(ckpt)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_start
    result: dict[str, Any] = {}
    if dist.main:
        say("validating on the validation blocks to choose the threshold ...")
        validation = trainer.validate(len(stack.species))
        problem = validation_problem(validation)
        if problem:
            validation["warning"] = problem  # the card says it too
            warnings.warn(problem, stacklevel=2)
        steps_run = trainer.step - step0
        run = {"device": why, "world_size": dist.world, "wall_s": round(wall, 1),
               "tiles_per_s": round(steps_run * c.batch_size / wall, 2) if steps_run else None}
        save_model(out, trainer.model, model_card(trainer, validation, run))
        say(f"wrote {out} (+ {out.with_suffix('.json').name}); thresholds chosen on {validation['tiles']} "
            f"validation tiles: {validation['threshold']:.4f} pooled")
        for sc, rep in validation["scenarios"].items():
            o = rep["overall"]
            say(f"  validation {sc:<8} threshold {validation['thresholds'][sc]:.4f}  Dice {o['dice']:.3f}  "
                f"recall {o['recall']:.3f}  precision {o['precision']:.3f}  AUPRC {o['auprc']:.3f}")
        result = {"validation": validation, "run": run, "out": str(out)}
    dist.finish()
    return result


def validation_problem(validation: dict[str, Any]) -> str:
    """Why a model's validation scores and threshold mean nothing ('' when they do): no
    validation tile, no hidden record in them (recall and AUPRC undefined, threshold 0.5), or
    fewer than :data:`MIN_VALIDATION_TILES` tiles or :data:`MIN_VALIDATION_RECORDS` hidden record
    cells (a threshold chosen on so few says little)."""
    tiles = int(validation.get("tiles") or 0)
    positives = sum(r["overall"].get("positives", 0) for r in validation.get("scenarios", {}).values())
    threshold = float(validation["threshold"])
    fix = ("Train on a larger stack (more records and area: several validation blocks of the holdout layout), or a "
           "smaller --block-size/--tile-size or larger --val-fraction so that validation tiles hold records.")
    if not tiles or not positives:
        why = ("the stack has no validation tile (it is too small for its held-out validation blocks)" if not tiles
               else f"its {tiles} validation tile(s) hold no hidden record")
        return (f"The model's threshold ({threshold:g}) and validation scores are not measured: {why}, so recall "
                "and AUPRC are undefined (NaN) and the threshold is the default, not one chosen on records. " + fix)
    if tiles < MIN_VALIDATION_TILES or positives < MIN_VALIDATION_RECORDS:
        return (f"The model's threshold ({threshold:.4f}) and validation scores rest on {tiles} validation tile(s) "
                f"holding {positives} hidden record cell(s) (fewer than {MIN_VALIDATION_TILES} tiles or "
                f"{MIN_VALIDATION_RECORDS} cells): they are not a measurement; set your own threshold (clusters "
                "--threshold) or " + fix[0].lower() + fix[1:])
    return ""


def _pooled_dice(v: dict[str, Any]) -> float:
    """Hidden-cell-weighted mean of the scenarios' Dice (for the progress figure)."""
    reps = v["scenarios"].values()
    num = sum(r["overall"]["dice"] * r["overall"]["cells"] for r in reps if not math.isnan(r["overall"]["dice"]))
    den = sum(r["overall"]["cells"] for r in reps if not math.isnan(r["overall"]["dice"]))
    return float(num / den) if den else float("nan")
