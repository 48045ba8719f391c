"""``build-stack``: records + aux rasters + outline → a stack GeoTIFF."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import defaults
from ..build_stack import build_stack
from ..progress import TqdmProgress
from ..species import SpeciesCatalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-stack", help="build the presence/aux/valid stack GeoTIFF",
                       description="Rasterise mineral records per species and resample aux rasters onto "
                                   "one grid; defaults: the embedded CONUS data, EPSG:5070, 1 mile.")
    p.add_argument("--out", required=True, type=Path, help="output GeoTIFF")
    p.add_argument("--records", type=Path, default=defaults.RECORDS,
                   help="records CSV (.csv or .csv.gz): MinMod style (lon, lat, commodities) or USGS MRDS")
    p.add_argument("--aux", nargs="*", type=Path, default=list(defaults.AUX_RASTERS),
                   help="aux rasters (any GDAL format, any CRS); default: the embedded geophysics")
    p.add_argument("--faults", type=Path, default=defaults.FAULTS,
                   help="line layer for the distance-to-fault band; 'none' to leave it out")
    p.add_argument("--outline", type=Path, default=defaults.OUTLINE, help="polygon layer of valid cells")
    p.add_argument("--crs", default=defaults.GRID_CRS, help="grid CRS (projected, metres)")
    p.add_argument("--resolution", type=float, default=defaults.RESOLUTION_M, help="cell size in metres")
    p.add_argument("--species", nargs="*", help="species symbols to keep (default: the 10 defaults)")
    p.add_argument("--extra-species", default="",
                   help="add species or spellings: 'Mo=Molybdenum|moly,Co=Cobalt'")
    p.add_argument("--include-processing-sites", action="store_true",
                   help="keep MRDS rows with dev_stat 'Plant' (processing sites, left out by default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    catalog = SpeciesCatalog()
    if args.extra_species:
        catalog = catalog.extended(SpeciesCatalog.parse_extra(args.extra_species))
    if args.species:
        catalog = catalog.subset(args.species)
    faults = None if str(args.faults).lower() == "none" else args.faults
    stack = build_stack(args.out, records=args.records, aux_rasters=args.aux, faults=faults,
                        outline=args.outline, crs=args.crs, resolution=args.resolution, catalog=catalog,
                        include_processing_sites=args.include_processing_sites, progress=TqdmProgress())
    g = stack.grid
    print(f"wrote {args.out}: {g.width} x {g.height} cells of {g.resolution:g} m in {g.crs.to_string()}, "
          f"{int(stack.valid.sum())} valid cells")
    print(f"records of these species inside the outline: {stack.info['records_in_region']} "
          f"(outside: {stack.info['records_outside_region']}), skipped (bad coordinates): "
          f"{stack.info['records_skipped_out_of_range']}, skipped (processing plants): "
          f"{stack.info['records_skipped_processing_plants']}")
    print("presence cells per species: " + ", ".join(f"{k} {v}" for k, v in stack.presence_counts().items()))
    print("aux bands: " + ", ".join(stack.aux_names))
    return 0
