"""``interdependence``: how much hiding species j hurts a trained model's prediction of species i."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import atomic_path
from ..device import pick_device
from ..evaluation.interdependence import species_interdependence
from ..masks.tiles import HoldoutSplit, StackTensors, holdout_tiles
from ..model.model_file import read_card
from ..model.predictors import ModelPredictor
from ..progress import TqdmProgress
from .common_args import add_stack_argument, load_stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interdependence", help="matrix of how much hiding species j hurts species i (a model's "
                                               "learned co-presence)",
                       description="On the model's held-out test tiles, hides each species over the whole tile, "
                                   "alone and with each other species, and reports species i's AUPRC and Dice "
                                   "in both cases and their drop; writes JSON and a heat map PNG.")
    add_stack_argument(p)
    p.add_argument("--model", required=True, type=Path, help="model file (.safetensors)")
    p.add_argument("--out", type=Path, default=Path("out/interdependence"), help="output folder")
    p.add_argument("--part", default="test", choices=("test", "val"), help="held-out blocks to use")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.compare_figures import interdependence_figure
    from ..output_paths import check_outputs

    check_outputs({"interdependence.json": args.out / "interdependence.json",
                   "interdependence.png": args.out / "interdependence.png"},
                  inputs={"--stack": args.stack, "--model": args.model}, folders={"--out": args.out})
    stack = load_stack(args.stack)
    card = read_card(args.model)
    card.check_stack(stack)
    device, why = pick_device(args.device)
    print(f"device: {why}")
    split = HoldoutSplit.from_dict(card.data["holdout"]["split"])
    origins = holdout_tiles(stack, split, card.tile_size, args.part, float(card.training.get("min_valid", 0.25)))
    predictor = ModelPredictor.from_file(args.model, device=device)
    result = species_interdependence(predictor, StackTensors(stack, device), origins, card.tile_size,
                                     list(stack.species), card.threshold, progress=TqdmProgress())
    result["model"] = str(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "interdependence.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=float))
    interdependence_figure(result, args.out / "interdependence.png",
                           title=f"{args.model.stem}: drop of species i's AUPRC when species j is hidden too")
    sp = result["species"]
    print(f"AUPRC drop of species i (rows) when species j (columns) is hidden too, {result['tiles']} tiles:")
    print(f"{'':>6}" + "".join(f"{s:>7}" for s in sp))
    for i, s in enumerate(sp):
        print(f"{s:>6}" + "".join("      ." if i == j else f"{result['drop']['auprc'][i][j]:7.3f}"
                                  for j in range(len(sp))))
    print(f"wrote {args.out / 'interdependence.json'} and interdependence.png")
    return 0
