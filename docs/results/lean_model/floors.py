"""The arithmetic floor of each lean-input candidate and of the v0.4.1 model, with bench infer's
:func:`core.evaluation.bench_infer.arithmetic_floor` (multiply-adds per cell and evaluation, the
aux share paid once per 50 draws; the least time of the 150-evaluation CONUS map at the measured
rate of the reference 7 x 7 convolution). Run from the repository root:

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python docs/results/lean_model/floors.py STACK.tif \
        --threads 1 --json docs/results/lean_model/floors_1thread.json MODEL.safetensors ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402

from core.evaluation.bench_infer import floor_figures  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stack", type=Path)
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for m in args.models:
        f = floor_figures(args.stack, m, draws=args.draws)
        rows.append(f)
        print(f"{m}: {f['macs_per_cell'] / 1e3:.1f} k multiply-adds per cell and evaluation; reference conv "
              f"{f['stem_gmacs_per_s']:.1f} GMAC/s; CONUS 150 evaluations >= "
              f"{f['conus_150_evaluations_minutes']:.1f} min ({args.threads} thread(s), window {f['window']}, "
              f"{f['draws']} draws)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
