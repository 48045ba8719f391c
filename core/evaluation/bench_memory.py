"""``bench memory``: the peak memory of ``predict`` against the number of models and mask draws.

The CONUS map's design keeps its memory flat: the stack is read one strip of windows at a time,
the accumulators hold one strip, finished rows are written as they are done, mask draws are made
``batch_size`` at a time and the aux terms are kept for one model and one strip. So its peak should
grow only by each added model's weights, never with the draws. This bench checks that the way a
user runs it: ``predict`` in a fresh process per configuration (peak memory is a high-water
mark), writing its GeoTIFF to a temporary folder, with every model's draws over one band of rows
across the grid's whole width (``--hide-bounds`` in the grid's CRS: the strips the CONUS map
holds are just as wide, so the per-strip peak is the CONUS map's). The same model file stands for
each model of an ensemble (each is loaded on its own, as distinct seeds would be).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..data.stack_sources import GeoTiffStackSource
from ..errors import InputError, M3Error

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ((1, 1), (1, 4), (3, 4))   # (models, draws)
BAND_ROWS = 64                       # rows of the band hidden across the grid
MARK = "M3_PEAK "

# the child: run the CLI, then print its own high-water marks
CHILD = f"""
import json, resource, sys, torch
from core.cli import main
code = main(sys.argv[1:])
gpu = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None
print({MARK!r} + json.dumps({{"rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                              "gpu_gib": gpu}}))
sys.exit(code)
"""


def parse_configs(text: str) -> list[tuple[int, int]]:
    """"1x1,1x4,3x4" → [(1, 1), (1, 4), (3, 4)] (models x draws)."""
    try:
        out = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",")]
    except ValueError:
        out = []
    if not out or any(len(c) != 2 or min(c) < 1 for c in out):
        raise InputError(f"Configurations must read like 1x1,1x4,3x4 (models x draws, each at least 1); got {text!r}.")
    return [(m, d) for m, d in out]


def band_bounds(stack_path: str | Path, rows: int = BAND_ROWS) -> tuple[float, float, float, float]:
    """A band of ``rows`` rows across the grid's middle, as bounds in the grid's CRS."""
    with GeoTiffStackSource(stack_path) as source:
        g = source.grid
    r0 = max(0, g.height // 2 - rows // 2)
    x0, y1 = g.transform * (0, r0)
    x1, y0 = g.transform * (g.width, min(g.height, r0 + rows))
    return (x0, y0, x1, y1)


def run_config(stack_path: str | Path, model_path: str | Path, models: int, draws: int, device: str,
               bounds: Sequence[float], folder: Path) -> dict[str, Any]:
    """One ``predict`` in a fresh process; its peak memory and seconds."""
    out = folder / f"m{models}_d{draws}.tif"
    argv = ["predict", "--stack", str(stack_path), "--models", *[str(model_path)] * models, "--draws", str(draws),
            "--hide-bounds", *[repr(float(b)) for b in bounds], "--bounds-crs", "grid", "--device", device,
            "--out", str(out), "--no-quicklook"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("WORLD_SIZE", None)
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    marks = [line[len(MARK):] for line in run.stdout.splitlines() if line.startswith(MARK)]
    if run.returncode != 0 or not marks:
        raise M3Error(f"predict with {models} model(s) x {draws} draw(s) failed:\n{run.stderr[-2000:]}")
    out.unlink(missing_ok=True)
    return {"models": models, "draws": draws, "seconds": seconds, **json.loads(marks[-1])}


def bench_memory(stack_path: str | Path, model_path: str | Path, device: str = "auto",
                 configs: Sequence[tuple[int, int]] = CONFIGS, log=print) -> dict[str, Any]:
    """Peak memory of ``predict`` per (models, draws) configuration (see the module docstring)."""
    bounds = band_bounds(stack_path)
    weights_gib = Path(model_path).stat().st_size / 2 ** 30
    log(f"predict over a band of {BAND_ROWS} rows across {Path(stack_path).name}, one fresh process per "
        f"configuration; model file {Path(model_path).name} ({weights_gib * 1024:.0f} MiB of weights)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="m3_bench_memory_") as tmp:
        for models, draws in configs:
            r = run_config(stack_path, model_path, models, draws, device, bounds, Path(tmp))
            rows.append(r)
            gpu = "" if r["gpu_gib"] is None else f", GPU peak {r['gpu_gib']:.2f} GiB"
            log(f"  {models} model(s) x {draws} draw(s): peak resident memory {r['rss_gib']:.2f} GiB{gpu} "
                f"({r['seconds']:.0f} s)")
    base = rows[0]
    for r in rows[1:]:
        r["growth_gib"] = r["rss_gib"] - base["rss_gib"]
    log("growth against the first: " + "; ".join(
        f"{r['models']}x{r['draws']}: {r['growth_gib']:+.2f} GiB" for r in rows[1:]))
    return {"stack": str(stack_path), "model": str(model_path), "band_rows": BAND_ROWS,
            "model_file_gib": weights_gib, "runs": rows}
