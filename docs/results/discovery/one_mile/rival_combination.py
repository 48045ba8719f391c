"""The two discovery rivals combined: blurred records (σ 8 cells) and the aux-only gradient
boosting (seed 0), their log-odds added (:func:`core.evaluation.discovery.combined`, no weight fitted),
scored like every map of the discovery test. Prints AUC over 10-mile blocks and top-10 % capture.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/discovery/one_mile/rival_combination.py --stack out/discovery_stack.tif
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root

from core.data import defaults  # noqa: E402
from core.evaluation.discovery import (INFO_KEY, aux_only_maps, blurred_records, combined, held_out_sources,  # noqa: E402
                            score_map)
from core.inference.layer_inputs import catalog_for  # noqa: E402
from core.data.records import read_records  # noqa: E402
from core.data.stack import Stack  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stack", type=Path, required=True, help="a stack made by discovery-stack")
    p.add_argument("--records", type=Path, default=defaults.RECORDS)
    args = p.parse_args()
    stack = Stack.read(args.stack)
    srcs = held_out_sources(stack, read_records(args.records, catalog_for(stack.species)), stack.info[INFO_KEY])
    windows = [s.window(stack.grid.shape) for s in srcs]
    blur = blurred_records(stack, 8.0)
    for s, (r0, c0, h, w), gbm in zip(srcs, windows, aux_only_maps(stack, windows, 0)):
        m = score_map(combined(blur[r0:r0 + h, c0:c0 + w], gbm), s, (r0, c0, h, w))
        print(f"{s.name}: AUC 10-cell {m['auc_10cell']:.3f}, top 10 % {m['top10']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
