"""``train``: masked training of the M3 model on a stack (torchrun for several GPUs/nodes)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from ..masks.masking import HIDE_BY, REGION_SHAPES, UNRECORDED
from ..model.model_file import card_path
from ..model.models import AUX_PRIOR_OPTION, RESNET_DEPTHS, model_option_names, unknown_model_options
from ..model.pu import PU_OPTION
from ..output_paths import check_outputs
from ..progress import TqdmProgress
from ..training.presets import PRESETS, PU_LOSS, preset
from ..training.train import TrainConfig, train
from .common_args import COUNT, NON_NEGATIVE, POSITIVE, POSITIVE_INT, PROBABILITY, add_stack_argument, load_stack, number


TILE_SIZE = number(int, 32)


def _scenarios(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = part.partition("=")
        try:
            out[name.strip()] = float(w) if w else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad scenario weight in '{part}'") from None
    return out


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"write KEY=VALUE (JSON value), not '{text}'")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the M3 model by masked reconstruction",
                       description="Train on tiles of a stack with masks drawn on the fly; checkpoints "
                                   "atomically; --resume continues a killed run exactly. Several processes: "
                                   "torchrun --nproc_per_node=N train_cli.py train ...")
    add_stack_argument(p)
    p.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors; card .json beside)")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="base configuration; every option below overrides it (default: quick)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint when there is one")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the calibration fitted on the validation blocks after training (see the calibrate "
                        "command); the model's maps are then scores, not calibrated probabilities")
    p.add_argument("--checkpoint-dir", type=Path, help="checkpoints and validation figure (default: <out>.ckpt)")
    g = p.add_argument_group("data and model")
    g.add_argument("--seed", type=int, help="model initialisation, tiles and masks")
    g.add_argument("--steps", type=POSITIVE_INT, help="gradient steps")
    g.add_argument("--tiles", type=POSITIVE_INT, help="N: training tiles sampled from the training blocks")
    g.add_argument("--tile-size", type=TILE_SIZE, help="K: tile side in cells (multiple of 32)")
    g.add_argument("--arch", help="registered architecture (unet, vit, ...)")
    g.add_argument("--encoder-depth", type=int, choices=RESNET_DEPTHS, help="H: ResNet depth of the U-Net encoder")
    g.add_argument("--model-option", type=_option, action="append", default=[], metavar="KEY=JSON",
                   help="architecture option, e.g. decoder_channels=[256,128,64,32,16]; repeatable")
    g.add_argument("--aux", dest="use_aux", action=argparse.BooleanOptionalAction, default=None,
                   help="feed the aux bands to the model (default yes)")
    g.add_argument("--aux-dropout", type=number(float, 0, 1, high_open=True), metavar="P",
                   help="chance that an aux band is blanked for a training tile, each band on its own (default 0)")
    g.add_argument("--pu", action="store_true",
                   help="positive-unlabeled learning with two M3 instances: the records are fitted as presence x "
                        "observation by BCE (the Dice and recall weights default to 0), the observation instance "
                        "seeing only the visible records' coverage (no aux); predict writes the presence probability "
                        "(predict --observation the other). Adds the model option pu=true; its settings: --model-option 'pu={\"sigmas\":[2,8,24],...}'")
    g.add_argument("--min-valid", type=PROBABILITY, help="least share of land in a tile")
    g.add_argument("--require-record", action=argparse.BooleanOptionalAction, default=None,
                   help="training tiles hold at least one record (default yes)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random flips/transposes of training tiles (default yes)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=POSITIVE_INT, help="global batch (split over processes)")
    g.add_argument("--micro-batch", type=COUNT, help="forward/backward chunk per process (0: whole share)")
    g.add_argument("--lr", type=POSITIVE, help="peak learning rate of AdamW")
    g.add_argument("--weight-decay", type=NON_NEGATIVE)
    g.add_argument("--warmup-steps", type=COUNT)
    g.add_argument("--grad-clip", type=NON_NEGATIVE, help="gradient norm clip (0: none)")
    g.add_argument("--loss-bce", type=NON_NEGATIVE, help="weight of BCE")
    g.add_argument("--loss-dice", type=NON_NEGATIVE, help="weight of soft Dice")
    g.add_argument("--loss-recall", type=NON_NEGATIVE, help="weight of the soft recall term")
    g.add_argument("--pos-weight", type=POSITIVE, help="BCE weight of positive cells")
    g.add_argument("--target-radius", type=COUNT, metavar="CELLS",
                   help="train on 'a record of the species within CELLS cells' of each hidden cell (a square "
                        "of side 2·CELLS+1) instead of the cell itself: a coarser-scale target (default 0)")
    g.add_argument("--loss-prior", type=NON_NEGATIVE,
                   help="weight of the aux prior's own loss on every valid cell (model option aux_prior)")
    g = p.add_argument_group("masking")
    g.add_argument("--mask-scenarios", type=_scenarios, metavar="NAME=W,...",
                   help="scenario mixture, e.g. region=1,species=1,both=1; 'unrecorded' (training only) hides "
                        "every species in the region but some of its record cells (--unrecorded-by), the "
                        "discovery question (predict --hide-unrecorded asks it)")
    g.add_argument("--record-share", type=PROBABILITY, nargs=2, metavar=("LO", "HI"),
                   help="share of the region's record cells left visible in the unrecorded scenario, uniform "
                        "in [LO, HI] (default 0.05 1)")
    g.add_argument("--unrecorded-by", choices=HIDE_BY,
                   help="what the unrecorded scenario hides: a random share of the region's record cells "
                        "(share, default) or every record of one source data set in the tile, the others' "
                        "visible (source: the records' 'dataset' column, read from --records)")
    g.add_argument("--records", type=Path, default=None,
                   help="the records CSV the stack was built from, for --unrecorded-by source (default: the "
                        "embedded records)")
    g.add_argument("--mask-species-k", type=POSITIVE_INT, nargs=2, metavar=("LO", "HI"),
                   help="number of species hidden, uniform in [LO, HI]")
    g.add_argument("--mask-fraction", type=number(float, 0, 1, low_open=True), help="A: masked-area fraction of the hidden region")
    g.add_argument("--mask-shape", choices=REGION_SHAPES, help="hidden region shape")
    g.add_argument("--blob-scale", type=POSITIVE_INT, help="cells per noise lattice step of irregular blobs")
    g = p.add_argument_group("spatial hold-out")
    g.add_argument("--block-size", type=POSITIVE_INT, help="hold-out block side in cells")
    g.add_argument("--val-fraction", type=number(float, 0, 1, high_open=True), help="share of land blocks for validation")
    g.add_argument("--test-fraction", type=number(float, 0, 1, high_open=True), help="share of land blocks for test")
    g.add_argument("--split-seed", type=int, help="seed of the block split (keep it fixed across model seeds)")
    g.add_argument("--holdout-buffer", type=COUNT, help="cells kept free between training tiles and held-out blocks")
    g = p.add_argument_group("monitoring")
    g.add_argument("--checkpoint-every", type=COUNT, help="steps between checkpoints")
    g.add_argument("--val-every", type=COUNT, help="steps between validation figures (0: none)")
    g.add_argument("--val-tiles", type=POSITIVE_INT, help="most validation tiles used")
    p.set_defaults(func=run)


OPTION_KEYS = {  # argparse dest -> TrainConfig key
    "seed": "seed", "steps": "steps", "tiles": "tiles", "tile_size": "tile_size", "arch": "arch",
    "encoder_depth": "encoder_depth", "use_aux": "use_aux", "aux_dropout": "aux_dropout",
    "min_valid": "min_valid",
    "require_record": "require_record", "augment": "augment", "batch_size": "batch_size",
    "micro_batch": "micro_batch", "lr": "lr", "weight_decay": "weight_decay", "warmup_steps": "warmup_steps",
    "grad_clip": "grad_clip", "loss_bce": "loss.bce", "loss_dice": "loss.dice", "loss_recall": "loss.recall",
    "pos_weight": "loss.pos_weight", "target_radius": "target_radius", "loss_prior": "loss.prior", "mask_scenarios": "mask.scenarios", "mask_species_k": "mask.species_k",
    "record_share": "mask.record_share", "unrecorded_by": "mask.hide_by",
    "mask_fraction": "mask.region_fraction", "mask_shape": "mask.region_shape", "blob_scale": "mask.blob_scale",
    "block_size": "holdout.block_size", "val_fraction": "holdout.val_fraction",
    "test_fraction": "holdout.test_fraction", "split_seed": "holdout.seed", "holdout_buffer": "holdout.buffer",
    "checkpoint_every": "checkpoint_every", "val_every": "val_every", "val_tiles": "val_tiles",
}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig().with_overrides(preset(args.preset))
    overrides = {key: getattr(args, dest) for dest, key in OPTION_KEYS.items()}
    if args.arch and args.arch != config.arch:  # the preset's model options belong to its architecture
        overrides["model_options"] = {}
    if args.model_option:
        base = overrides.get("model_options", config.model_options)
        overrides["model_options"] = dict(base, **dict(args.model_option))
    if getattr(args, "pu", False):
        base = overrides.get("model_options", config.model_options)
        if not base.get(PU_OPTION):
            overrides["model_options"] = dict(base, **{PU_OPTION: True})
        for key, value in PU_LOSS.items():  # BCE on P(record) unless a weight is given (core/model/pu.py)
            if overrides.get(key) is None:
                overrides[key] = value
    return config.with_overrides(overrides)


def record_sources(config: TrainConfig, stack, records: Optional[Path]):
    """The sources' bits for the unrecorded scenario hiding by source (None when not asked): the
    records read on the stack's species, less the sources a discovery stack holds out."""
    if UNRECORDED not in config.mask.scenarios or config.mask.hide_by != "source":
        return None
    from ..data import defaults
    from ..data.record_sources import source_bits
    from ..data.records import read_records
    from ..evaluation.discovery import INFO_KEY
    from ..inference.layer_inputs import catalog_for

    recs = read_records(records or defaults.RECORDS, catalog_for(stack.species))
    names, bits = source_bits(recs, stack.grid, stack.presence.any(axis=0), stack.info.get(INFO_KEY) or ())
    print(f"unrecorded scenario hides one source at a time, among {len(names)} with records on the stack")
    return bits


def run(args: argparse.Namespace) -> int:
    if args.out.suffix != ".safetensors":
        raise InputError(f"--out must end in .safetensors (got {args.out}).")
    config = config_from_args(args)
    unknown = unknown_model_options(config.arch, config.model_options)
    if unknown:
        raise InputError(f"The '{config.arch}' architecture takes no model option {', '.join(unknown)} "
                         f"(it takes {', '.join(sorted(model_option_names(config.arch))) or 'none'}).")
    if config.model_options.get(PU_OPTION):
        from ..model.pu import pu_spec

        try:
            pu_spec(config.model_options[PU_OPTION])
        except ValueError as e:
            raise InputError(f"--pu / --model-option pu: {e}.") from None
        if config.model_options.get(AUX_PRIOR_OPTION):
            raise InputError("--pu does not go with the aux prior (model option aux_prior): choose one.")
    ckpt = args.checkpoint_dir or args.out.with_name(args.out.stem + ".ckpt")
    check_outputs({"--out": args.out, "the model card (--out with .json)": card_path(args.out)},
                  inputs={"--stack": args.stack},
                  folders={"--checkpoint-dir" if args.checkpoint_dir else "the checkpoint folder (--out with .ckpt)":
                           ckpt})
    stack = load_stack(args.stack)
    train(stack, config, args.out, checkpoint_dir=args.checkpoint_dir, resume=args.resume, device=args.device,
          progress=TqdmProgress(), record_sources=record_sources(config, stack, args.records))
    import os

    if not args.no_calibrate and not config.model_options.get(PU_OPTION) and os.environ.get("RANK", "0") == "0":
        calibrate_trained(stack, args.out, args.device)
    return 0


def calibrate_trained(stack, out: Path, device: str) -> None:
    """Fit the new model's calibration on its validation blocks and write it into its card."""
    import json
    from dataclasses import asdict

    from ..atomic import atomic_path
    from ..device import pick_device
    from ..evaluation.calibrate import calibrated_card

    print("calibrating the model's probabilities on its validation blocks (skip with --no-calibrate)")
    try:
        card, _check = calibrated_card(stack, out, device=pick_device(device)[0], progress=TqdmProgress())
    except InputError as e:  # the model is trained and written; only its numbers stay uncalibrated
        print(f"warning: the model's probabilities are not calibrated: {e}", file=sys.stderr)
        return
    with atomic_path(card_path(out)) as tmp:
        tmp.write_text(json.dumps(asdict(card), indent=2))
