"""One-panel PNG of a PU model's observation probability (``predict --observation``): where a survey
would have recorded a mineral that is there; low values mark where the surveys are thin.

The observation map is shared by the species, so the panel is the mean over the file's species
bands of each cell (each band holds the draws that hid that species). Records of any species in
the stack are drawn on top.

    .venv/bin/python docs/results/discovery/positive_unlabeled/observation_map.py --prediction out/pu/observation.tif --out obs.png
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root

from core.data.maps import block_mean, figure, save_figure  # noqa: E402
from core.data.prediction_io import read_band, read_prediction_info  # noqa: E402
from core.errors import InputError  # noqa: E402


def observation_map(prediction: Path, out: Path, stack: Path | None = None, max_pixels: int = 900) -> Path:
    grid, species, meta = read_prediction_info(prediction)
    if meta.get("output") != "observation":
        raise InputError(f"{prediction} is not an observation map; write one with predict --observation.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        obs = np.nanmean(np.stack([read_band(prediction, f"mean_{s}") for s in species]), axis=0)
    k = max(1, int(np.ceil(max(grid.shape) / max_pixels)))
    small = block_mean(obs, k)
    fig, axes = figure(1, 1, small.shape, panel_width=11.0)
    ax = axes[0, 0]
    im = ax.imshow(small, cmap="magma", vmin=0.0, vmax=float(np.nanquantile(small, 0.99)), interpolation="nearest")
    if stack is not None:
        from core.data.stack_sources import open_stack_source

        with open_stack_source(stack) as source:
            rows, cols = [], []
            for r in range(0, grid.height, 256):
                win = source.read_window(r, 0, min(256, grid.height - r), grid.width)
                rr, cc = np.nonzero(win.presence.any(0))
                rows.append(rr + r)
                cols.append(cc)
        rr, cc = np.concatenate(rows), np.concatenate(cols)
        ax.scatter((cc + 0.5) / k - 0.5, (rr + 0.5) / k - 0.5, s=0.04, c="#19c3ff", alpha=0.5, linewidths=0,
                   label=f"cells with a record of any species ({len(rr):,})")
        ax.legend(loc="lower left", fontsize=8, markerscale=25)
    fig.colorbar(im, ax=ax, fraction=0.025, label="observation probability (mean over draws)")
    models = ", ".join(meta.get("models", []))
    ax.set_title(f"Observation probability of the PU model {models} ({meta.get('evaluations', '?')} evaluations): "
                 "where a record would be made if a mineral were there", fontsize=10)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prediction", type=Path, required=True, help="GeoTIFF written by predict --observation")
    p.add_argument("--stack", type=Path, help="stack whose records are drawn on top (default: none)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    try:
        print(f"wrote {observation_map(args.prediction, args.out, args.stack)}")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
