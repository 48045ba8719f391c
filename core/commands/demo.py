"""``demo``: the main job on the embedded default data, end to end, with the bundled model."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import defaults
from ..data.build_stack import build_stack
from ..data.maps import stack_quicklook
from ..errors import InputError
from ..evaluation.example_run import run_example
from ..model.model_file import read_card
from ..progress import TqdmProgress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the README's main job: build the CONUS stack, map it, and infill "
                                    "hidden Cu records in a held-out western region with the bundled model")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    p.add_argument("--model", type=Path, default=defaults.BUNDLED_MODEL, help="model file (default: bundled)")
    p.add_argument("--species", default="Cu", help="species to hide in the region")
    p.add_argument("--draws", type=int, default=1,
                   help="mask draws (1: only the chosen species is hidden; more add random extra masks)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.model.exists():
        raise InputError(f"No model at {args.model}. Train one with: python train_cli.py train "
                         f"--preset bundled_blocks --seed 1 --out {args.model}")
    from ..output_paths import check_outputs

    check_outputs({}, inputs={"--model": args.model}, folders={"--out": args.out})
    args.out.mkdir(parents=True, exist_ok=True)
    stack_path = args.out / "conus_stack.tif"
    stack = build_stack(stack_path, progress=TqdmProgress())
    print(f"stack: {stack_path} ({stack.grid.width} x {stack.grid.height} cells, {stack.grid.crs.to_string()})")
    print("presence cells per species: " + ", ".join(f"{k} {v}" for k, v in stack.presence_counts().items()))
    print(f"quick-look map: {stack_quicklook(stack, args.out / 'conus_stack.png')}")

    card = read_card(args.model)
    test = card.metrics.get("test")
    if test:
        print(f"\nheld-out test metrics of {args.model.name} (from its card):")
        for scenario, row in test.get("scenarios", {}).items():
            o = row.get("overall", row)
            print(f"  {scenario:<8} Dice {o.get('dice', float('nan')):.3f}  recall {o.get('recall', float('nan')):.3f}"
                  f"  AUPRC {o.get('auprc', float('nan')):.3f}")
    device = None if args.device == "auto" else args.device
    ex = run_example(stack, args.model, args.out, args.species, draws=args.draws, device=device,
                     progress=TqdmProgress())
    r0, c0, h, w = ex.block
    print(f"\nexample: every {ex.species} record hidden in the held-out block rows {r0}-{r0 + h}, cols {c0}-{c0 + w} "
          f"(centre {ex.centre_lonlat[0]:.2f}°, {ex.centre_lonlat[1]:.2f}°): {ex.hidden_cells} cells, "
          f"{ex.hidden_records} with {ex.species} records; {ex.infill_note}")
    print(f"model threshold (chosen on validation blocks): {ex.threshold:.4g}")
    print(ex.table())
    print(f"\nwrote {args.out / f'example_{ex.species}_prediction.tif'}, {args.out / f'example_{ex.species}.png'}, "
          f"{args.out / f'example_{ex.species}.json'}")
    return 0
