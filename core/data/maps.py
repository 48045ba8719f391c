"""PNG quick-looks of grids (matplotlib, headless): stack overviews and probability maps."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..atomic import atomic_path
from ..data.stack import Stack

LAND = np.array([0.93, 0.93, 0.90])
SEA = np.array([1.0, 1.0, 1.0])


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(ncols: int, nrows: int, grid_shape: tuple[int, int], panel_width: float = 4.5):
    """A grid of axis-free panels sized to the map's aspect ratio."""
    h, w = grid_shape
    fig, axes = pyplot().subplots(nrows, ncols, squeeze=False,
                                  figsize=(panel_width * ncols, (panel_width * h / w + 0.5) * nrows))
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _blocks(arr: np.ndarray, k: int, fill: float) -> np.ndarray:
    """(H/k, k, W/k, k) view of ``arr`` padded with ``fill`` to whole k×k blocks."""
    h, w = arr.shape
    pad = np.full((-(-h // k) * k, -(-w // k) * k), fill, arr.dtype)
    pad[:h, :w] = arr
    return pad.reshape(pad.shape[0] // k, k, pad.shape[1] // k, k)


def block_max(arr: np.ndarray, k: int) -> np.ndarray:
    """Max over k×k blocks, so that single cells stay visible when a large grid is drawn small."""
    if k <= 1:
        return arr
    return _blocks(arr, k, 0).max(axis=(1, 3))


def block_mean(arr: np.ndarray, k: int) -> np.ndarray:
    """Mean over k×k blocks of a float map, ignoring NaN (a block with no value stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(_blocks(arr.astype(np.float32), k, np.nan), axis=(1, 3))


def presence_image(valid: np.ndarray, presence: np.ndarray, color=(0.80, 0.10, 0.10),
                   max_pixels: int = 900) -> np.ndarray:
    """RGB image: land grey, outside white, presence cells in ``color`` (block-max downsampled)."""
    k = max(1, int(np.ceil(max(valid.shape) / max_pixels)))
    v = block_max(valid.astype(np.uint8), k) > 0
    p = block_max(presence.astype(np.uint8), k) > 0
    img = np.where(v[..., None], LAND, SEA)
    img[p] = color
    return img


def save_figure(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return Path(path)


def stack_quicklook(stack: Stack, path: str | Path, species: Optional[Sequence[str]] = None) -> Path:
    """One panel per species (presence cells) and per aux band (normalised values)."""
    species = list(species or stack.species)
    panels = len(species) + len(stack.aux_bands)
    ncols = 4
    fig, axes = figure(ncols, -(-panels // ncols), stack.grid.shape)
    flat = list(axes.flat)
    for ax, sym in zip(flat, species):
        band = stack.presence[stack.species.index(sym)]
        ax.imshow(presence_image(stack.valid, band), interpolation="nearest")
        ax.set_title(f"{sym}: {int(band.sum())} presence cells", fontsize=9)
    for ax, band, arr in zip(flat[len(species):], stack.aux_bands, stack.aux):
        ax.imshow(np.where(stack.valid, arr, np.nan), cmap="viridis", vmin=-2.5, vmax=2.5,
                  interpolation="nearest")
        ax.set_title(f"{band.name} (z-score; raw in {band.units or '?'})", fontsize=8)
    g = stack.grid
    fig.suptitle(f"M3 stack: {g.width}×{g.height} cells of {g.resolution:g} m, {g.crs.to_string()}", fontsize=11)
    return save_figure(fig, path)
