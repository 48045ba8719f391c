"""What a map's spread band says, on the main job's question: every Cu record hidden in the
held-out western test block (`demo`), infilled by the bundled model with 4 and 16 mask draws, each
with two seeds of the draws. Prints, over the hidden cells: the spread (`std_Cu`) at its median and
95th percentile, at the hidden Cu record cells and elsewhere; the AUPRC of the mean against the
hidden records; how far the two seeds' means lie apart; and the share of record cells among the
10 % of cells with the largest spread against the share among all.

Run from the repository root:
    OMP_NUM_THREADS=2 .venv/bin/python docs/results/uncertainty/draw_spread.py [--out draw_spread.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))

from core.data import defaults  # noqa: E402
from core.data.build_stack import default_stack_path  # noqa: E402
from core.data.stack import Stack  # noqa: E402
from core.evaluation.example_run import western_test_block  # noqa: E402
from core.inference.infer import infill  # noqa: E402
from core.masks.hiding import HideSpec, RasterRegion  # noqa: E402
from core.masks.tiles import HoldoutSplit  # noqa: E402
from core.model.metrics import average_precision  # noqa: E402
from core.model.model_file import read_card  # noqa: E402

SPECIES = "Cu"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, nargs="+", default=[4, 16])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    model = defaults.BUNDLED_MODEL
    card = read_card(model)
    stack = card.fit_stack(Stack.read(default_stack_path()))
    split = HoldoutSplit.from_dict(card.training["holdout"])
    r0, c0, h, w = western_test_block(stack, split, SPECIES)
    region = np.zeros(stack.grid.shape, bool)
    region[r0:r0 + h, c0:c0 + w] = True
    region &= stack.valid
    s = stack.species.index(SPECIES)
    truth = stack.presence[s][region] > 0
    hide = HideSpec(species=[SPECIES], region=RasterRegion(region, stack.grid, "the held-out western block"))
    rows = {}
    for draws in args.draws:
        means = []
        for seed in args.seeds:
            res = infill(stack, [model], hide, draws=draws, device="cpu", seed=seed)
            mean, std = res.mean[0][region], res.std[0][region]
            top = std >= np.quantile(std, 0.9)
            row = {"std_median": float(np.median(std)), "std_p95": float(np.quantile(std, 0.95)),
                   "std_at_records": float(std[truth].mean()), "std_elsewhere": float(std[~truth].mean()),
                   "auprc": average_precision(mean, truth),
                   "record_share_in_top10pct_spread": float(truth[top].mean()),
                   "record_share_overall": float(truth.mean())}
            rows[f"draws {draws}, seed {seed}"] = row
            means.append(mean)
            print(f"draws {draws:>2} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
        if len(means) > 1:
            d = np.abs(means[0] - means[1])
            rows[f"draws {draws}, seeds apart"] = {"mean_abs": float(d.mean()), "max_abs": float(d.max())}
            print(f"draws {draws:>2}: the two seeds' means differ by {d.mean():.4f} on average, {d.max():.4f} at most",
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps({"model": model.name, "species": SPECIES, "block": [r0, c0, h, w],
                                        "hidden_cells": int(region.sum()), "record_cells": int(truth.sum()),
                                        "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
