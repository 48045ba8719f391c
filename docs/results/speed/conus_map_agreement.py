"""How far the 150-evaluation CONUS map in bf16 is from the float32 one.

Reads two `predict` outputs made with the same models, draws and seed (nothing hidden, 3 × 50),
and for each species prints the mean and largest change of the mean probability over the valid
cells, the share of cells changed by more than 0.01, and the ROC AUC of the stack's record cells
under each map (the records the map was made from, each scored over the draws that hid it: a
measure of agreement between the two maps, not of skill).

    .venv/bin/python docs/results/speed/conus_map_agreement.py out/conus_stack.tif fp32.tif bf16.tif
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root
from core.data.prediction_io import read_band
from core.data.stack_sources import GeoTiffStackSource
from core.evaluation.discovery import roc_auc

stack_path, fp32_path, bf16_path = sys.argv[1:4]
source = GeoTiffStackSource(stack_path)
g = source.grid
for k, s in enumerate(source.species):
    a, b = read_band(fp32_path, f"mean_{s}"), read_band(bf16_path, f"mean_{s}")
    cells = np.isfinite(a)
    d = np.abs(a[cells] - b[cells])
    records = source.read_presence(k, 0, 0, g.height, g.width)[cells].astype(bool)
    print(f"{s}: |change| mean {d.mean():.2e} largest {d.max():.4f}, over 0.01 at {100 * (d > 0.01).mean():.4f} % "
          f"of {cells.sum()} cells; ROC AUC of the {records.sum()} record cells {roc_auc(a[cells], records):.4f} "
          f"(float32) / {roc_auc(b[cells], records):.4f} (bf16)")
