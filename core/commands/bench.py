"""``bench``: throughput against a baseline measured in the same run (``bench train``, ``bench infer``),
and the peak memory of ``predict`` against the ensemble's size (``bench memory``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import atomic_path
from ..data.stack import Stack
from ..evaluation.bench_infer import CPU_PART
from ..evaluation.bench_infer import __doc__ as bench_infer_doc
from ..evaluation.bench_train import run_train_bench
from ..training.presets import PRESETS, preset
from ..training.train import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: ours against a naive reference, in the same run")
    what = bench.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = what.add_parser("train", help="training tiles/s against per-sample numpy masking in a DataLoader "
                                      "with fp32")
    add_bench_infer(what)
    add_bench_memory(what)
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
        from ..data.synthetic import synthetic_stack

        stack = synthetic_stack(512, 512, n_species=10, n_aux=6, seed=0)
    overrides = dict(preset(args.preset), batch_size=args.batch_size, encoder_depth=args.encoder_depth)
    config = TrainConfig().with_overrides(overrides)
    result = run_train_bench(stack, config, args.device, steps=args.steps)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return 0


def add_bench_infer(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench infer`` under the ``bench`` command's subparsers."""
    p = bench_subparsers.add_parser("infer", help="inference throughput vs a naive tile-by-tile reference",
                                    description=bench_infer_doc.split("\n\n")[0])
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: the embedded CONUS stack)")
    p.add_argument("--model", type=Path, help="model file (default: a random-weight U-Net shaped like the "
                                               "quick preset's: resnet18, tile 64)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--draws", type=int, default=4, help="evaluations of each window by ours (the aux share is "
                                                        "computed once for them); rates are per evaluation")
    p.add_argument("--window", type=int, help="window side (default: as predict)")
    p.add_argument("--overlap", type=int, help="window overlap (default: as predict)")
    p.add_argument("--repeats", type=int, default=2, help="alternating timed rounds of each (best counts)")
    p.add_argument("--part", type=int, nargs=4, metavar=("ROW", "COL", "HEIGHT", "WIDTH"),
                   help=f"part of the grid to time (default on CPU: {' '.join(map(str, CPU_PART))}; "
                        "on CUDA: the whole grid)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    p.set_defaults(func=run_infer)
    return p


def add_bench_memory(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench memory`` under the ``bench`` command's subparsers."""
    from ..evaluation.bench_memory import __doc__ as doc

    p = bench_subparsers.add_parser("memory", help="peak memory of predict against the number of models and draws",
                                    description=doc.split("\n\n")[0])
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: the embedded CONUS stack)")
    p.add_argument("--model", type=Path, help="model file standing for each model (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--configs", default="1x1,1x4,3x4",
                   help="models x draws per run, comma-separated (default 1x1,1x4,3x4)")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    p.set_defaults(func=run_memory)
    return p


def run_memory(args: argparse.Namespace) -> int:
    from ..data.build_stack import default_stack_path
    from ..data.defaults import BUNDLED_MODEL
    from ..evaluation.bench_memory import bench_memory, parse_configs
    from ..output_paths import check_outputs

    configs = parse_configs(args.configs)
    check_outputs({"--json": args.json}, inputs={"--stack": args.stack, "--model": args.model})
    out = bench_memory(args.stack or default_stack_path(), args.model or BUNDLED_MODEL, args.device, configs)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(out, indent=2))
    return 0


def run_infer(args: argparse.Namespace) -> int:
    import torch

    from ..data.build_stack import default_stack_path
    from ..evaluation.bench_infer import bench_infer

    if args.threads:
        torch.set_num_threads(args.threads)
    out = bench_infer(args.stack or default_stack_path(), args.model, args.device, args.batch_size, args.window,
                      args.overlap, args.repeats, tuple(args.part) if args.part else None, args.draws)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(out, indent=2))
    return 0
