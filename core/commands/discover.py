"""``discovery-stack`` and ``discover``: the discovery test (see :mod:`core.evaluation.discovery`).

1. ``discovery-stack --stack S --out D`` removes every record of the held-out source data sets
   from the stack's presence bands;
2. train models on ``D`` (``train --stack D``), so neither their training nor their input holds
   those records;
3. ``discover --stack D --models LABEL=M1,M2,M3 ...`` scores their maps and the rivals'.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import atomic_path
from ..data import defaults
from ..data.build_stack import default_stack_path
from ..evaluation.discovery import (DEFAULT_SOURCES, INFO_KEY, discovery_stack, format_table, run_discovery,
                         success_figure)
from ..data.records import read_records
from ..data.species import SpeciesCatalog
from ..data.stack import Stack
from ..errors import InputError
from .common_args import add_column_arguments, record_columns


def _records(path: Path, stack: Stack, args: argparse.Namespace):
    from ..inference.layer_inputs import catalog_for

    return read_records(path, catalog_for(stack.species), columns=record_columns(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discovery-stack", help="a stack without the records of held-out source data sets",
                       description="Remove every record of the named source data sets (the records' "
                                   "'dataset' column) from a stack's presence bands, for the discovery test.")
    p.add_argument("--stack", type=Path, default=None, help="stack GeoTIFF (default: the embedded CONUS stack)")
    p.add_argument("--records", type=Path, default=defaults.RECORDS,
                   help="the records CSV the stack was built from (with a 'dataset' column)")
    p.add_argument("--holdout-datasets", nargs="+", default=list(DEFAULT_SOURCES),
                   help=f"source data sets to hold out (default: {' '.join(DEFAULT_SOURCES)})")
    p.add_argument("--out", required=True, type=Path, help="output stack GeoTIFF")
    add_column_arguments(p)
    p.set_defaults(func=run_stack)

    q = sub.add_parser("discover", help="score maps on records of held-out source data sets",
                       description="The discovery test: how each map ranks the cells of records that neither "
                                   "the models' training nor their input held, inside each held-out source's "
                                   "area; against blurred records, neighbour density and an aux-only "
                                   "gradient boosting, on the same cells.")
    q.add_argument("--stack", type=Path, required=True, help="a stack made by discovery-stack")
    q.add_argument("--records", type=Path, default=defaults.RECORDS, help="the records CSV (with 'dataset')")
    q.add_argument("--holdout-datasets", nargs="+", default=None,
                   help="sources to score (default: all the stack holds out)")
    q.add_argument("--models", nargs="*", default=[], metavar="LABEL=PATH[,PATH...]",
                   help="model groups: a label and its model files, one per seed (mean ± std over them)")
    q.add_argument("--maps", nargs="*", default=[], metavar="LABEL=MAP[+MAP][,MAP...]",
                   help="map groups: a label and prediction GeoTIFFs (predict --out, predict --aux-prior), "
                        "one per seed; A+B scores the sum of their log-odds. Any grid: taken onto the "
                        "stack's by nearest cell. Make them with models trained on a discovery-stack.")
    q.add_argument("--draws", type=int, default=10, help="mask draws per model map (nothing hidden by the user)")
    q.add_argument("--rival-seeds", type=int, default=3, help="seeds of the aux-only gradient boosting")
    q.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    q.add_argument("--out", type=Path, required=True, help="folder for discovery.json, .md and .png")
    add_column_arguments(q)
    q.set_defaults(func=run_discover)


def run_stack(args: argparse.Namespace) -> int:
    from ..output_paths import check_outputs

    check_outputs({"--out": args.out}, inputs={"--stack": args.stack, "--records": args.records})
    src = args.stack or default_stack_path()
    stack = Stack.read(src)
    out = discovery_stack(stack, _records(args.records, stack, args), args.holdout_datasets)
    out.write(args.out)
    before, after = stack.presence_counts(), out.presence_counts()
    print(f"wrote {args.out}: held out {', '.join(args.holdout_datasets)}")
    print("presence cells per species (before → after): "
          + ", ".join(f"{s} {before[s]}→{after[s]}" for s in stack.species))
    return 0


def parse_models(items: list[str]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for item in items:
        label, sep, paths = item.partition("=")
        if not sep or not label.strip() or not paths.strip():
            raise InputError(f"--models takes LABEL=PATH[,PATH...]; got {item!r}.")
        files = [Path(p) for p in paths.split(",") if p]
        for f in files:
            if not f.exists():
                raise InputError(f"Model file {f} (group {label!r}) does not exist.")
        groups[label.strip()] = files
    return groups


def parse_maps(items: list[str]) -> dict[str, list[list[Path]]]:
    groups: dict[str, list[list[Path]]] = {}
    for item in items:
        label, sep, seeds = item.partition("=")
        if not sep or not label.strip() or not seeds.strip():
            raise InputError(f"--maps takes LABEL=MAP[+MAP][,MAP...]; got {item!r}.")
        group = [[Path(p) for p in seed.split("+") if p] for seed in seeds.split(",") if seed]
        for f in (f for parts in group for f in parts):
            if not f.exists():
                raise InputError(f"Map {f} (group {label!r}) does not exist.")
        groups[label.strip()] = group
    return groups


def run_discover(args: argparse.Namespace) -> int:
    if args.draws < 1:
        raise InputError("--draws must be at least 1.")
    models = parse_models(args.models)
    maps = parse_maps(args.maps)
    from ..output_paths import check_outputs

    check_outputs({}, inputs={"--stack": args.stack, "--records": args.records}, folders={"--out": args.out})
    args.out.mkdir(parents=True, exist_ok=True)
    stack = Stack.read(args.stack)
    sources = args.holdout_datasets or stack.info.get(INFO_KEY) or []
    result = run_discovery(stack, _records(args.records, stack, args), sources, models, draws=args.draws,
                           rival_seeds=args.rival_seeds, device=args.device, maps=maps)
    table = format_table(result)
    payload = {"command": "discover", "stack": str(args.stack), "draws": args.draws,
               "maps": {k: [[str(p) for p in s] for s in v] for k, v in maps.items()}, **result.to_dict()}
    with atomic_path(args.out / "discovery.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    with atomic_path(args.out / "discovery.md") as tmp:
        tmp.write_text(table + "\n")
    success_figure(args.out / "discovery.png", result)
    print(table)
    print(f"wrote {args.out / 'discovery.json'}, discovery.md, discovery.png")
    return 0
