"""``compare``: the U-Net against its ablations, the ViT, kriging and the simple baselines."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.compare import BASELINES, VARIANTS, compare
from ..evaluation.evaluate import EVAL_SEED
from ..progress import TqdmProgress
from ..training.presets import PRESETS, preset
from ..training.train import TrainConfig
from .common_args import add_stack_argument, load_stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train/load unet, unet_no_aux, vit per seed; score them, kriging and "
                                       "baselines on the same held-out masks",
                       description="Trains (or loads from --models-dir) each model variant for each seed with the "
                                   "same trainer and loss, then scores the models, the aux-routing ablation, "
                                   "kriging, co-presence, neighbour density and frequency on the same test "
                                   "tiles and seeded masks, per masking scenario. Writes compare.json, "
                                   "compare.md, pr_curves.png, map_panel.png and interdependence.png.")
    add_stack_argument(p)
    p.add_argument("--out", type=Path, default=Path("out/compare"), help="output folder (default out/compare)")
    p.add_argument("--models-dir", type=Path, help="trained models are read from / written to this folder "
                                                   "as <variant>_seed<N>.safetensors (default <out>/models)")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="training configuration")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds (default 0 1 2)")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                   help="trained models to compare (default all)")
    p.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES),
                   help="untrained predictors to compare (default all)")
    p.add_argument("--draws", type=int, help="mask draws per test tile and scenario (default: number of species)")
    p.add_argument("--mask-seed", type=int, default=EVAL_SEED, help="seed of the evaluation masks")
    p.add_argument("--no-interdependence", dest="interdependence", action="store_false",
                   help="skip the species-interdependence matrix")
    p.add_argument("--train-only", action="store_true",
                   help="only train the missing models (e.g. on a GPU box); score them in a later run")
    p.add_argument("--model", dest="extra_models", action="append", default=[], type=_named_model,
                   metavar="NAME=FILE", help="also score this trained model file (e.g. the bundled model) on the "
                                             "same masks; repeat a NAME for several seeds")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_training_overrides(p)
    p.set_defaults(func=run)


def _named_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"write NAME=FILE, e.g. bundled=resources/models/m3_unet_conus.safetensors, "
                                         f"not '{text}'")
    return name, Path(path)


OVERRIDES = {  # option dest -> TrainConfig key; the rest of the training config comes from --preset
    "steps": "steps", "tiles": "tiles", "tile_size": "tile_size", "batch_size": "batch_size",
    "encoder_depth": "encoder_depth", "block_size": "holdout.block_size", "val_fraction": "holdout.val_fraction",
    "test_fraction": "holdout.test_fraction", "split_seed": "holdout.seed", "val_tiles": "val_tiles",
    "val_every": "val_every", "checkpoint_every": "checkpoint_every", "aux_dropout": "aux_dropout",
}
FLOAT_OVERRIDES = ("val_fraction", "test_fraction", "aux_dropout")


def add_training_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training overrides (of --preset; the same for every model)")
    for dest in OVERRIDES:
        g.add_argument("--" + dest.replace("_", "-"), dest=dest, type=float if dest in FLOAT_OVERRIDES else int)


def config_from(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig().with_overrides(preset(args.preset))
    return config.with_overrides({key: getattr(args, dest) for dest, key in OVERRIDES.items()})


def _grouped(pairs: list[tuple[str, Path]]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for name, path in pairs:
        out.setdefault(name, []).append(path)
    return out


def run(args: argparse.Namespace) -> int:
    from ..output_paths import check_outputs

    check_outputs({}, inputs={"--stack": args.stack}, folders={"--out": args.out, "--models-dir": args.models_dir})
    stack = load_stack(args.stack)
    compare(stack, config_from(args), args.seeds, args.out, models_dir=args.models_dir, variants=args.variants,
            baselines=args.baselines, draws=args.draws, mask_seed=args.mask_seed, device=args.device,
            interdependence=args.interdependence, train_only=args.train_only, progress=TqdmProgress(),
            extra_models=_grouped(args.extra_models))
    return 0
