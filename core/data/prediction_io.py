"""Probability maps on disk: mean and standard deviation per species in one GeoTIFF (tiled,
deflate-compressed, band descriptions ``mean_Au``/``std_Au``, NaN nodata outside the predicted
cells), written top to bottom by row blocks and atomically; and a PNG quick-look."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .grid import Grid
from .tagged_tiff import open_tagged

PREDICTION_TAG = "M3_PREDICTION"
NODATA = float("nan")
BLOCK = 256
DEFAULT_THRESHOLD = 0.5  # a prediction whose models recorded no threshold


def band_names(species: Sequence[str]) -> list[str]:
    """Means first, then standard deviations, in the species' order."""
    return [f"mean_{s}" for s in species] + [f"std_{s}" for s in species]


class PredictionWriter:
    """Receives rows top to bottom and writes them in whole blocks of rows (so that compressed
    tiles are written once); holds one block of rows."""

    def __init__(self, path: str | Path, grid: Grid, species: Sequence[str], tags: dict[str, Any]) -> None:
        import rasterio

        self.grid = grid
        self.species = list(species)
        names = band_names(self.species)
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=len(names),
                       dtype="float32", crs=grid.crs, transform=grid.transform, nodata=NODATA,
                       tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="deflate", predictor=3,
                       BIGTIFF="IF_SAFER")
        self._dst = rasterio.open(path, "w", **profile)
        for i, name in enumerate(names, start=1):
            self._dst.set_band_description(i, name)
        self._dst.update_tags(**{PREDICTION_TAG: json.dumps(tags)})
        self._block = np.empty((len(names), min(BLOCK, grid.height), grid.width), np.float32)
        self._written = 0   # rows in the file
        self._held = 0      # rows in the block buffer

    def write_rows(self, row0: int, mean: np.ndarray, std: np.ndarray) -> None:
        """Rows ``row0 ..`` of (S, n, W) mean and std; rows must arrive in order."""
        if row0 != self._written + self._held:
            raise ValueError("prediction rows must be written top to bottom without gaps")
        s, n = mean.shape[0], mean.shape[1]
        done = 0
        while done < n:
            take = min(n - done, self._block.shape[1] - self._held)
            self._block[:s, self._held:self._held + take] = mean[:, done:done + take]
            self._block[s:, self._held:self._held + take] = std[:, done:done + take]
            self._held += take
            done += take
            if self._held == self._block.shape[1]:
                self._flush()

    def _flush(self) -> None:
        from rasterio.windows import Window

        if self._held:
            self._dst.write(self._block[:, :self._held], window=Window(0, self._written, self.grid.width, self._held))
            self._written += self._held
            self._held = 0

    def close(self) -> None:
        self._flush()
        self._dst.close()
        if self._written != self.grid.height:
            raise ValueError(f"prediction has {self._written} of {self.grid.height} rows")

    def abort(self) -> None:
        self._dst.close()


@contextlib.contextmanager
def prediction_file(path: str | Path, grid: Grid, species: Sequence[str],
                    tags: dict[str, Any]) -> Iterator[PredictionWriter]:
    """A :class:`PredictionWriter` on a temporary file that replaces ``path`` only when every
    row was written; on error or cancel nothing is left behind."""
    with atomic_path(path) as tmp:
        writer = PredictionWriter(tmp, grid, species, tags)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()


def read_prediction_info(path: str | Path) -> tuple[Grid, list[str], dict[str, Any]]:
    """Grid, species and metadata of a prediction GeoTIFF."""
    src, meta, grid = open_tagged(path, PREDICTION_TAG, "prediction", "python train_cli.py predict")
    with src:
        descriptions = list(src.descriptions)
    species = [d[len("mean_"):] for d in descriptions if d and d.startswith("mean_")]
    return grid, species, meta


def prediction_threshold(meta: dict[str, Any], override: Optional[float] = None) -> float:
    """The threshold to use on a prediction: ``override`` when given, else the one its models chose
    (tag ``threshold``, written by :func:`core.inference.infer.infill`), else :data:`DEFAULT_THRESHOLD`."""
    if override is not None:
        return float(override)
    return float(meta.get("threshold", DEFAULT_THRESHOLD))


def read_band(path: str | Path, name: str) -> np.ndarray:
    """One band (e.g. ``mean_Au``) as float32, NaN where not predicted."""
    import rasterio

    with rasterio.open(path) as src:
        names = list(src.descriptions)
        if name not in names:
            raise InputError(f"{path} has no band {name}; it has {', '.join(n for n in names if n)}.")
        return src.read(names.index(name) + 1, out_dtype=np.float32)


def _presence_cells(source, view: tuple[int, int, int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(row, col) in the view of every species' presence cells, read strip by strip (all
    presence bands at once: the stack GeoTIFF interleaves bands by pixel)."""
    r0, c0, h, w = view
    found: dict[str, list] = {s: [[], []] for s in source.species}
    for r in range(r0, r0 + h, BLOCK):
        win = source.read_window(r, c0, min(BLOCK, r0 + h - r), w)
        for s, band in zip(source.species, win.presence):
            rr, cc = np.nonzero(band)
            found[s][0].append(rr + r - r0)
            found[s][1].append(cc)
    return {s: (np.concatenate(v[0]), np.concatenate(v[1])) for s, v in found.items()}


def _predicted_view(src, grid: Grid, max_pixels: int) -> tuple[int, int, int, int]:
    """(row, col, height, width) of the grid around the predicted cells, with a margin of a tenth
    of their extent: a region's map is drawn at the region's scale."""
    from rasterio.enums import Resampling

    k = max(1, int(np.ceil(max(grid.shape) / max_pixels)))
    shape = (max(1, grid.height // k), max(1, grid.width // k))
    band = src.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
    rows, cols = np.nonzero(~np.ma.getmaskarray(band) & np.isfinite(band.filled(np.nan)))
    if len(rows) == 0:
        return 0, 0, grid.height, grid.width
    fy, fx = grid.height / shape[0], grid.width / shape[1]
    r0, r1 = rows.min() * fy, (rows.max() + 1) * fy
    c0, c1 = cols.min() * fx, (cols.max() + 1) * fx
    mr, mc = 0.1 * (r1 - r0) + 2 * fy, 0.1 * (c1 - c0) + 2 * fx
    r0, r1 = int(max(0, r0 - mr)), int(min(grid.height, np.ceil(r1 + mr)))
    c0, c1 = int(max(0, c0 - mc)), int(min(grid.width, np.ceil(c1 + mc)))
    return r0, c0, r1 - r0, c1 - c0


QUICKLOOK_FLOOR = 1e-3  # the quick-look's lowest colour: this probability or less


def probability_colours(mean: np.ndarray):
    """``mean`` probabilities as the quick-look draws them, and their colour norm: a log scale
    from :data:`QUICKLOOK_FLOOR` (and anything below it) to 1, the same for every map, so that a
    calibrated map, most of whose cells lie near 0, shows where it rises (0.002 and 0.05 lie
    nearly half the scale apart, not 5 %) and a colour keeps its meaning from one map to the next."""
    from matplotlib.colors import LogNorm

    return np.clip(mean, QUICKLOOK_FLOOR, 1.0), LogNorm(vmin=QUICKLOOK_FLOOR, vmax=1.0)


def write_quicklook(prediction: str | Path, png: str | Path, stack=None, records=None,
                    max_pixels: int = 900) -> Path:
    """A PNG of every species' mean probability around the predicted cells, downsampled to at most
    ``max_pixels`` wide, with the valid-cell outline (from ``stack``) and the known records
    (``records``: a :class:`core.data.records.Records`, else the stack's presence cells) drawn on it."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from .maps import figure, save_figure
    from .stack_sources import open_stack_source

    grid, species, meta = read_prediction_info(prediction)
    source = open_stack_source(stack) if stack is not None else None
    try:
        with rasterio.open(prediction) as src:
            view = _predicted_view(src, grid, max_pixels)
            r0, c0, h, w = view
            k = max(1, int(np.ceil(max(h, w) / max_pixels)))
            shape = (max(1, h // k), max(1, w // k))
            names = list(src.descriptions)
            means = [src.read(names.index(f"mean_{s}") + 1, window=Window(c0, r0, w, h), out_shape=shape,
                              resampling=Resampling.average, masked=True).filled(np.nan) for s in species]
        outline = None
        if source is not None:
            outline = np.zeros(shape, bool)
            step = k * max(1, BLOCK // k)
            for r in range(0, h, step):
                v = source.read_valid(r0 + r, c0, min(step, h - r), w)[::k, ::k]
                n, m = min(v.shape[0], shape[0] - r // k), min(v.shape[1], shape[1])
                if n > 0:
                    outline[r // k:r // k + n, :m] = v[:n, :m]
        ncols = min(4, len(species))
        fig, axes = figure(ncols, -(-len(species) // ncols), shape, panel_width=6.0 if ncols < 3 else 4.5)
        sx, sy = shape[1] / w, shape[0] / h
        rec_rc = None
        presence = _presence_cells(source, view) if source is not None and records is None else {}
        if records is not None:
            from .rasterize import record_cells

            rr, cc, inside = record_cells(records, grid)
            inside &= (rr >= r0) & (rr < r0 + h) & (cc >= c0) & (cc < c0 + w)
            rec_rc = (rr - r0, cc - c0, inside)
        for ax, sym, m in zip(axes.flat, species, means):
            shown, norm = probability_colours(m)
            im = ax.imshow(shown, cmap="magma", norm=norm, interpolation="nearest")
            if outline is not None and outline.any() and not outline.all():
                ax.contour(outline.astype(float), levels=[0.5], colors="0.3", linewidths=0.6)
            if rec_rc is not None and sym in records.symbols:
                rr, cc, inside = rec_rc
                sel = inside & records.species[:, records.symbols.index(sym)]
                pr, pc = rr[sel], cc[sel]
            elif sym in presence:
                pr, pc = presence[sym]
            else:
                pr = pc = np.zeros(0)
            ax.scatter((pc + 0.5) * sx - 0.5, (pr + 0.5) * sy - 0.5, s=0.6 if len(pr) > 2000 else 1.5,
                       c="#19c3ff", alpha=0.8, linewidths=0, label="records")
            ax.set_xlim(-0.5, shape[1] - 0.5)
            ax.set_ylim(shape[0] - 0.5, -0.5)
            finite = m[np.isfinite(m)]
            peak = f"{finite.max():.2f}" if finite.size else "—"
            ax.set_title(f"{sym}: max {peak}, {len(pr)} records", fontsize=9)
        bar = fig.colorbar(im, ax=list(axes.flat), shrink=0.6, label="mean probability (log scale); dots: records")
        bar.set_ticks([QUICKLOOK_FLOOR, 0.01, 0.1, 1.0], labels=[f"≤ {QUICKLOOK_FLOOR:g}", "0.01", "0.1", "1"])
        fig.suptitle(f"M3 infill: {meta.get('hide', '')}; {meta.get('evaluations', '?')} evaluations", fontsize=10)
        return save_figure(fig, png)
    finally:
        if source is not None and source is not stack:
            source.close()
