"""``calibrate``: fit a model's probability calibration on its validation blocks, check it on its
test blocks, and write the model with the calibrated card."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..device import pick_device
from ..progress import TqdmProgress
from .common_args import add_stack_argument, load_stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="make a model's probabilities mean what they say (fitted on validation "
                                         "blocks, checked on test blocks)",
                       description="Fits, per masking scenario (region, species, both, and pooled for maps with "
                                   "nothing hidden), a monotone map from the model's output to the share of "
                                   "hidden cells that hold a recorded site: temperature, Platt and isotonic are "
                                   "fitted, the one with the lowest cross-fitted log loss on the validation "
                                   "blocks is kept, and the Dice-best threshold is re-derived on that scale. "
                                   "Prints the expected calibration error (15 bins) on the test blocks before "
                                   "and after. Writes a copy of the model (same weights) whose card carries "
                                   "the calibration; predict, evaluate, the dock and Processing then write "
                                   "calibrated probabilities.")
    add_stack_argument(p)
    p.add_argument("--model", required=True, type=Path, help="model file (.safetensors) to calibrate")
    p.add_argument("--out", required=True, type=Path, help="calibrated model file to write (.safetensors; its "
                                                           ".json card beside it); never the input")
    p.add_argument("--report", type=Path, help="JSON file for the test-block check (ECE, reliability, scores)")
    p.add_argument("--draws", type=int, help="mask draws per tile and scenario (default: number of species)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.calibrate import calibrate_model
    from ..model.model_file import card_path
    from ..output_paths import check_outputs

    check_outputs({"--out": args.out, "the card": card_path(args.out), "--report": args.report},
                  inputs={"--stack": args.stack, "--model": args.model, "the model card": card_path(args.model)})
    if args.draws is not None and args.draws < 1:
        from ..errors import InputError

        raise InputError(f"--draws must be at least 1; got {args.draws}.")
    stack = load_stack(args.stack)
    device, why = pick_device(args.device)
    print(f"device: {why}")
    calibrate_model(stack, args.model, args.out, args.report, draws=args.draws, device=device,
                    progress=TqdmProgress())
    return 0
