"""``demo``: the main job on the embedded default data, end to end."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..build_stack import build_stack
from ..maps import stack_quicklook
from ..progress import TqdmProgress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build the default CONUS stack and map it (the README's main job)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    stack_path = args.out / "conus_stack.tif"
    stack = build_stack(stack_path, progress=TqdmProgress())
    print(f"stack: {stack_path} ({stack.grid.width} x {stack.grid.height} cells, {stack.grid.crs.to_string()})")
    print("presence cells per species: " + ", ".join(f"{k} {v}" for k, v in stack.presence_counts().items()))
    png = stack_quicklook(stack, args.out / "conus_stack.png")
    print(f"quick-look map: {png}")
    return 0
