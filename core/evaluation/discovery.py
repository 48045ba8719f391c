"""The discovery test: does a map find the records of a survey it never saw?

Hold out every record of one or more source data sets (the records' ``dataset`` column, e.g.
a state survey) from the stack a model trains on and sees; make each predictor's map; score
how it ranks the held-out records' cells inside that survey's area. This is the test the
product's promise rests on: records are survey-biased, so reconstructing hidden records near
visible ones (the masked scenarios) says little about finding what no survey recorded.

Definitions (one implementation, used by the ``discover`` command and the README's table):

- **area** of a held-out source: the valid cells inside the bounding box (on the grid) of its
  records' cells, less the cells that hold a visible record of any species (those are known
  already; the question is where the unknown ones are).
- **positives**: area cells holding a held-out record naming any of the stack's species.
- **score of a map** for "any species": ``1 - prod_s(1 - p_s)`` over the species' maps.
- **capture** at share q: the share of positives among the top q of the area's cells, ranked
  by score (the success-rate curve of prospectivity mapping; 1 %, 5 %, 10 % reported).
- **AUC**: ROC AUC (Mann-Whitney, ties counted half) over area cells; and over 10 × 10-cell
  blocks (10 miles at 1 mile), a block scoring its highest cell and being positive when it
  holds a positive.

Maps (every predictor sees the same visible records: all records but the held-out sources'):

- a model's map is the product's "where might minerals be" map: nothing hidden by the user,
  ``draws`` random mask draws of the model's own masking (:func:`core.inference.infer.infill`);
- blurred records: the Gaussian-weighted share of cells with a visible record of any species
  among valid cells, at several widths (the best width on the test itself is reported: an
  upper bound for that rival);
- neighbour density: the masked-scenario baseline (:class:`core.evaluation.baselines.NeighbourDensityPredictor`);
- aux-only gradient boosting: a classifier that sees no record, only the aux bands and their
  Gaussian local mean and spread, fitted to where the visible records are (any species),
  on valid cells sampled over the whole grid;
- for a model with an aux prior (:mod:`core.model.aux_prior`): the prior alone, and the infill map
  and the prior combined (:func:`combined`: log-odds added).
- any prediction GeoTIFF (``discover --maps``), e.g. a model run on a coarser discovery stack,
  taken onto the stack's grid by nearest cell (:func:`map_on_grid`); several joined by ``+``
  are combined the same way.

The co-presence baseline is left out by construction: on area cells no species is visible,
so its score is the same for every cell (AUC 0.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

from ..data.rasterize import presence_bands, record_cells
from ..data.records import Records
from ..data.stack import Stack
from ..errors import InputError
from ..model.aux_prior import has_aux_prior
from ..model.model_file import read_card
from ..inference.aux_boosting import AuxBoosting, window_map

DEFAULT_SOURCES = ("utah_mineral_occurrence_system", "nc_geological_survey",
                   "geological_survey_of_alabama", "idaho_geology_survey")
TOP_SHARES = (0.01, 0.05, 0.10)
BLOCK = 10                      # cells per side of the aggregated AUC's blocks
BLUR_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
MARGIN = 64                     # cells of context around an area for the maps
INFO_KEY = "discovery_holdout"
# What the discovery test says of every M3 map so far (README, Results), for the CLI's predict
# with nothing hidden and the dock alike.
DISCOVERY_CAVEAT = ("On the discovery test (README, Results) no M3 map yet ranks a held-out survey's records "
                    "better than its rivals on every survey: a map of the aux layers alone ranks Alabama's "
                    "better, a blur of the visible records Utah's and Idaho's.")
RIVALS_NOTE = ("note: " + DISCOVERY_CAVEAT + " Make the aux-only map with train_cli.py aux-map, or combine it "
               "with this one (train_cli.py combine-maps), and look at them beside this map.")


@dataclass
class HeldOutSource:
    """One held-out source on the grid: its scored area and positive cells (full-grid masks)."""

    name: str
    records: int
    box: tuple[int, int, int, int]          # row0, row1, col0, col1 (exclusive ends)
    area: np.ndarray
    positives: np.ndarray
    known_cells: int = 0                   # held-out record cells already holding a visible record

    def window(self, shape: tuple[int, int], margin: int = MARGIN) -> tuple[int, int, int, int]:
        """(row0, col0, height, width) of the box grown by ``margin`` cells, clipped to the grid."""
        r0, r1, c0, c1 = self.box
        r0, c0 = max(0, r0 - margin), max(0, c0 - margin)
        r1, c1 = min(shape[0], r1 + margin), min(shape[1], c1 + margin)
        return r0, c0, r1 - r0, c1 - c0

    def summary(self) -> dict[str, Any]:
        return {"records": self.records, "area_cells": int(self.area.sum()),
                "positive_cells": int(self.positives.sum()), "known_cells_left_out": self.known_cells,
                "box_rows_cols": list(self.box)}


def check_sources(records: Records, sources: Sequence[str]) -> None:
    """Every named source must have records (with a ``dataset`` column)."""
    if not records.datasets or not any(records.datasets):
        raise InputError(f"The records file {records.source} has no 'dataset' column; the discovery test holds "
                         "out whole source data sets and needs it (the embedded MinMod records have one).")
    have = set(records.datasets)
    missing = [s for s in sources if s not in have]
    if missing:
        common = sorted(have, key=lambda d: -records.datasets.count(d))[:12]
        raise InputError(f"No record of the source data set(s) {', '.join(missing)}. Sources with the most "
                         f"records: {', '.join(common)}.")


def discovery_stack(stack: Stack, records: Records, sources: Sequence[str]) -> Stack:
    """The stack with every record of ``sources`` removed from its presence bands (rebuilt from
    ``records``, which must be the records the stack was built from)."""
    check_sources(records, sources)
    if list(records.symbols) != list(stack.species):
        raise InputError(f"The records were read for species {records.symbols}, the stack has {stack.species}.")
    kept = records.subset(~records.from_datasets(sources))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a species may lose every record in a small test grid
        presence = presence_bands(kept, stack.grid, stack.valid)
    info = dict(stack.info)
    info[INFO_KEY] = list(sources)
    info["presence_counts"] = {s: int(presence[i].sum()) for i, s in enumerate(stack.species)}
    return replace(stack, presence=presence, info=info)


def held_out_sources(stack: Stack, records: Records, sources: Sequence[str]) -> list[HeldOutSource]:
    """Each held-out source's area and positives on the discovery stack's grid."""
    check_sources(records, sources)
    visible_any = stack.presence.any(axis=0)
    out = []
    for name in sources:
        recs = records.subset(records.from_datasets([name]))
        rows, cols, inside = record_cells(recs, stack.grid)
        inside[inside] = stack.valid[rows[inside], cols[inside]]
        rows, cols = rows[inside], cols[inside]
        if len(rows) == 0:
            raise InputError(f"No record of {name} falls on a valid cell of the stack's grid.")
        box = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        in_box = np.zeros(stack.grid.shape, bool)
        in_box[box[0]:box[1], box[2]:box[3]] = True
        cells = np.zeros(stack.grid.shape, bool)
        cells[rows, cols] = True
        area = in_box & stack.valid & ~visible_any
        out.append(HeldOutSource(name, int(len(recs)), box, area, cells & area,
                                 int((cells & visible_any).sum())))
    return out


# --- scores ------------------------------------------------------------------------------------

def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count half); NaN without both classes."""
    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _captured(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of positives among the first k cells ranked by score (highest first), k = 0 … N;
    ties broken against the positives (no credit for a flat map)."""
    labels = labels.astype(bool)
    order = np.lexsort((labels, -scores))  # among equal scores, negatives first
    return np.concatenate([[0], np.cumsum(labels[order])]) / max(1, int(labels.sum()))


def success_curve(scores: np.ndarray, labels: np.ndarray, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """(share of area, share of positives captured): the success-rate curve."""
    share = np.linspace(0.0, 1.0, points)
    return share, _captured(scores, labels)[np.round(share * len(scores)).astype(int)]


def capture(scores: np.ndarray, labels: np.ndarray, shares: Sequence[float] = TOP_SHARES) -> dict[str, float]:
    """Share of positives among the top ``q`` of the cells, for each q."""
    captured = _captured(scores, labels)
    return {f"top{round(q * 100)}": float(captured[int(round(q * len(scores)))]) for q in shares}


def block_max(score: np.ndarray, area: np.ndarray, positives: np.ndarray,
              block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of ``block`` × ``block`` cell blocks holding area cells: the block's
    highest area score, positive when it holds a positive."""
    h, w = score.shape
    hp, wp = math.ceil(h / block) * block, math.ceil(w / block) * block

    def blocks(a: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((hp, wp), fill, np.float64)
        out[:h, :w] = a
        return out.reshape(hp // block, block, wp // block, block).transpose(0, 2, 1, 3).reshape(
            hp // block, wp // block, -1)

    s = blocks(np.where(area, score, -np.inf), -np.inf).max(axis=2)
    has = blocks(area, 0).max(axis=2) > 0
    pos = blocks(positives, 0).max(axis=2) > 0
    return s[has], pos[has]


def score_map(score: np.ndarray, source: HeldOutSource, window: tuple[int, int, int, int]) -> dict[str, Any]:
    """Capture and AUC of an any-species score map on the window of ``source``."""
    r0, c0, h, w = window
    area = source.area[r0:r0 + h, c0:c0 + w]
    pos = source.positives[r0:r0 + h, c0:c0 + w]
    score = np.nan_to_num(score.astype(np.float64), nan=-1.0)
    s, y = score[area], pos[area]
    bs, by = block_max(score, area, pos)
    share, curve = success_curve(s, y)
    return {"auc_cell": roc_auc(s, y), f"auc_{BLOCK}cell": roc_auc(bs, by), **capture(s, y),
            "curve": curve.round(4).tolist()}


def any_species(prob: np.ndarray) -> np.ndarray:
    """(H, W) probability of at least one species from (S, H, W) maps (NaN counts as 0)."""
    p = np.clip(np.nan_to_num(prob.astype(np.float64), nan=0.0), 0.0, 1.0)
    return 1.0 - np.prod(1.0 - p, axis=0)


# --- rivals ------------------------------------------------------------------------------------

def blurred_records(stack: Stack, sigma: float) -> np.ndarray:
    """Gaussian-weighted share of valid cells holding a visible record of any species."""
    from .baselines import gaussian_smoother, visible_share

    present = stack.presence.any(axis=0).astype(np.float64)
    share, _ = visible_share(present, stack.valid, gaussian_smoother(sigma))
    return share


def neighbour_density_map(stack: Stack) -> np.ndarray:
    """The neighbour-density baseline's per-species maps with nothing hidden, as any-species."""
    import torch

    from .baselines import NeighbourDensityPredictor, species_frequency

    freq = species_frequency(stack.presence, stack.valid)
    pred = NeighbourDensityPredictor(freq)
    presence = torch.from_numpy(stack.presence.astype(np.float32))[None]
    hidden = torch.zeros(presence.shape, dtype=torch.bool)
    valid = torch.from_numpy(stack.valid)[None]
    prob = pred.predict(presence, hidden, torch.from_numpy(stack.aux)[None], valid)[0].numpy()
    return any_species(prob)


def aux_only_maps(stack: Stack, windows: Sequence[tuple[int, int, int, int]], seed: int) -> list[np.ndarray]:
    """The aux-only rival (:mod:`core.inference.aux_boosting`), fitted to any-species presence of the
    visible records over the whole grid: its probability on each window (NaN outside valid cells)."""
    model = AuxBoosting.fit(stack, stack.presence.any(axis=0), seed)
    return [window_map(model, stack, window) for window in windows]


def model_map(stack: Stack, model: str | Path, window: tuple[int, int, int, int], draws: int,
              seed: int = 0, device: Optional[str] = None) -> np.ndarray:
    """A model's any-species map on a window: nothing hidden by the user, ``draws`` mask draws."""
    from ..inference.infer import infill

    r0, c0, h, w = window
    res = infill(stack.window(r0, c0, h, w), [model], draws=draws, seed=seed, device=device)
    return any_species(res.mean)


def prior_map(stack: Stack, model: str | Path, window: tuple[int, int, int, int]) -> np.ndarray:
    """A model's aux prior alone (:mod:`core.model.aux_prior`: what it says from the aux bands, no
    record) on a window, as any-species probability."""
    from ..model.aux_prior import aux_prior_map

    r0, c0, h, w = window
    mean, _, _ = aux_prior_map(stack.window(r0, c0, h, w), [model])
    return any_species(mean)


def map_on_grid(path: str | Path, stack: Stack) -> np.ndarray:
    """A prediction GeoTIFF's any-species map (its ``mean_<species>`` bands; any grid, any CRS,
    e.g. a model run on a coarser stack) on the stack's grid: each cell takes the value of the
    map's cell holding its centre (nearest), NaN where the map has none."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    from ..data.prediction_io import read_prediction_info

    grid, species, _ = read_prediction_info(path)
    if not species:
        raise InputError(f"{path} has no mean_<species> bands: give a map written by `train_cli.py predict`.")
    with rasterio.open(path) as src:
        names = list(src.descriptions)
        prob = np.stack([src.read(names.index(f"mean_{s}") + 1, out_dtype=np.float32) for s in species])
    seen = np.isfinite(prob).any(axis=0)
    source = np.where(seen, any_species(prob), np.nan).astype(np.float32)
    out = np.full(stack.grid.shape, np.nan, np.float32)
    reproject(source, out, src_transform=grid.transform, src_crs=grid.crs, src_nodata=np.nan,
              dst_transform=stack.grid.transform, dst_crs=stack.grid.crs, dst_nodata=np.nan,
              resampling=Resampling.nearest)
    if not np.isfinite(out[stack.valid]).any():
        raise InputError(f"{path} does not cover the stack's valid cells: make it on the same region.")
    return out.astype(np.float64)


def combined(model: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """Maps as one ranking (e.g. the infill map and the aux prior): the sum of their log-odds
    (each map's odds multiplied, as independent pieces of evidence; no weight fitted; a cell a map
    lacks counts as probability 0 there). The same rule as ``combine-maps``
    (:mod:`core.inference.combine`), here on any-species maps."""
    from ..inference.combine import EPS, logit

    return sum(logit(np.nan_to_num(m, nan=EPS)) for m in (model, *others))


# --- the test ----------------------------------------------------------------------------------

@dataclass
class DiscoveryResult:
    sources: dict[str, dict[str, Any]]
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # predictor → source → metrics

    def to_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "predictors": self.rows}


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.array(values, float)
    return {"mean": float(np.nanmean(a)), "std": float(np.nanstd(a)) if len(a) > 1 else 0.0, "n": len(a)}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of each scalar metric, and the mean success-rate curve."""
    out: dict[str, Any] = {}
    for key in per_seed[0]:
        if key == "curve":
            out["curve"] = np.mean([m["curve"] for m in per_seed], axis=0).round(4).tolist()
        else:
            out[key] = _mean_std([m[key] for m in per_seed])
    return out


def run_discovery(stack: Stack, records: Records, sources: Sequence[str],
                  models: dict[str, Sequence[str | Path]], draws: int = 10, rival_seeds: int = 3,
                  device: Optional[str] = None, log: Callable[[str], None] = print,
                  maps: Optional[dict[str, Sequence[Sequence[str | Path]]]] = None) -> DiscoveryResult:
    """Score every model group (label → model files, one per seed), every map group (label →
    per seed, prediction GeoTIFFs whose log-odds are summed: :func:`map_on_grid`, :func:`combined`)
    and the rivals on every held-out source of a discovery stack. Maps must come from models
    that neither trained on nor saw the held-out sources (e.g. trained on a coarser
    ``discovery-stack``): the files cannot prove it."""
    held = stack.info.get(INFO_KEY)
    if held is None or not set(sources) <= set(held):
        raise InputError(f"This stack does not hold out {', '.join(sources)} (it holds out {held or 'nothing'}): "
                         "make one with `train_cli.py discovery-stack` and train the models on it, so that "
                         "neither their training nor their input holds those records.")
    srcs = held_out_sources(stack, records, sources)
    windows = [s.window(stack.grid.shape) for s in srcs]
    result = DiscoveryResult({s.name: s.summary() for s in srcs})
    for s in srcs:
        log(f"{s.name}: {s.records} records, {int(s.positives.sum())} positive cells among "
            f"{int(s.area.sum())} area cells ({s.known_cells} record cells already known left out)")

    def add(label: str, per_source: list[list[dict[str, Any]]]) -> None:
        result.rows[label] = {s.name: summarise(m) for s, m in zip(srcs, per_source)}

    blur_rows: dict[float, list[dict[str, Any]]] = {}
    for sigma in BLUR_SIGMAS:
        b = blurred_records(stack, sigma)
        blur_rows[sigma] = [score_map(b[r0:r0 + h, c0:c0 + w], s, (r0, c0, h, w))
                            for s, (r0, c0, h, w) in zip(srcs, windows)]
        add(f"blurred records σ={sigma:g}", [[m] for m in blur_rows[sigma]])
    best = [max((blur_rows[sg][i] for sg in BLUR_SIGMAS), key=lambda m: m[f"auc_{BLOCK}cell"])
            for i in range(len(srcs))]
    add("blurred records (best σ per source)", [[m] for m in best])
    nd = neighbour_density_map(stack)
    add("neighbour density", [[score_map(nd[r0:r0 + h, c0:c0 + w], s, (r0, c0, h, w))]
                              for s, (r0, c0, h, w) in zip(srcs, windows)])
    if stack.aux_bands and rival_seeds > 0:
        per = [[] for _ in srcs]
        for seed in range(rival_seeds):
            log(f"aux-only gradient boosting, seed {seed} ...")
            for i, (m, s, win) in enumerate(zip(aux_only_maps(stack, windows, seed), srcs, windows)):
                per[i].append(score_map(m, s, win))
        add("aux-only gradient boosting", per)
    for label, paths in models.items():
        with_prior = all(has_aux_prior(read_card(p)) for p in paths)
        per, alone, both = ([[] for _ in srcs] for _ in range(3))
        for k, path in enumerate(paths):
            log(f"{label}: {Path(path).name} ({draws} draws) ...")
            for i, (s, win) in enumerate(zip(srcs, windows)):
                infilled = model_map(stack, path, win, draws, seed=k, device=device)
                per[i].append(score_map(infilled, s, win))
                if with_prior:
                    prior = prior_map(stack, path, win)
                    alone[i].append(score_map(prior, s, win))
                    both[i].append(score_map(combined(infilled, prior), s, win))
        add(label, per)
        if with_prior:
            add(f"{label}: its aux prior alone", alone)
            add(f"{label}: infill × aux prior", both)
    for label, seeds in (maps or {}).items():
        per = [[] for _ in srcs]
        for parts in seeds:
            log(f"{label}: {' + '.join(Path(p).name for p in parts)} ...")
            score = combined(*[map_on_grid(p, stack) for p in parts]) if len(parts) > 1 \
                else map_on_grid(parts[0], stack)
            for i, (s, (r0, c0, h, w)) in enumerate(zip(srcs, windows)):
                per[i].append(score_map(score[r0:r0 + h, c0:c0 + w], s, (r0, c0, h, w)))
        add(label, per)
    return result


def format_table(result: DiscoveryResult) -> str:
    """A markdown table: one row per predictor, per source AUC (10-cell blocks) and top-10 % capture."""
    names = list(result.sources)
    head = "| predictor | " + " | ".join(f"{n}: AUC {BLOCK}-cell / AUC cell / top 10 %" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]

    def cell(d: dict[str, Any]) -> str:
        return f"{d['mean']:.3f} ± {d['std']:.3f}" if d["n"] > 1 else f"{d['mean']:.3f}"

    for label, per in result.rows.items():
        parts = [f"{cell(per[n][f'auc_{BLOCK}cell'])} / {cell(per[n]['auc_cell'])} / {cell(per[n]['top10'])}"
                 for n in names]
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def success_figure(path: str | Path, result: DiscoveryResult) -> Path:
    """Success-rate curves (share of held-out record cells against share of area), one panel per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    names = list(result.sources)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, n in zip(axes[0], names):
        for label, per in result.rows.items():
            if label.startswith("blurred records σ"):
                continue
            curve = per[n]["curve"]
            ax.plot(np.linspace(0, 1, len(curve)), curve, lw=1.2, label=label)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlim(0, 0.3)
        ax.set_ylim(0, 1)
        ax.set_title(n.replace("_", " "), fontsize=9)
        ax.set_xlabel("share of area (ranked by score)")
    axes[0][0].set_ylabel("share of held-out record cells captured")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
