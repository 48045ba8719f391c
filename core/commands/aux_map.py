"""``aux-map``: the aux-only map (:mod:`core.inference.aux_boosting`) per species, as a prediction GeoTIFF.

No model file and no record as input: gradient boosting on the stack's aux bands, fitted to
where each species' records are. On the discovery test it ranks some held-out surveys better
than M3's maps (README); ``predict`` points here, and every reader of prediction GeoTIFFs
(the dock, ``clusters``, the quick-look, ``discover --maps``) takes its output.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import TqdmProgress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aux-map", help="the aux-only map: gradient boosting on the aux bands, per species (GeoTIFF)",
                       description="Fits, per species, a gradient-boosting classifier (scikit-learn) on the stack's "
                                   "aux bands and their local mean and spread to where that species' records are, "
                                   "and writes its probability on every valid cell (mean_*/std_* over --seeds, the "
                                   "same GeoTIFF layout as predict). It takes no record as input: a map of what the "
                                   "aux layers say, beside M3's map of what the records and the aux layers say. "
                                   "Where nothing is recorded (a whole survey missing) this map and the blurred "
                                   "records each rank some held-out surveys best, and M3's map, alone or combined "
                                   "with this one (combine-maps), clears the bar set in advance on none; where "
                                   "other species are recorded, M3's infill map (predict) leads "
                                   "(docs/results/discovery).")
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: the embedded CONUS stack)")
    p.add_argument("--species", nargs="+", metavar="SYMBOL", help="species to map (default: all the stack's)")
    p.add_argument("--seeds", type=int, default=1, help="fits per species (mean and spread over them; default 1)")
    p.add_argument("--extent", type=float, nargs=4, metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
                   help="map only the cells of this extent (in the stack's CRS, or --extent-crs), fitted on them "
                        "and the cells around them (the extent grown on every side by its larger side); only "
                        "that part of the stack is read (default: the whole stack)")
    p.add_argument("--extent-crs", metavar="CRS", help="CRS of --extent, e.g. EPSG:4326 (default: the stack's)")
    p.add_argument("--out-of-fold", type=int, default=0, metavar="K",
                   help="fit on K-1 of K spatial folds (blocks of --fold-block cells dealt at random) and map the "
                        "K-th, so that no cell's value was fitted to its own records (default 0: one fit on all)")
    p.add_argument("--fold-block", type=int, default=64, metavar="CELLS", help="side of a fold's blocks (default 64)")
    p.add_argument("--stack-out", type=Path, metavar="STACK",
                   help="also write a copy of the stack with the out-of-fold map as aux bands (aux_map_<species>: "
                        "z-scored log-odds), for training and predicting with M3 on it (needs --out-of-fold)")
    p.add_argument("--out", type=Path, required=True, help="output GeoTIFF (mean_* and std_* bands)")
    p.add_argument("--quicklook", type=Path, help="PNG quick-look (default: the output with .png)")
    p.add_argument("--no-quicklook", action="store_true", help="write no PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.build_stack import default_stack_path
    from ..data.prediction_io import write_quicklook
    from ..inference.aux_map import make_aux_map, read_for_extent, write_aux_map
    from ..output_paths import check_outputs

    if args.stack_out and not args.out_of_fold:
        raise InputError("--stack-out needs --out-of-fold K: a map fitted to every record, given to a model as an "
                         "input, hands it the records it is trained to find. Add e.g. --out-of-fold 3.")
    if args.stack_out and args.extent:
        raise InputError("--stack-out writes a copy of the whole stack; it cannot be combined with --extent. "
                         "Leave out --extent (or --stack-out).")
    if args.extent_crs and not args.extent:
        raise InputError("--extent-crs is the CRS of --extent: give --extent LEFT BOTTOM RIGHT TOP too.")
    stack_path = Path(args.stack or default_stack_path())
    png = None if args.no_quicklook else (args.quicklook or args.out.with_suffix(".png"))
    check_outputs({"--out": args.out, "--quicklook": png, "--stack-out": args.stack_out},
                  inputs={"--stack": stack_path})
    t0 = time.perf_counter()
    stack, window = read_for_extent(stack_path, args.extent, args.extent_crs)
    aux_map = make_aux_map(stack, args.species, args.seeds, args.out_of_fold, args.fold_block, TqdmProgress(),
                           window)
    write_aux_map(aux_map, stack, args.out)
    species, mean, method = aux_map.species, aux_map.mean, aux_map.method
    h, w = mean.shape[1:]
    fitted = f" (fitted on {stack.grid.width} x {stack.grid.height})" if window else ""
    print(f"wrote {args.out}: aux-only map of {', '.join(species)} ({args.seeds} seed(s), "
          f"{len(stack.aux_bands)} aux bands), {w} x {h} cells{fitted}, CPU, {time.perf_counter() - t0:.0f} s")
    if args.stack_out:
        with_map = stack_with_aux_map(stack, species, mean, method)
        with_map.write(args.stack_out)
        print(f"wrote {args.stack_out}: the stack with {len(species)} more aux band(s) "
              f"({', '.join(b.name for b in with_map.aux_bands[-len(species):])})")
    if png:
        write_quicklook(args.out, png, stack.window(*window) if window else stack)
        print(f"quick-look: {png}")
    return 0


def stack_with_aux_map(stack, species: list[str], probability: np.ndarray, method: str):
    """The stack with each species' map as an aux band ``aux_map_<species>``: its log-odds,
    z-scored over valid cells like any aux band."""
    from ..data.aux_layers import normalised_band
    from ..inference.combine import logit

    bands, arrays = [], []
    for s, p in zip(species, probability):
        z, band = normalised_band(logit(np.nan_to_num(p, nan=0.5)).astype(np.float32), stack.valid,
                                  f"aux_map_{s}", "log-odds", f"train_cli.py aux-map: {method}")
        bands.append(band)
        arrays.append(z)
    return stack.with_aux(bands, np.stack(arrays))
