"""``predict``: infill a stack with an ensemble of model files × mask draws → mean/std GeoTIFF + PNG."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError
from ..inference.infer import infill
from ..masks.hiding import HideSpec, UnrecordedRegion, region_from_bounds, region_from_vector
from ..progress import TqdmProgress
from .common_args import COUNT, FINITE, POSITIVE_INT, number

GDAL_CACHE_BYTES = 128 * 2 ** 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="infill hidden species/regions: mean probability and spread per species (GeoTIFF)",
        description="Runs every model file with --draws random mask draws each over the stack in sliding "
                    "windows with blended seams, and writes per species the mean probability and its standard "
                    "deviation over the ensemble (one GeoTIFF; NaN where nothing was predicted) and a PNG "
                    "quick-look. Hide species (--hide-species) and/or a region (--hide-bounds or "
                    "--hide-vector); hide nothing for the 'where might minerals be' map, in which the random "
                    "draws hide each cell in turn (use e.g. 3 models x 50 draws). Which map: to fill a species "
                    "hidden where other species are recorded, this infill map (its lead over the baselines rests "
                    "on which species occur together); where nothing is recorded (a whole survey missing), no map "
                    "here is reliable: compare it with aux-map's aux-only map and the blurred records "
                    "(docs/results/discovery).")
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: the embedded CONUS stack, built and "
                                               "cached on first use); read by windows")
    p.add_argument("--models", nargs="+", type=Path, help="model files (.safetensors), e.g. 3 seeds "
                                                          "(default: the bundled model)")
    p.add_argument("--hide-species", nargs="+", default=[], metavar="SYMBOL", help="species to hide, e.g. Cu Au")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--hide-bounds", nargs=4, type=FINITE, metavar=("MINX", "MINY", "MAXX", "MAXY"),
                       help="rectangle to hide in (see --bounds-crs)")
    where.add_argument("--hide-vector", type=Path, help="polygon layer to hide in (GeoPackage, Shapefile, ...)")
    p.add_argument("--hide-layer", help="layer of --hide-vector (default: its first)")
    p.add_argument("--hide-unrecorded", action="store_true",
                   help="hide every cell that holds no record (inside --hide-bounds/--hide-vector if given), every "
                        "record visible: where are the records nobody made? (asked of models trained with the "
                        "'unrecorded' masking scenario; use --draws 1). The records show as probability 1 of "
                        "their species")
    p.add_argument("--bounds-crs", default="EPSG:4326",
                   help="CRS of --hide-bounds (default EPSG:4326: lon/lat degrees; 'grid' for the stack's CRS)")
    p.add_argument("--draws", type=POSITIVE_INT, default=1,
                   help="random mask draws per model (default 1: the hidden set alone; more adds random extra "
                        "masking from the model's training configuration around it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask draws")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=4, help="windows per forward pass")
    p.add_argument("--window", type=number(int, 32), help="largest window side in cells (default: 8 tiles, at least 512; fitted to the grid)")
    p.add_argument("--overlap", type=COUNT, help="cells shared by neighbouring windows (default: one tile)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--bf16", action="store_true",
                   help="run the U-Net's backbone in bf16 (CUDA, or a CPU with AVX512-BF16/AMX): 1.4x faster on "
                        "the project's CPU, not exact (measured with the bundled model: probabilities moved by "
                        "at most 0.03, ROC AUCs by at most 0.002; bench infer measures both); the default is "
                        "float32 on every device")
    p.add_argument("--out", type=Path, required=True, help="output GeoTIFF (mean_* and std_* bands)")
    p.add_argument("--quicklook", type=Path, help="PNG quick-look (default: the output with .png)")
    p.add_argument("--no-quicklook", action="store_true", help="write no PNG")
    p.add_argument("--aux-prior", action="store_true",
                   help="write the models' aux prior instead (what their aux-only branch says from the aux "
                        "bands alone, no record; models trained with --preset quick_prior): on the discovery "
                        "test it ranks some held-out surveys better than the infill map (README)")
    p.add_argument("--observation", action="store_true",
                   help="write the observation probability of PU models (train --pu) instead of the presence "
                        "probability: where a survey would have recorded a mineral that is there, from the "
                        "visible records' coverage; same layout (mean_*/std_* per species, equal across species)")
    p.add_argument("--record", action="store_true",
                   help="write PU models' record probability instead: presence x observation, what their loss fits "
                        "to the records (where a record would be made)")
    p.set_defaults(func=run)


def pu_output(args: argparse.Namespace) -> str:
    """Which map of the models to write: "presence" (every model), or a PU model's "observation" or "record"."""
    if args.observation and args.record:
        raise InputError("--observation and --record are two different maps: choose one.")
    return "observation" if args.observation else "record" if args.record else "presence"


def hide_spec(args: argparse.Namespace, source) -> HideSpec:
    region = None
    if args.hide_bounds is not None:
        crs = source.grid.crs if str(args.bounds_crs).lower() == "grid" else args.bounds_crs
        region = region_from_bounds(args.hide_bounds, crs)
    elif args.hide_vector is not None:
        region = region_from_vector(args.hide_vector, args.hide_layer)
    elif args.hide_layer:
        raise InputError("--hide-layer needs --hide-vector.")
    if getattr(args, "hide_unrecorded", False):
        region = UnrecordedRegion(source, region)
    return HideSpec(tuple(args.hide_species), region)


def run(args: argparse.Namespace) -> int:
    import rasterio

    from ..data.build_stack import default_stack_path
    from ..data.defaults import BUNDLED_MODEL
    from ..data.prediction_io import write_quicklook
    from ..data.stack_sources import GeoTiffStackSource
    from ..model.model_file import card_path
    from ..output_paths import check_outputs

    output = pu_output(args)
    if args.aux_prior and output != "presence":
        raise InputError("--aux-prior, --observation and --record are different maps: choose one.")
    models = args.models or [BUNDLED_MODEL]
    png = None if args.no_quicklook else (args.quicklook or args.out.with_suffix(".png"))
    check_outputs({"--out": args.out, "--quicklook" if args.quicklook else "--quicklook (default: --out with .png)": png},
                  inputs={"--stack": args.stack, "--models": models, "the model card": [card_path(m) for m in models],
                          "--hide-vector": args.hide_vector})
    stack_path = args.stack or default_stack_path()
    # GDAL's block cache would otherwise grow to 5% of the machine's memory while strips are read
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), GeoTiffStackSource(stack_path) as source:
        hide = hide_spec(args, source)
        if args.aux_prior:
            if not hide.is_empty or args.draws != 1:
                raise InputError("--aux-prior maps what the aux layers say with no record: it takes no "
                                 "--hide-* option and no --draws.")
            from ..model.aux_prior import aux_prior_map

            _, _, seconds = aux_prior_map(source, models, out=args.out, progress=TqdmProgress())
            print(f"wrote {args.out}: the aux prior of {len(models)} model(s) (mean_*/std_* over them), "
                  f"{source.grid.width} x {source.grid.height} cells, CPU, {seconds:.1f} s")
            if png is not None:
                write_quicklook(args.out, png, source)
                print(f"quick-look: {png}")
            return 0
        device, main, dist = args.device, True, None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: windows shared out, rank 0 writes
            from ..training.train import init_distributed

            dist, device, _ = init_distributed(args.device)
            main = dist.main
        result = infill(source, models, hide, draws=args.draws, batch_size=args.batch_size, device=device,
                        progress=TqdmProgress() if main else None, out=args.out, window=args.window,
                        overlap=args.overlap, seed=args.seed, output=output,
                        precision="bf16" if args.bf16 else "fp32")
        if dist is not None:
            dist.finish()
        if not main:
            return 0
        g = result.grid
        print(f"device: {result.device}")
        print(f"hidden: {result.hide}")
        print(f"ensemble: {len(result.models)} model(s) x {result.draws} draw(s) = {result.evaluations} evaluations; "
              f"{result.windows}; {result.window_evaluations} window evaluations in {result.seconds:.1f} s "
              f"({result.seconds / max(1, result.window_evaluations):.2f} s each)")
        print(f"wrote {args.out}: {g.width} x {g.height} cells, {g.crs.to_string()}, bands "
              + ", ".join(f"mean_{s}/std_{s}" for s in result.species)
              + {"observation": " (the PU models' observation probability, the same for every species)",
                 "record": " (the PU models' record probability, presence x observation)"}.get(output, ""))
        print("predicted cells: " + ", ".join(f"{s} {n}" for s, n in result.predicted_cells.items()))
        if png is not None:
            write_quicklook(args.out, png, source)
            print(f"quick-look: {png}")
        if hide.is_empty and output == "presence":
            from ..evaluation.discovery import RIVALS_NOTE

            print(RIVALS_NOTE)
    return 0
