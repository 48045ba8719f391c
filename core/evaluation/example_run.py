"""The main job on the embedded data: hide one species in a held-out western region, infill it with
the bundled model, and score the result against the hidden records and simple baselines."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from rasterio.warp import transform as transform_points

from ..atomic import atomic_path
from ..data.maps import figure, presence_image, save_figure
from ..data.stack import Stack
from ..errors import InputError
from ..inference.infer import infill
from ..masks.hiding import HideSpec, RasterRegion
from ..masks.tiles import TEST, TRAIN, HoldoutSplit
from ..model.metrics import best_dice_threshold, scores
from ..model.model_file import read_card
from ..progress import Progress
from .baselines import CoPresencePredictor, FrequencyPredictor, NeighbourDensityPredictor

WEST_OF_LON = -104.0   # the "western region": held-out blocks whose centre lies west of this meridian
CONTEXT = 32           # cells of visible context around the region given to the baselines


@dataclass
class ExampleResult:
    species: str
    block: tuple[int, int, int, int]          # row0, col0, height, width on the stack's grid
    centre_lonlat: tuple[float, float]
    hidden_cells: int
    hidden_records: int
    threshold: float
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)   # predictor → scores
    infill_note: str = ""

    def table(self) -> str:
        head = f"{'predictor':<36}{'Dice':>8}{'recall':>8}{'precision':>11}{'AUPRC':>8}"
        lines = [head, "-" * len(head)]
        for name, s in self.rows.items():
            lines.append(f"{name:<36}{s['dice']:>8.3f}{s['recall']:>8.3f}{s['precision']:>11.3f}{s['auprc']:>8.3f}")
        return "\n".join(lines)


def western_test_block(stack: Stack, split: HoldoutSplit, species: str) -> tuple[int, int, int, int]:
    """The held-out test block west of ``WEST_OF_LON`` with the most presence cells of ``species``."""
    labels = split.block_labels(stack.valid)
    b = split.block_size
    band = stack.presence[stack.species.index(species)]
    best, best_n = None, 0
    for bi, bj in np.argwhere(labels == TEST):
        r0, c0 = int(bi) * b, int(bj) * b
        h, w = min(b, stack.grid.height - r0), min(b, stack.grid.width - c0)
        x, y = stack.grid.cell_centres(np.array([r0 + h // 2]), np.array([c0 + w // 2]))
        lon, _ = transform_points(stack.grid.crs, "EPSG:4326", x, y)
        n = int(band[r0:r0 + h, c0:c0 + w].sum())
        if lon[0] < WEST_OF_LON and n > best_n:
            best, best_n = (r0, c0, h, w), n
    if best is None:
        raise InputError(f"No held-out test block west of {WEST_OF_LON}° holds a {species} record.")
    return best


def _window_tensors(stack: Stack, r0: int, c0: int, h: int, w: int):
    win = stack.window(r0, c0, h, w)
    return (torch.from_numpy(win.presence.astype(np.float32))[None], torch.from_numpy(win.aux)[None],
            torch.from_numpy(win.valid)[None])


def run_example(stack: Stack, model_path: Path, out_dir: Path, species: str = "Cu", draws: int = 8,
                device: Optional[str] = None, progress: Optional[Progress] = None) -> ExampleResult:
    """Hide every ``species`` record in a held-out western block, infill, score, map."""
    card = read_card(model_path)
    stack = card.fit_stack(stack)
    split = HoldoutSplit.from_dict(card.training["holdout"])
    r0, c0, h, w = western_test_block(stack, split, species)
    region = np.zeros(stack.grid.shape, bool)
    region[r0:r0 + h, c0:c0 + w] = True
    region &= stack.valid
    s = stack.species.index(species)
    x, y = stack.grid.cell_centres(np.array([r0 + h // 2]), np.array([c0 + w // 2]))
    lon, lat = transform_points(stack.grid.crs, "EPSG:4326", x, y)

    hide = HideSpec(species=[species], region=RasterRegion(region, stack.grid, "a held-out western block"))
    result = infill(stack, [model_path], hide, draws=draws, device=device, progress=progress,
                    out=out_dir / f"example_{species}_prediction.tif")
    mean, _ = result.read()
    truth = stack.presence[s][region] > 0
    ex = ExampleResult(species, (r0, c0, h, w), (float(lon[0]), float(lat[0])), int(region.sum()),
                       int(truth.sum()), card.threshold_for(hide.scenario(stack.species)),
                       infill_note=f"{result.evaluations} evaluations on {result.device}, {result.seconds:.0f} s")
    probs = mean[0][region]
    ex.rows["M3 U-Net (bundled)"] = scores(probs, truth, ex.threshold)
    ex.rows["M3 U-Net (best threshold)"] = scores(probs, truth, best_dice_threshold(probs, truth))

    # baselines on the same hidden cells, fitted on the training blocks only
    train_cells = (split.cell_labels(stack.valid) == TRAIN) & stack.valid
    frequency = FrequencyPredictor.fit(stack.presence, train_cells)
    baselines = [frequency, NeighbourDensityPredictor(frequency.frequency),
                 CoPresencePredictor.fit(stack.presence, train_cells)]
    wr0, wc0 = max(0, r0 - CONTEXT), max(0, c0 - CONTEXT)
    wr1, wc1 = min(stack.grid.height, r0 + h + CONTEXT), min(stack.grid.width, c0 + w + CONTEXT)
    presence, aux, valid = _window_tensors(stack, wr0, wc0, wr1 - wr0, wc1 - wc0)
    hidden = torch.zeros_like(presence, dtype=torch.bool)
    hidden[0, s] = torch.from_numpy(region[wr0:wr1, wc0:wc1])
    sel = region[wr0:wr1, wc0:wc1]
    baseline_maps = {}
    for p in baselines:
        prob = p.predict(presence, hidden, aux, valid)[0, s].numpy()
        baseline_maps[p.name] = prob
        # baselines have no validation-chosen threshold here: each is scored at its Dice-optimal
        # threshold on the region itself, an upper bound (the model is shown both ways)
        ex.rows[f"{p.name} (best threshold)"] = scores(prob[sel], truth, best_dice_threshold(prob[sel], truth))

    _write_json(ex, out_dir / f"example_{species}.json")
    _map(stack, ex, mean[0], baseline_maps["neighbour_density"], (wr0, wc0, wr1, wc1),
         out_dir / f"example_{species}.png")
    return ex


def _write_json(ex: ExampleResult, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(ex.__dict__, indent=2, default=float))


def _map(stack: Stack, ex: ExampleResult, mean: np.ndarray, density: np.ndarray,
         window: tuple[int, int, int, int], path: Path) -> None:
    wr0, wc0, wr1, wc1 = window
    r0, c0, h, w = ex.block
    s = stack.species.index(ex.species)
    sl = (slice(wr0, wr1), slice(wc0, wc1))
    valid = stack.valid[sl]
    box = np.zeros_like(valid)
    box[r0 - wr0:r0 - wr0 + h, c0 - wc0:c0 - wc0 + w] = True
    others = np.delete(stack.presence[:, sl[0], sl[1]], s, axis=0).any(axis=0)
    fig, axes = figure(4, 1, valid.shape, panel_width=4.0)
    panels = [("hidden truth: " + ex.species + " records", presence_image(valid, stack.presence[s][sl] * box, max_pixels=10_000)),
              ("visible: other species' records", presence_image(valid, others, (0.2, 0.2, 0.6), max_pixels=10_000))]
    for ax, (title, img) in zip(axes.flat[:2], panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax, (title, arr, cmap) in zip(axes.flat[2:], [("M3 mean probability", mean[sl], "magma"),
                                                     ("neighbour density baseline", np.where(box, density, np.nan), "magma")]):
        ax.imshow(np.where(valid, arr, np.nan), cmap=cmap, vmin=0, vmax=max(0.05, float(np.nanmax(arr)) if np.isfinite(arr).any() else 1),
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.contour(box.astype(np.uint8), levels=[0.5], colors="c", linewidths=0.8)
    m = ex.rows["M3 U-Net (bundled)"]
    fig.suptitle(f"{ex.species} hidden in a held-out block near {ex.centre_lonlat[0]:.1f}°, {ex.centre_lonlat[1]:.1f}° "
                 f"({ex.hidden_records} presence cells): Dice {m['dice']:.2f}, recall {m['recall']:.2f}, "
                 f"AUPRC {m['auprc']:.2f}", fontsize=10)
    save_figure(fig, path)
