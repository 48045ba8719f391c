"""``combine-maps``: prediction GeoTIFFs as one ranking (:mod:`core.inference.combine`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("combine-maps", help="several prediction GeoTIFFs as one ranking (sum of log-odds)",
                       description="Per species, adds the log-odds of prediction GeoTIFFs made on the same stack "
                                   "(e.g. predict's infill map and aux-map's aux-only map) and writes the result "
                                   "in predict's layout. It ranks cells (the dock's capture curve, clusters by "
                                   "top share); it is not a calibrated probability: no threshold, std_* bands NaN.")
    p.add_argument("maps", nargs="+", type=Path, help="prediction GeoTIFFs (predict --out, aux-map --out)")
    p.add_argument("--out", type=Path, required=True, help="output GeoTIFF")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.combine import combine_predictions
    from ..output_paths import check_outputs

    check_outputs({"--out": args.out}, inputs={"maps": list(args.maps)})
    species = combine_predictions(args.maps, args.out)
    print(f"wrote {args.out}: {' + '.join(str(m) for m in args.maps)} combined (sum of log-odds) for {', '.join(species)}")
    return 0
