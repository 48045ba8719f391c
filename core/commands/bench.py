"""``bench``: throughput against a baseline measured in the same run (``bench train``, ``bench infer``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import atomic_path
from ..bench import run_train_bench
from ..presets import PRESETS, preset
from ..stack import Stack
from ..train import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    from ..bench_infer import add_bench_infer

    bench = sub.add_parser("bench", help="benchmarks: ours against a naive reference, in the same run")
    what = bench.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = what.add_parser("train", help="training tiles/s against per-sample numpy masking in a DataLoader "
                                      "with fp32")
    add_bench_infer(what)
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: a synthetic 512 x 512 stack with 10 "
                                              "species and 6 aux bands, so the bench needs no data)")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="model and tile settings")
    p.add_argument("--batch-size", type=int, help="tiles per step (default: the preset's)")
    p.add_argument("--encoder-depth", type=int, help="ResNet depth (default: the preset's)")
    p.add_argument("--steps", type=int, default=5, help="timed steps of each pipeline")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..output_paths import check_outputs

    check_outputs({"--json": args.json}, inputs={"--stack": args.stack})
    if args.stack is not None:
        stack = Stack.read(args.stack)
    else:
        from ..synthetic import synthetic_stack

        stack = synthetic_stack(512, 512, n_species=10, n_aux=6, seed=0)
    overrides = dict(preset(args.preset), batch_size=args.batch_size, encoder_depth=args.encoder_depth)
    config = TrainConfig().with_overrides(overrides)
    result = run_train_bench(stack, config, args.device, steps=args.steps)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return 0
