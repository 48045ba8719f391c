"""``clusters``: high-probability regions with no record of the species nearby → GeoPackage."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..clusters import KnownSites, check_prediction_stack, find_clusters, summary, write_clusters
from ..prediction_io import read_prediction_info
from .records_args import add_column_arguments, record_columns


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "clusters", help="discovered clusters: high mean probability, no record of the species nearby",
        description="Connected regions (8-neighbour) of a prediction's mean probability at or above the "
                    "threshold, at least --min-area-km2 large, with no record of that species within "
                    "--min-distance-km. Writes a GeoPackage layer 'clusters' and prints a summary.")
    p.add_argument("--prediction", type=Path, required=True, help="GeoTIFF written by predict")
    p.add_argument("--stack", type=Path, help="stack GeoTIFF whose presence cells are the known records "
                                               "(used when --records is not given)")
    p.add_argument("--records", type=Path, help="records CSV for site names and commodities (MinMod or MRDS); "
                                                 "default: the embedded records when the stack was built from them")
    p.add_argument("--threshold", type=float, help="mean probability threshold (default: the models' threshold)")
    p.add_argument("--min-area-km2", type=float, default=25.0, help="smallest cluster area (default 25 km2)")
    p.add_argument("--min-distance-km", type=float, default=10.0,
                   help="no record of the species closer than this to the cluster (default 10 km)")
    p.add_argument("--species", nargs="+", help="species bands to search (default: all in the prediction)")
    p.add_argument("--out", type=Path, required=True, help="output GeoPackage (.gpkg)")
    add_column_arguments(p)
    p.set_defaults(func=run)


def known_sites(args: argparse.Namespace, grid) -> tuple[KnownSites, str]:
    from .. import defaults
    from ..records import read_records
    from ..species import SpeciesCatalog
    from ..stack_windows import GeoTiffStackSource

    stack_path = args.stack
    records = args.records
    source = None
    if stack_path is not None or records is None:
        source = GeoTiffStackSource(stack_path or defaults.default_stack_path())
    try:
        if stack_path is not None:  # the user says it is the prediction's stack: it must be
            check_prediction_stack(args.prediction, source, Path(stack_path).name)
        if records is None and source is not None and source.info.get("records") == defaults.RECORDS.name:
            records = defaults.RECORDS
        if records is not None:
            symbols = source.species if source is not None else None
            catalog = SpeciesCatalog()
            if symbols and all(s in catalog.symbols for s in symbols):
                catalog = catalog.subset(symbols)
            recs = read_records(records, catalog, columns=record_columns(args))
            return KnownSites.from_records(recs, grid), f"records in {Path(records).name}"
        return KnownSites.from_stack(source), "presence cells of the stack"
    finally:
        if source is not None:
            source.close()


def run(args: argparse.Namespace) -> int:
    from ..output_paths import check_outputs

    check_outputs({"--out": args.out}, inputs={"--prediction": args.prediction, "--stack": args.stack,
                                               "--records": args.records})
    grid, species, meta = read_prediction_info(args.prediction)
    threshold = args.threshold if args.threshold is not None else float(meta.get("threshold", 0.5))
    sites, what = known_sites(args, grid)
    clusters = find_clusters(args.prediction, sites, threshold, args.min_area_km2, args.min_distance_km,
                             args.species)
    write_clusters(clusters, args.out, grid.crs,
                   {"prediction": str(args.prediction), "threshold": threshold, "min_area_km2": args.min_area_km2,
                    "min_distance_km": args.min_distance_km, "known": what})
    print(f"threshold {threshold:.3f}, min area {args.min_area_km2:g} km2, no record of the species within "
          f"{args.min_distance_km:g} km ({len(sites.x)} known: {what})")
    print(summary(clusters))
    print(f"wrote {args.out} (layer 'clusters', {len(clusters)} features)")
    return 0
