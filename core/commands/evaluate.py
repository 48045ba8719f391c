"""``evaluate``: score model files (seeds) and the frequency baseline on the held-out test blocks."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..device import pick_device
from ..evaluation.evaluate import EVAL_SEED, evaluate_models
from ..masks.masking import REGION_SHAPES, MaskSpec
from ..model.model_file import read_card
from ..progress import TqdmProgress
from .common_args import add_stack_argument, load_stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, recall, precision, AUPRC on held-out blocks, per masking scenario",
                       description="Scores each model on the test blocks of its hold-out split with the same "
                                   "seeded masks, per scenario (region, species, both), mean ± std over the "
                                   "model files, beside the species-frequency baseline. Thresholds come from "
                                   "the model cards (chosen on validation blocks).")
    add_stack_argument(p)
    p.add_argument("--models", nargs="+", required=True, type=Path, help="model files (.safetensors), e.g. 3 seeds")
    p.add_argument("--out", type=Path, help="JSON file for the full results")
    p.add_argument("--mask-fraction", type=float, help="masked-area fraction of the hidden region "
                                                       "(default: the models' training value)")
    p.add_argument("--mask-shape", choices=REGION_SHAPES, help="hidden region shape (default: the models')")
    p.add_argument("--species-k", type=int, default=1, help="species hidden per draw (default 1)")
    p.add_argument("--draws", type=int, help="mask draws per tile and scenario (default: number of species)")
    p.add_argument("--mask-seed", type=int, default=EVAL_SEED, help="seed of the evaluation masks")
    p.add_argument("--label", help="name of the models' row in the table")
    p.add_argument("--blank-aux", nargs="+", default=[], metavar="BAND",
                   help="score with these aux bands left blank (their mean), as the dock runs a model "
                        "trained with aux dropout when a layer is missing")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model.model_file import card_path
    from ..output_paths import check_outputs

    check_outputs({"--out": args.out}, inputs={"--stack": args.stack, "--models": args.models,
                                               "the model card": [card_path(m) for m in args.models]})
    stack = load_stack(args.stack)
    if args.blank_aux:
        stack = stack.with_blank_aux(args.blank_aux)
        print(f"aux bands left blank: {', '.join(args.blank_aux)}")
    card = read_card(args.models[0])
    spec = MaskSpec.from_dict(card.masking)
    spec = MaskSpec(spec.scenarios, (args.species_k, args.species_k),
                    args.mask_fraction if args.mask_fraction is not None else spec.region_fraction,
                    args.mask_shape or spec.region_shape, spec.blob_scale)
    device, why = pick_device(args.device)
    print(f"device: {why}")
    evaluate_models(stack, args.models, args.out, spec=spec, draws=args.draws, seed=args.mask_seed,
                    device=device, label=args.label, progress=TqdmProgress())
    return 0
