"""Which map ranks the national records that the stack lacks, species by species?

The USGS national compilations among the embedded records (the sources named ``mrdata_*`` and
``earth_mri_usa``) are held out of the stack (``discovery-stack``). Then, for each species:

- M3's map with that species hidden everywhere, every other species visible
  (``predict --hide-species X --draws 1``, the bundled model);
- the aux-only map (``aux-map``: gradient boosting on the aux bands, fitted to the visible
  records of X);
- the two combined (the rule of ``combine-maps``: their log-odds added);
- a rival that reads no aux band and no other species: the visible records of X blurred by a
  Gaussian of 16 cells (the discovery test's widest, fixed in advance).

Each map is aggregated over ~60-mile cells (64 × 64 one-mile cells, by the highest cell and by
the mean). A coarse cell is scored for species X when it holds no visible record of X; it is
positive when it holds a held-out record of X. ROC AUC per species, and the mean over species
with a 95 % interval from resampling the coarse cells. The same on subsets of the coarse cells:
those holding a visible record of another species (where M3 can read co-presence), those holding
no visible record at all, and those inside the bundled model's validation and test blocks
(which no training tile overlapped: there its training never held the held-out records).
And, without aggregation, the co-presence question at the record's own cell: over the one-mile
cells holding a visible record of another species and none of X, how high each map ranks those
where a held-out record names X.

Run from the repository root (the maps go to --work; steps already written there are kept):
    OMP_NUM_THREADS=1 .venv/bin/python docs/results/discovery/national_check/national_check.py \
        --work out/national_check --out docs/results/discovery/national_check/national_check.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())
sys.path.insert(0, str(ROOT))

from core.evaluation.discovery import roc_auc  # noqa: E402

NATIONAL_PREFIX = "mrdata_"          # USGS mineral-resource data compilations (national)
NATIONAL_OTHERS = ("earth_mri_usa",)  # USGS Earth MRI, national
BLOCK = 64                           # one-mile cells per side of a coarse cell (about 60 miles)
AGGREGATIONS = ("max", "mean")
ONE_MILE = "one-mile cell"           # no aggregation: the co-presence question at the record's cell
BLUR_SIGMA = 16.0                    # cells: the widest blur of the discovery test's rival, fixed in advance
MAPS = ("aux-only map", "M3, species hidden", "M3 × aux-only (combine-maps)",
        f"blurred records of the species (σ = {BLUR_SIGMA:g} cells)")
SUBSETS = ("all coarse cells", "another species recorded", "nothing recorded", "model's held-out blocks")
BOOTSTRAP = 500


def national_sources(datasets: Sequence[str]) -> list[str]:
    """The national compilations among the records' source data sets, sorted."""
    return sorted({d for d in datasets if d.startswith(NATIONAL_PREFIX) or d in NATIONAL_OTHERS})


def _blocks(a: np.ndarray, block: int, fill: float) -> np.ndarray:
    """(ny, nx, block²) view of a 2-D array padded with ``fill`` to whole blocks."""
    h, w = a.shape
    ny, nx = -(-h // block), -(-w // block)
    out = np.full((ny * block, nx * block), fill, np.float64)
    out[:h, :w] = a
    return out.reshape(ny, block, nx, block).transpose(0, 2, 1, 3).reshape(ny, nx, block * block)


def coarse_any(mask: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(ny, nx) bool: coarse cells holding at least one True cell."""
    return _blocks(mask.astype(np.float64), block, 0.0).max(axis=2) > 0


def coarse_all(mask: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(ny, nx) bool: coarse cells whose every cell (inside the grid) is True."""
    return _blocks(mask.astype(np.float64), block, 1.0).min(axis=2) > 0


def coarse_score(score: np.ndarray, valid: np.ndarray, how: str, block: int = BLOCK) -> np.ndarray:
    """(ny, nx) score of each coarse cell over its valid cells with a value: their ``max`` or
    ``mean``; NaN where it has none."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r}: use one of {AGGREGATIONS}")
    usable = valid & np.isfinite(score)
    cells = _blocks(np.where(usable, score, np.nan), block, np.nan)
    seen = np.isfinite(cells).any(axis=2)
    out = np.full(seen.shape, np.nan)
    if how == "max":
        out[seen] = np.nanmax(cells[seen], axis=1)
    else:
        out[seen] = np.nanmean(cells[seen], axis=1)
    return out


def resampled_mean_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                              reps: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean over species of AUC(a) − AUC(b): each species' positive and negative
    coarse cells resampled with replacement (separately), ``reps`` times. Species without both
    classes are left out."""
    rng = np.random.default_rng(seed)
    keep = [(x, y, z.astype(bool)) for x, y, z in zip(a, b, labels) if 0 < z.sum() < len(z)]
    if not keep:
        return float("nan"), float("nan")
    diffs = np.empty(reps)
    for r in range(reps):
        per = []
        for x, y, z in keep:
            pos, neg = np.flatnonzero(z), np.flatnonzero(~z)
            idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            per.append(roc_auc(x[idx], z[idx]) - roc_auc(y[idx], z[idx]))
        diffs[r] = np.mean(per)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def score_species(maps: dict[str, np.ndarray], scored: np.ndarray, positive: np.ndarray) -> dict:
    """AUC of each coarse map over the ``scored`` coarse cells that every map covers."""
    cells = scored & np.all([np.isfinite(m) for m in maps.values()], axis=0)
    y = positive[cells]
    return {"positives": int(y.sum()), "negatives": int((~y).sum()),
            "auc": {name: roc_auc(m[cells], y) for name, m in maps.items()}}


def summarise(per_species: dict[str, dict], values: dict[str, dict[str, np.ndarray]],
              labels: dict[str, np.ndarray]) -> dict:
    """Mean AUC over species with both classes, and the resampled intervals of the differences
    that answer the question: aux-only − M3, and the combination − aux-only (``values``: per
    species, each map's scores of the scored cells; ``labels``: their positives)."""
    species = [s for s, r in per_species.items() if r["positives"] and r["negatives"]]
    out = {"species_scored": species,
           "mean_auc": {m: float(np.mean([per_species[s]["auc"][m] for s in species])) if species else float("nan")
                        for m in MAPS}}

    def of(m: str) -> list[np.ndarray]:
        return [values[s][m] for s in species]

    y = [labels[s] for s in species]
    aux, m3, both = MAPS[:3]
    out["aux_minus_m3_95"] = resampled_mean_difference(of(aux), of(m3), y)
    out["combined_minus_aux_95"] = resampled_mean_difference(of(both), of(aux), y)
    return out


# --- the maps (the project's commands) --------------------------------------------------------------

TIMES = "step_seconds.json"          # in --work: each map's wall time, kept with the map


def run_step(args: list[str], out: Path, log: dict) -> Path:
    """Run ``train_cli.py ARGS`` unless ``out`` exists; record its wall time in ``log`` and in
    the work folder's :data:`TIMES` (so that a rerun reports the times of the maps it kept)."""
    times_file = out.parent / TIMES
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    if out.exists():
        print(f"kept {out}")
        if out.name in times:
            log[out.name] = times[out.name]
        return out
    cmd = [sys.executable, str(ROOT / "train_cli.py"), *args]
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, env=os.environ.copy())
    log[out.name] = times[out.name] = round(time.time() - t0, 1)
    times_file.write_text(json.dumps(times, indent=1))
    return out


def make_maps(work: Path, stack: Path | None, records: Path, model: Path, species: Sequence[str], sources: list[str],
              draws: int, log: dict) -> tuple[Path, Path, dict[str, Path]]:
    work.mkdir(parents=True, exist_ok=True)
    held = run_step(["discovery-stack", *(["--stack", str(stack)] if stack else []), "--records", str(records),
                     "--holdout-datasets", *sources, "--out", str(work / "stack_national_held_out.tif")],
                    work / "stack_national_held_out.tif", log)
    aux = run_step(["aux-map", "--stack", str(held), "--species", *species, "--out", str(work / "aux_map.tif"),
                    "--no-quicklook"], work / "aux_map.tif", log)
    m3 = {s: run_step(["predict", "--stack", str(held), "--models", str(model), "--hide-species", s,
                       "--draws", str(draws), "--device", "cpu", "--out", str(work / f"m3_hidden_{s}.tif"),
                       "--no-quicklook"], work / f"m3_hidden_{s}.tif", log) for s in species}
    return held, aux, m3


# --- the scores -------------------------------------------------------------------------------------

def evaluate(held: Path, records, model: Path, aux: Path, m3: dict[str, Path], sources: list[str]) -> dict:
    """The scores of :data:`MAPS` for every aggregation and subset (``records``: the stack's species)."""
    import warnings

    from core.data.prediction_io import read_band
    from core.data.rasterize import presence_bands
    from core.data.stack import Stack
    from core.evaluation.baselines import gaussian_smoother, visible_share
    from core.evaluation.discovery import INFO_KEY
    from core.inference.combine import combined_probability
    from core.masks.tiles import TRAIN, HoldoutSplit
    from core.model.model_file import read_card

    stack = Stack.read(held)
    if sorted(stack.info.get(INFO_KEY, [])) != sorted(sources):
        raise SystemExit(f"{held} does not hold out exactly {sources}; delete it and run again.")
    if list(records.symbols) != list(stack.species):
        raise SystemExit(f"The records were read for {records.symbols}, the stack has {stack.species}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held_out = presence_bands(records.subset(records.from_datasets(sources)), stack.grid, stack.valid)
    visible = stack.presence.astype(bool)
    split = read_card(model).data.get("holdout", {}).get("split")
    in_held_blocks = (coarse_all(HoldoutSplit.from_dict(split).cell_labels(stack.valid) != TRAIN)
                      if split else None)
    visible_any = coarse_any(visible.any(axis=0))
    keys = (*AGGREGATIONS, ONE_MILE)
    kept: dict = {k: {} for k in keys}                       # key → species → map → scored values
    labels: dict = {k: {} for k in keys}
    rows: dict = {k: {n: {} for n in SUBSETS} for k in keys}
    for s in m3:
        i = stack.species.index(s)
        a, m = read_band(aux, f"mean_{s}"), read_band(m3[s], f"mean_{s}")
        blur, _ = visible_share(visible[i].astype(np.float64), stack.valid, gaussian_smoother(BLUR_SIGMA))
        one_mile = {MAPS[0]: a, MAPS[1]: m, MAPS[2]: combined_probability([m, a]),
                    MAPS[3]: np.where(stack.valid, blur, np.nan)}
        other = np.delete(visible, i, axis=0).any(axis=0)
        for how in AGGREGATIONS:
            maps = {k: coarse_score(v, stack.valid, how) for k, v in one_mile.items()}
            base = np.all([np.isfinite(v) for v in maps.values()], axis=0) & ~coarse_any(visible[i])
            positive = coarse_any(held_out[i].astype(bool))
            masks = {SUBSETS[0]: base, SUBSETS[1]: base & coarse_any(other), SUBSETS[2]: base & ~visible_any}
            if in_held_blocks is not None:
                masks[SUBSETS[3]] = base & in_held_blocks
            for name, mask in masks.items():
                rows[how][name][s] = score_species(maps, mask, positive)
                kept[how].setdefault(name, {})[s] = {k: v[mask] for k, v in maps.items()}
                labels[how].setdefault(name, {})[s] = positive[mask]
        # the co-presence question at the record's own cell: a cell holding another species' record
        mask = stack.valid & other & ~visible[i] & np.all([np.isfinite(v) for v in one_mile.values()], axis=0)
        rows[ONE_MILE][SUBSETS[1]][s] = score_species(one_mile, mask, held_out[i].astype(bool))
        kept[ONE_MILE].setdefault(SUBSETS[1], {})[s] = {k: v[mask] for k, v in one_mile.items()}
        labels[ONE_MILE].setdefault(SUBSETS[1], {})[s] = held_out[i][mask].astype(bool)
    result: dict = {"aggregations": {}}
    for how in keys:
        result["aggregations"][how] = {
            name: {"per_species": rows[how][name],
                   **summarise(rows[how][name], kept[how][name], labels[how][name])}
            for name in SUBSETS if rows[how][name]}
    return result


def table(result: dict, how: str) -> str:
    """Markdown: per species AUC of each map, then the mean, for every subset (one aggregation)."""
    agg = result["aggregations"][how]
    lines = []
    for name, sub in agg.items():
        lines += [f"**{name}** ({how if how == ONE_MILE else 'coarse-cell score: ' + how}; "
                  "positives / scored cells per species)", "",
                  "| species | positives / cells | " + " | ".join(MAPS) + " |", "|---|---|" + "---|" * len(MAPS)]
        for s, r in sub["per_species"].items():
            aucs = " | ".join("—" if not np.isfinite(r["auc"][m]) else f"{r['auc'][m]:.3f}" for m in MAPS)
            lines.append(f"| {s} | {r['positives']} / {r['positives'] + r['negatives']} | {aucs} |")
        means = " | ".join(f"**{sub['mean_auc'][m]:.3f}**" for m in MAPS)
        lines.append(f"| mean ({len(sub['species_scored'])} species) | | {means} |")
        lo, hi = sub["aux_minus_m3_95"]
        clo, chi = sub["combined_minus_aux_95"]
        lines += ["", f"aux-only − M3: 95 % interval [{lo:+.3f}, {hi:+.3f}]; "
                      f"combined − aux-only: [{clo:+.3f}, {chi:+.3f}]", ""]
    return "\n".join(lines)


def main() -> int:
    import warnings

    from core.data import defaults
    from core.data.records import read_records
    from core.data.species import catalog_for
    from core.model.model_file import read_card

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=ROOT / "out" / "national_check", help="folder for the maps")
    p.add_argument("--stack", type=Path, default=None, help="stack GeoTIFF (default: the embedded CONUS stack)")
    p.add_argument("--records", type=Path, default=defaults.RECORDS)
    p.add_argument("--model", type=Path, default=defaults.BUNDLED_MODEL)
    p.add_argument("--species", nargs="+", default=None, help="species to hide in turn (default: the model's)")
    p.add_argument("--draws", type=int, default=1, help="predict --draws per species (1: the hidden species alone)")
    p.add_argument("--out", type=Path, required=True, help="JSON of the scores (a .md table is written beside it)")
    args = p.parse_args()
    if args.out.resolve().parent == args.work.resolve():
        raise SystemExit("--out must not lie in --work")
    model_species = list(read_card(args.model).species)
    species = args.species or model_species
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_records(args.records, catalog_for(model_species))
    sources = national_sources(records.datasets)
    if not sources:
        raise SystemExit(f"{args.records} has no source named {NATIONAL_PREFIX}* or {', '.join(NATIONAL_OTHERS)}.")
    print("held out:", ", ".join(sources))
    times: dict[str, float] = {}
    held, aux, m3 = make_maps(args.work, args.stack, args.records, args.model, species, sources, args.draws, times)
    t0 = time.time()
    result = {"held_out_sources": sources, "block_cells": BLOCK, "model": args.model.name, "draws": args.draws,
              "maps": {"M3, species hidden": "predict --hide-species X", "aux-only map": "aux-map",
                       "M3 × aux-only (combine-maps)": "sum of log-odds (core.inference.combine)"},
              **evaluate(held, records, args.model, aux, m3, sources)}
    times["scoring"] = round(time.time() - t0, 1)
    result["wall_seconds"] = times
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md = "\n\n".join(f"### Coarse-cell score: {how}\n\n{table(result, how)}" for how in AGGREGATIONS)
    md += f"\n\n### No aggregation: one-mile cells\n\n{table(result, ONE_MILE)}"
    for path, text in ((args.out, json.dumps(result, indent=1)), (args.out.with_suffix(".md"), md + "\n")):
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(text)
        tmp.replace(path)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
