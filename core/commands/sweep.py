"""``sweep``: one lever of the U-Net (training tiles, encoder depth, aux on/off, steps) against the metrics."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.evaluate import EVAL_SEED
from ..evaluation.sweep import LEVERS, parse_lever_values, sweep
from ..progress import TqdmProgress
from ..training.presets import PRESETS
from .common_args import add_stack_argument, load_stack
from .compare import add_training_overrides, config_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train the U-Net at several values of one lever and plot the metrics",
                       description="For each value of the lever and each seed, trains (or loads from --models-dir) "
                                   "the U-Net and scores it on the same held-out masks; writes "
                                   "sweep_<lever>.json/.md/.png. Examples: --lever tiles --values 250 500 1000 2000; "
                                   "--lever encoder-depth --values 18 34 50; --lever aux --values on off.")
    add_stack_argument(p)
    p.add_argument("--lever", required=True, choices=sorted(LEVERS), help="what to vary")
    p.add_argument("--values", required=True, nargs="+", help="the lever's values (integers; on/off for aux)")
    p.add_argument("--out", type=Path, default=Path("out/sweep"), help="output folder (default out/sweep)")
    p.add_argument("--models-dir", type=Path, help="trained models are read from / written to this folder "
                                                   "(default <out>/models)")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="training configuration")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds (default 0 1 2)")
    p.add_argument("--draws", type=int, help="mask draws per test tile and scenario (default: number of species)")
    p.add_argument("--mask-seed", type=int, default=EVAL_SEED, help="seed of the evaluation masks")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_training_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    values = parse_lever_values(args.lever, args.values)
    from ..output_paths import check_outputs

    check_outputs({}, inputs={"--stack": args.stack}, folders={"--out": args.out, "--models-dir": args.models_dir})
    stack = load_stack(args.stack)
    sweep(stack, config_from(args), args.lever, values, args.seeds, args.out, models_dir=args.models_dir,
          draws=args.draws, mask_seed=args.mask_seed, device=args.device, progress=TqdmProgress())
    return 0
