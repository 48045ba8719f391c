"""float32 against bf16 (``predict --bf16``) on a targeted hiding: Au and Cu hidden over three
all-land 512 x 512 parts of the CONUS stack, 1 and 8 mask draws, the bundled model.

Prints per part and draw count how far the bf16 map is from float32's (mean and largest change of
probability, share of cells changed by more than 0.01) and the ROC AUC of the part's Au and Cu
records under each. Run from the repository root:

    .venv/bin/python docs/results/speed/bf16_region.py [stack.tif]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root
from core.data.build_stack import default_stack_path
from core.data.defaults import BUNDLED_MODEL
from core.data.stack_sources import GeoTiffStackSource
from core.device import bf16_native
from core.evaluation.discovery import roc_auc
from core.inference.infer import infill, load_members
from core.masks.hiding import HideSpec

PARTS = [(500, 400), (300, 1200), (900, 2000)]  # row, col of 512 x 512 parts (all land)
HIDDEN = ("Au", "Cu")


def main(stack_path: str) -> None:
    cpu = torch.device("cpu")
    if not bf16_native(cpu):
        sys.exit("this CPU has no native bf16 (AVX512-BF16/AMX)")
    members = {p: load_members([BUNDLED_MODEL], cpu, precision=p) for p in ("fp32", "bf16")}
    with GeoTiffStackSource(stack_path) as source:
        for r, c in PARTS:
            part = source.read_window(r, c, 512, 512)
            for draws in (1, 8):
                mean = {p: infill(part, m, HideSpec(HIDDEN), draws=draws, device=cpu, precision=p).mean
                        for p, m in members.items()}
                d = np.abs(mean["bf16"] - mean["fp32"])
                line = [f"part {r},{c} draws {draws}: |change| mean {np.nanmean(d):.2e} max {np.nanmax(d):.3f}, "
                        f"over 0.01 at {100 * np.nanmean(d > 0.01):.3f} % of the cells"]
                for k, s in enumerate(HIDDEN):
                    cells = np.isfinite(mean["fp32"][k])
                    truth = part.presence[part.species.index(s)][cells]
                    line.append(f"{s} AUC {roc_auc(mean['fp32'][k][cells], truth):.4f} (float32) / "
                                f"{roc_auc(mean['bf16'][k][cells], truth):.4f} (bf16)")
                print("; ".join(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(default_stack_path()))
