"""``clusters``: high-probability regions with no record of the species nearby → GeoPackage."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.prediction_io import prediction_threshold, read_prediction_info
from ..inference.clusters import KnownSites, check_prediction_stack, find_clusters, summary, write_clusters
from ..inference.clusters import known_sites as find_known_sites
from .common_args import add_column_arguments, record_columns


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


def known_sites(args: argparse.Namespace, grid, species) -> tuple[KnownSites, str]:
    """The known sites by :func:`core.inference.clusters.known_sites`; ``--stack`` must be the prediction's."""
    from ..data.stack_sources import GeoTiffStackSource

    if args.stack is None:
        return find_known_sites(grid, species, records=args.records, columns=record_columns(args))
    with GeoTiffStackSource(args.stack) as source:
        check_prediction_stack(args.prediction, source, Path(args.stack).name)
        return find_known_sites(grid, species, records=args.records, columns=record_columns(args), stack=source)


def run(args: argparse.Namespace) -> int:
    from ..output_paths import check_outputs

    check_outputs({"--out": args.out}, inputs={"--prediction": args.prediction, "--stack": args.stack,
                                               "--records": args.records})
    grid, species, meta = read_prediction_info(args.prediction)
    threshold = prediction_threshold(meta, args.threshold)
    sites, what = known_sites(args, grid, species)
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
