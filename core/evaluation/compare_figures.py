"""Figures of the model comparison: precision-recall curves, a map panel of one held-out tile,
the species-interdependence heat map and metric-against-lever plots of a sweep (PNG, headless)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..data.maps import pyplot, save_figure

SCENARIO_TITLES = {"region": "region hidden (all species)", "species": "species hidden (whole tile)",
                   "both": "species hidden in a region"}


def pr_curves_figure(curves: dict[str, dict[str, dict[str, Any]]], path: str | Path, note: str = "") -> Path:
    """One panel per scenario; one precision-recall curve per predictor (``curves[scenario][name]``
    = {"recall": [...], "precision": [...], "auprc": float})."""
    plt = pyplot()
    scs = list(curves)
    fig, axes = plt.subplots(1, len(scs), figsize=(5.2 * len(scs), 4.6), squeeze=False)
    for ax, sc in zip(axes[0], scs):
        for k, (name, c) in enumerate(curves[sc].items()):
            style = "-" if k < 10 else "--"
            ax.plot(c["recall"], c["precision"], style, lw=1.3, color=f"C{k % 10}",
                    label=f"{name} (AUPRC {c['auprc']:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(SCENARIO_TITLES.get(sc, sc), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def map_panel_figure(panel: dict[str, Any], path: str | Path) -> Path:
    """Rows: scenarios; columns: truth, visible input with the hidden cells, then each predictor's
    probability on the hidden cells (``panel`` as built by ``core.evaluation.compare.map_panel``)."""
    plt = pyplot()
    rows = panel["rows"]
    names = list(rows[0]["probs"])
    ncols = 2 + len(names)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.3 * ncols, 2.5 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        valid = np.asarray(row["valid"], bool)
        truth = np.asarray(row["truth"], float)
        hidden = np.asarray(row["hidden"], bool)
        ax = axes[r, 0]
        ax.imshow(np.where(valid, truth, np.nan), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"truth: {panel['species']}", fontsize=8)
        ax.set_ylabel(SCENARIO_TITLES.get(row["scenario"], row["scenario"]), fontsize=8)
        ax = axes[r, 1]
        visible = np.where(valid & ~hidden, truth, np.nan)
        ax.imshow(visible, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(np.where(hidden & valid, 1.0, np.nan), cmap="Reds", vmin=0, vmax=2, alpha=0.5,
                  interpolation="nearest")
        ax.set_title("visible; hidden in red", fontsize=8)
        for c, name in enumerate(names):
            prob = np.asarray(row["probs"][name], float)
            ax = axes[r, 2 + c]
            shown = np.where(hidden & valid, prob, np.nan)
            vmax = max(0.05, float(np.nanmax(shown)) if np.isfinite(shown).any() else 0.05)
            ax.imshow(shown, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            ax.contour(np.where(hidden & valid, truth, 0), levels=[0.5], colors="cyan", linewidths=0.5)
            ax.set_title(f"{name} (max {vmax:.2f})", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"held-out test tile at row {panel['origin'][0]}, col {panel['origin'][1]}: "
                 f"{panel['species']} hidden; predicted probability on hidden cells (cyan: hidden records)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def interdependence_figure(result: dict[str, Any], path: str | Path, metric: str = "auprc",
                           title: str = "") -> Path:
    """Heat map of ``drop[metric]``: row i, column j = how much species i's score falls when
    species j is hidden as well."""
    plt = pyplot()
    sp = result["species"]
    drop = np.array(result["drop"][metric], float)
    off = drop[~np.eye(len(sp), dtype=bool)]
    lim = max(1e-3, float(np.nanmax(np.abs(off))) if np.isfinite(off).any() else 1e-3)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(sp), 0.6 + 0.5 * len(sp)))
    im = ax.imshow(drop, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(sp)), sp)
    ax.set_yticks(range(len(sp)), [f"{s} ({a:.2f})" for s, a in zip(sp, result["alone"][metric])])
    ax.set_xlabel("species j also hidden")
    ax.set_ylabel(f"species i predicted ({metric.upper()} when hidden alone)")
    for i in range(len(sp)):
        for j in range(len(sp)):
            if i != j and math.isfinite(drop[i, j]):
                ax.text(j, i, f"{drop[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046, label=f"drop of {metric.upper()} of i")
    ax.set_title(title or f"how much hiding j hurts i ({metric.upper()} drop)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def sweep_figure(result: dict[str, Any], path: str | Path,
                 metrics: tuple[str, ...] = ("dice", "recall", "auprc")) -> Path:
    """Metric (mean ± std over seeds, pooled over species) against the lever's values, one panel
    per metric, one line per scenario."""
    plt = pyplot()
    values = [str(v) for v in result["values"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    x = np.arange(len(values))
    for ax, m in zip(axes[0], metrics):
        for k, sc in enumerate(result["scenarios"]):
            means = [result["points"][v]["scenarios"][sc]["overall"][m]["mean"] for v in values]
            stds = [result["points"][v]["scenarios"][sc]["overall"][m]["std"] for v in values]
            ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, color=f"C{k}", label=sc)
        ax.set_xticks(x, values)
        ax.set_xlabel(result["lever"])
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['model']}: {', '.join(metrics)} against {result['lever']} "
                 f"(test blocks, mean ± std over {len(result['seeds'])} seeds)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
