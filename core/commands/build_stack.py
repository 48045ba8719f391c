"""``build-stack``: records + aux rasters + vector layers + outline → a stack GeoTIFF."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ..data import defaults
from ..data.build_stack import build_stack
from ..data.species import SpeciesCatalog
from ..data.vector_aux import SPEC_SYNTAX, parse_specs
from ..output_paths import check_outputs
from ..progress import TqdmProgress
from .common_args import POSITIVE, add_column_arguments, record_columns

VECTOR_HELP = f"""vector layers as aux bands (after the rasters and the fault distance; each band z-scored
over the valid cells like the rasters):
  --points          point samples: one band <prefix>_<field> per numeric field, log10 of the value
                    (values <= 0 or empty are dropped; log=no keeps values as they are), interpolated
                    by inverse-distance weighting (1/d^2) of the 8 nearest samples at each cell
                    centre; below-detection values are used as stored (USGS DS-801: half the
                    detection limit, flagged <field>_cens = 1); plus <prefix>_sample_distance_km,
                    the distance to the nearest sample. CSV (.csv, .csv.gz): WGS84 lon/lat columns.
  --categories      polygons: one 0/1 band <prefix>_<value> per category value of the field
                    (1 where the cell centre is inside a polygon of that value)
  --line-attribute  lines: one band, the attribute-weighted line density (attribute x km of line
                    per km2, burned by length in each cell), Gaussian-smoothed (sigma_km)
Each is repeatable; giving one replaces that kind's default, 'none' drops it.

{textwrap.fill(SPEC_SYNTAX, 96)}

Defaults (files in resources/data):
  --points {defaults.GEOCHEMISTRY.name}::fields=Cu_mgkg,...,Bi_mgkg::prefix=soilC
      (USGS DS-801 soil C horizon, 15 elements)
  --categories {defaults.ROCK_TYPE.name}::field=ROCK_TYPE::prefix=rock_type
  --line-attribute {defaults.FAULT_SLIP.name}::layer=nshm23_geologic_deformation_model
      ::field=slip_pref_mm_yr::name=fault_slip_density
Example:
  --points "soil.gpkg::layer=samples::where=horizon = 'C'::fields=Cu_mgkg,Zn_mgkg::prefix=soil"
  --points none --categories geology.shp::field=ROCK_CLASS --line-attribute none
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-stack", help="build the presence/aux/valid stack GeoTIFF",
                       description="Rasterise mineral records per species, resample aux rasters and grid "
                                   "vector layers onto one grid; defaults: the embedded CONUS data, "
                                   "EPSG:5070, 1 mile.",
                       epilog=VECTOR_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output GeoTIFF")
    p.add_argument("--records", type=Path, default=defaults.RECORDS,
                   help="records CSV (.csv or .csv.gz): MinMod style (lon, lat, commodities) or USGS MRDS")
    p.add_argument("--aux", nargs="*", type=Path, default=list(defaults.AUX_RASTERS),
                   help="aux rasters (any GDAL format, any CRS); default: the embedded geophysics")
    p.add_argument("--faults", type=Path, default=defaults.FAULTS,
                   help="line layer for the distance-to-fault band; 'none' to leave it out")
    p.add_argument("--points", action="append", metavar="SPEC",
                   help="point samples → log10 IDW bands (repeatable; 'none': no default; see below)")
    p.add_argument("--categories", action="append", metavar="SPEC",
                   help="polygons + category field → one-hot bands (repeatable; 'none': no default)")
    p.add_argument("--line-attribute", action="append", metavar="SPEC",
                   help="lines + numeric field → Gaussian-smoothed density (repeatable; 'none': no default)")
    p.add_argument("--outline", type=Path, default=defaults.OUTLINE, help="polygon layer of valid cells")
    p.add_argument("--crs", default=defaults.GRID_CRS, help="grid CRS (projected, metres)")
    p.add_argument("--resolution", type=POSITIVE, default=defaults.RESOLUTION_M, help="cell size in metres")
    p.add_argument("--species", nargs="*", help="species symbols to keep (default: the 10 defaults)")
    p.add_argument("--extra-species", default="",
                   help="add species or spellings: 'Mo=Molybdenum|moly,Co=Cobalt'")
    p.add_argument("--include-processing-sites", action="store_true",
                   help="keep MRDS rows with dev_stat 'Plant' (processing sites, left out by default)")
    add_column_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    catalog = SpeciesCatalog()
    if args.extra_species:
        catalog = catalog.extended(SpeciesCatalog.parse_extra(args.extra_species))
    if args.species:
        catalog = catalog.subset(args.species)
    faults = None if str(args.faults).lower() == "none" else args.faults
    points = parse_specs(args.points, "points", defaults.POINT_SAMPLES)
    categories = parse_specs(args.categories, "categories", defaults.CATEGORICAL_POLYGONS)
    lines = parse_specs(args.line_attribute, "line-attribute", defaults.LINE_ATTRIBUTES)
    check_outputs({"--out": args.out}, inputs={
        "--records": args.records, "--aux": args.aux, "--faults": faults, "--outline": args.outline,
        "--points": [s.path for s in points], "--categories": [s.path for s in categories],
        "--line-attribute": [s.path for s in lines]})
    stack = build_stack(args.out, records=args.records, aux_rasters=args.aux, faults=faults,
                        outline=args.outline, crs=args.crs, resolution=args.resolution, catalog=catalog,
                        include_processing_sites=args.include_processing_sites, progress=TqdmProgress(),
                        point_samples=points, categorical_polygons=categories, line_attributes=lines,
                        record_columns=record_columns(args))
    g = stack.grid
    print(f"wrote {args.out}: {g.width} x {g.height} cells of {g.resolution:g} m in {g.crs.to_string()}, "
          f"{int(stack.valid.sum())} valid cells")
    print(f"records of these species inside the outline: {stack.info['records_in_region']} "
          f"(outside: {stack.info['records_outside_region']}), skipped (bad coordinates): "
          f"{stack.info['records_skipped_out_of_range']}, skipped (processing plants): "
          f"{stack.info['records_skipped_processing_plants']}, skipped (naming none of the species): "
          f"{stack.info['records_skipped_no_species']}")
    print("presence cells per species: " + ", ".join(f"{k} {v}" for k, v in stack.presence_counts().items()))
    print("aux bands: " + ", ".join(stack.aux_names))
    return 0
