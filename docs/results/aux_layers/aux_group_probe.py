"""What each group of aux bands adds on the discovery test, probed with the aux-only rival.

Fits the aux-only gradient boosting of :mod:`core.evaluation.discovery` (no record as input) on a
discovery stack with one group of aux bands at a time, and with all, and prints its AUC over
10-cell blocks and its top-10 % capture on each held-out source. A cheap probe (minutes on one
core) of which layers carry information about records no survey in the input holds.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/aux_layers/aux_group_probe.py --stack out/discovery_stack.tif \
        --out docs/results/aux_layers/aux_groups.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root

from core.data import defaults  # noqa: E402
from core.evaluation.discovery import INFO_KEY, aux_only_maps, held_out_sources, score_map  # noqa: E402
from core.inference.layer_inputs import catalog_for  # noqa: E402
from core.data.records import read_records  # noqa: E402
from core.data.stack import Stack  # noqa: E402

GEOPHYSICS = ("gravity_disturbance_10arcmin", "geoid_height_10arcmin", "topography_10arcmin",
              "elevation_5arcmin", "magnetic_br_lithosphere_0p25deg", "fault_distance_km")


def groups(names: list[str]) -> dict[str, list[str]]:
    geo = [n for n in names if n in GEOPHYSICS]
    chem = [n for n in names if n.startswith("soilC_")]
    rock = [n for n in names if n.startswith("rock_type_")]
    slip = [n for n in names if n == "fault_slip_density"]
    return {"geophysics + fault distance (v0.4 set)": geo, "soil geochemistry (C horizon)": chem,
            "geophysics + geochemistry": geo + chem, "geophysics + rock type": geo + rock,
            "geophysics + slip-rate density": geo + slip, "all": list(names)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stack", type=Path, required=True, help="a stack made by discovery-stack")
    p.add_argument("--records", type=Path, default=defaults.RECORDS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stack = Stack.read(args.stack)
    records = read_records(args.records, catalog_for(stack.species))
    srcs = held_out_sources(stack, records, stack.info[INFO_KEY])
    windows = [s.window(stack.grid.shape) for s in srcs]
    result = {}
    for label, names in groups(stack.aux_names).items():
        if not names:
            continue
        maps = aux_only_maps(stack.select_aux(names), windows, args.seed)
        result[label] = {s.name: {k: v for k, v in score_map(m, s, w).items() if k != "curve"}
                         for s, m, w in zip(srcs, maps, windows)}
        print(f"{label:<40} " + "  ".join(f"{s.name[:12]} AUC10 {result[label][s.name]['auc_10cell']:.3f} "
                                          f"top10 {result[label][s.name]['top10']:.3f}" for s in srcs), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"stack": str(args.stack), "seed": args.seed, "groups": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
