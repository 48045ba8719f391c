"""The comparison the method's claims rest on.

``compare`` trains (or loads) the U-Net, the U-Net without aux bands and the ViT for each seed
with one trainer and one loss, adds the aux-routing ablation, kriging and the simple baselines,
and scores every predictor with :func:`core.evaluation.evaluate.score_predictor` on the same held-out test
tiles and the same seeded masks, per masking scenario. Thresholds: a trained model's comes from
its card (chosen per scenario on validation blocks when it was trained, as ``evaluate`` uses it);
every other predictor's is chosen here per scenario on the validation blocks. Nothing is tuned
on the test blocks.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, check_writable
from ..data.stack import Stack
from ..device import pick_device
from ..errors import InputError
from ..masks.masking import SCENARIOS
from ..masks.tiles import TRAIN, StackTensors
from ..model.lean_input import with_lean_input
from ..model.metrics import METRICS, precision_recall_curve
from ..model.model_file import read_card
from ..model.models import AUX_CONTEXT_OPTION, CONTEXT_OPTION
from ..model.predictors import ModelPredictor, Predictor, WholeSpeciesAuxPredictor
from ..progress import Progress, check_cancelled
from ..training.presets import LEAN_INPUT, with_cell_blocks
from ..training.train import RESUMABLE_CHANGES, TrainConfig, train
from .baselines import CoPresencePredictor, FrequencyPredictor, NeighbourDensityPredictor
from .evaluate import EVAL_SEED, aggregate, card_thresholds, holdout_masks, score_predictor
from .interdependence import species_interdependence
from .kriging import KrigingPredictor

VIT_OPTIONS = {"patch": 8, "embed_dim": 128, "depth": 4, "heads": 4}


def _context(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in config.model_options.items() if k in (CONTEXT_OPTION, AUX_CONTEXT_OPTION)}


def _without(config: TrainConfig, *options: str) -> dict[str, Any]:
    return {k: v for k, v in config.model_options.items() if k not in options}


VARIANTS: dict[str, Callable[[TrainConfig], dict[str, Any]]] = {  # trained models: overrides of the base config
    "unet": lambda c: {},
    "unet_no_aux": lambda c: {"use_aux": False, "aux_dropout": 0.0,
                            "model_options": _without(c, AUX_CONTEXT_OPTION)},
    # the ablation of the neighbourhood-context features (core/context.py)
    "unet_no_context": lambda c: {"model_options": _without(c, CONTEXT_OPTION, AUX_CONTEXT_OPTION)},
    # the context features' linear head alone, without a backbone: what the U-Net adds to it
    "context_head": lambda c: {"arch": "none", "model_options": _context(c)},
    # the ViT gets the same inputs, context features included
    "vit": lambda c: {"arch": "vit", "model_options": {**VIT_OPTIONS, **_context(c)}},
    # the lean input path (core/model/lean_input.py, presets.LEAN_INPUT): the bundled model v0.5's design
    "unet_lean": lambda c: {"model_options": with_lean_input(c.model_options, LEAN_INPUT)},
    # the cell-block design (presets.CELL_BLOCKS), trained for 3 x the steps (a step costs about 0.4 of one without blocks)
    "unet_blocks": lambda c: with_cell_blocks({"steps": c.steps, "model_options": c.model_options}),
}


def variant_config(config: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """The training configuration of one compared model."""
    return config.with_overrides({**VARIANTS[variant](config), "seed": seed})
ROUTED = "unet_aux_whole_species"           # unet where a species is hidden entirely, else unet_no_aux
BASELINES = ("kriging", "co_presence", "neighbour_density", "frequency")

Log = Callable[[str], None]


def model_file(models_dir: Path, name: str, seed: int) -> Path:
    return Path(models_dir) / f"{name}_seed{seed}.safetensors"


def json_ready(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


def ensure_model(stack: Stack, config: TrainConfig, path: Path, device: str = "auto",
                 progress: Optional[Progress] = None, log: Log = print) -> Path:
    """``path`` trained with ``config``: loaded when a model trained with the same settings is
    there, else trained (resuming its checkpoint when a previous run was stopped)."""
    if path.exists():
        card = read_card(path)
        card.check_stack(stack)
        mine, theirs = json_ready(config.to_dict()), card.training
        diff = sorted(k for k in set(mine) | set(theirs)
                      if k not in RESUMABLE_CHANGES and mine.get(k) != theirs.get(k))
        if diff:
            raise InputError(f"{path} was trained with other settings ({', '.join(diff)}); remove it or "
                             "choose another --models-dir.")
        log(f"using the trained model {path}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"training {path.name} ...")
    train(stack, config, path, resume=True, device=device, progress=progress, log=log)
    return path


class EvaluationSet:
    """The held-out tiles and seeded masks every predictor is scored on, and the training cells
    the baselines are fitted on."""

    def __init__(self, stack: Stack, config: TrainConfig, draws: Optional[int] = None, seed: int = EVAL_SEED,
                 device: torch.device = torch.device("cpu")) -> None:
        spec = config.mask.only("region", species_k=1)
        draws = draws or len(stack.species)
        self.stack, self.species = stack, list(stack.species)
        self.val = holdout_masks(stack, config.holdout, config.tile_size, "val", config.min_valid, spec, draws, seed)
        self.test = holdout_masks(stack, config.holdout, config.tile_size, "test", config.min_valid, spec, draws,
                                  seed)
        if len(self.test.origins) == 0:
            raise InputError("The hold-out split has no test tile with enough land; use a smaller --block-size "
                             "or a larger --test-fraction.")
        self.tensors = StackTensors(stack, device)
        self.train_cells = (config.holdout.cell_labels(stack.valid) == TRAIN) & stack.valid

    def describe(self) -> str:
        t = self.test
        return (f"{len(t.origins)} test tiles and {len(self.val.origins)} validation tiles of {t.tile_size} cells, "
                f"{t.draws} mask draws per scenario (mask seed {t.seed}), region fraction "
                f"{t.spec.region_fraction}, 1 species hidden per draw in the species scenarios")


def fit_baselines(ev: EvaluationSet, names: Sequence[str] = BASELINES, seed: int = 0) -> list[Predictor]:
    """The untrained predictors, fitted on the training cells (never the held-out blocks)."""
    presence = ev.stack.presence
    freq = FrequencyPredictor.fit(presence, ev.train_cells)
    made: dict[str, Callable[[], Predictor]] = {
        "frequency": lambda: freq,
        "neighbour_density": lambda: NeighbourDensityPredictor(freq.frequency),
        "co_presence": lambda: CoPresencePredictor.fit(presence, ev.train_cells, seed=seed),
        "kriging": lambda: KrigingPredictor(freq.frequency, seed=seed),
    }
    unknown = set(names) - set(made)
    if unknown:
        raise InputError(f"Unknown baselines {sorted(unknown)}; choose from {', '.join(made)}.")
    return [made[n]() for n in names]


class Scoreboard:
    """Reports per predictor and seed, thresholds, and the first seed's precision-recall curves."""

    def __init__(self) -> None:
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self.thresholds: dict[str, list[dict[str, float]]] = {}
        self.curves: dict[str, dict[str, Any]] = {sc: {} for sc in SCENARIOS}
        self.seconds: dict[str, float] = {}

    def score(self, predictor: Predictor, ev: EvaluationSet, thresholds: Optional[dict[str, float]] = None,
              progress: Optional[Progress] = None, log: Log = print) -> None:
        """Score on the test masks at ``thresholds`` (per scenario; a trained model's card), or
        at thresholds chosen per scenario on the validation masks."""
        t0 = time.perf_counter()
        scored = score_predictor(predictor, ev.tensors, ev.test, ev.val, ev.species, thresholds, progress,
                                 per_scenario=True)
        name = predictor.name
        self.reports.setdefault(name, []).append(scored.reports)
        self.thresholds.setdefault(name, []).append(scored.thresholds)
        if name not in self.curves[SCENARIOS[0]]:
            for sc, cells in scored.cells.items():
                recall, precision = precision_recall_curve(*cells.arrays())
                self.curves[sc][name] = {"recall": recall.tolist(), "precision": precision.tolist(),
                                         "auprc": scored.reports[sc]["overall"]["auprc"]}
        dt = time.perf_counter() - t0
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        o = {sc: scored.reports[sc]["overall"] for sc in scored.reports}
        log(f"  {name:<24} " + "  ".join(
            f"{sc}: Dice {o[sc]['dice']:.3f} recall {o[sc]['recall']:.3f} (t={scored.thresholds[sc]:.3g})"
            for sc in o) + f"  ({dt:.0f} s)")

    def table(self) -> dict[str, dict[str, Any]]:
        return {sc: {name: aggregate([r[sc] for r in reps]) for name, reps in self.reports.items()}
                for sc in SCENARIOS}


def map_panel(predictors: dict[str, Predictor], ev: EvaluationSet) -> dict[str, Any]:
    """One held-out test tile (the one with the most records) and its most recorded species,
    under the evaluation mask of each scenario that hides that species, with every predictor's
    probabilities."""
    test, k, n = ev.test, ev.test.tile_size, len(ev.species)
    counts = [int(ev.stack.presence[:, r:r + k, c:c + k].sum()) for r, c in test.origins]
    t = int(np.argmax(counts))
    tile = ev.tensors.gather(torch.from_numpy(test.origins[t:t + 1]), k)
    s = int(tile.presence[0].flatten(1).sum(1).argmax())
    draw = (s - t) % n  # HoldoutMasks hides species (tile + draw) mod S in the species scenarios
    rows = []
    for sc in SCENARIOS:
        hidden = test.hidden(sc, draw, n)[t:t + 1].to(tile.presence.device)
        probs = {name: p.predict(tile.presence, hidden, tile.aux, tile.valid)[0, s].numpy()
                 for name, p in predictors.items()}
        rows.append({"scenario": sc, "truth": tile.presence[0, s].cpu().numpy(), "valid": tile.valid[0].cpu().numpy(),
                     "hidden": hidden[0, s].cpu().numpy(), "probs": probs})
    return {"origin": [int(v) for v in test.origins[t]], "species": ev.species[s], "rows": rows}


def format_mean_std(v: dict[str, Any], digits: int = 3) -> str:
    if v["mean"] is None or math.isnan(v["mean"]):
        return "n/a"
    if len(v["values"]) > 1:
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    return f"{v['mean']:.{digits}f}"


def rows(table: dict[str, dict[str, Any]], seeds: dict[str, int]) -> list[dict[str, Any]]:
    """Flat rows (scenario, predictor) with mean and std of each metric, pooled over species."""
    out = []
    for sc, preds in table.items():
        for name, agg in preds.items():
            row: dict[str, Any] = {"scenario": sc, "predictor": name, "seeds": seeds[name]}
            for m in METRICS:
                row[m] = {"mean": agg["overall"][m]["mean"], "std": agg["overall"][m]["std"]}
            out.append(row)
    return out


def markdown_tables(table: dict[str, dict[str, Any]], seeds: dict[str, int], species: list[str],
                    per_species_metrics: Sequence[str] = METRICS) -> str:
    """Overall (pooled over species) and per-species tables per scenario, as markdown."""
    lines = []
    for sc, preds in table.items():
        lines += [f"#### {sc}: {_scenario_text(sc)}", "",
                  "| predictor | seeds | Dice | recall | precision | AUPRC |", "|---|---|---|---|---|---|"]
        for name, agg in preds.items():
            cells = " | ".join(format_mean_std(agg["overall"][m]) for m in METRICS)
            lines.append(f"| {name} | {seeds[name]} | {cells} |")
        lines.append("")
    for m in per_species_metrics:
        lines += [f"#### {m} per species", ""]
        for sc, preds in table.items():
            lines += [f"{sc}:", "", "| predictor | " + " | ".join(species) + " |",
                      "|---|" + "---|" * len(species)]
            for name, agg in preds.items():
                cells = " | ".join(format_mean_std(agg["per_species"][s][m], 2) for s in species)
                lines.append(f"| {name} | {cells} |")
            lines.append("")
    return "\n".join(lines)


def _scenario_text(sc: str) -> str:
    return {"region": "every species hidden in a region", "species": "one species hidden over the whole tile",
            "both": "one species hidden in a region"}.get(sc, sc)


def text_table(table: dict[str, dict[str, Any]], seeds: dict[str, int]) -> str:
    """The overall table for the screen."""
    head = f"{'scenario':<9} {'predictor':<24} {'seeds':>5} " + " ".join(f"{m:>15}" for m in METRICS)
    lines = [head, "-" * len(head)]
    for sc, preds in table.items():
        for i, (name, agg) in enumerate(preds.items()):
            lines.append(f"{sc if i == 0 else '':<9} {name:<24} {seeds[name]:>5} "
                         + " ".join(f"{format_mean_std(agg['overall'][m]):>15}" for m in METRICS))
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float))
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def compare(stack: Stack, config: TrainConfig, seeds: Sequence[int], out_dir: str | Path,
            models_dir: Optional[str | Path] = None, variants: Sequence[str] = tuple(VARIANTS),
            baselines: Sequence[str] = BASELINES, draws: Optional[int] = None, mask_seed: int = EVAL_SEED,
            device: str = "auto", interdependence: bool = True, figures: bool = True, train_only: bool = False,
            extra_models: Optional[dict[str, Sequence[str | Path]]] = None,
            progress: Optional[Progress] = None, log: Log = print) -> dict[str, Any]:
    """Train or load each variant for each seed, score everything on the same held-out masks,
    write ``compare.json``, ``compare.md`` and the PNGs to ``out_dir``; return the result.
    ``train_only``: stop after training (e.g. on a GPU box), returning the model paths.
    ``extra_models``: already trained model files scored beside them, {name: [files, one per seed]}
    (e.g. the bundled model), with the thresholds of their cards."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable(out_dir / "compare.json")
    models_dir = Path(models_dir) if models_dir else out_dir / "models"
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise InputError(f"Unknown model variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}.")
    if not seeds:
        raise InputError("Give at least one seed (--seeds 0 1 2).")
    extra = {name: [Path(p) for p in ps] for name, ps in (extra_models or {}).items()}
    taken = set(extra) & (set(VARIANTS) | set(baselines) | {ROUTED})
    if taken:
        raise InputError(f"Model names {sorted(taken)} are taken by compared predictors; name them otherwise.")
    for p in (p for ps in extra.values() for p in ps):
        card = read_card(p)
        card.check_stack(stack)
        if card.aux_index(stack.aux_names) is not None:
            raise InputError(f"{p} reads aux bands {card.aux_names}, not the stack's {stack.aux_names}; compare "
                             "scores every predictor on the same tiles: build a stack with the model's aux bands.")
    dev, why = pick_device(device)
    log(f"device: {why}")
    timing: dict[str, float] = {}
    t0 = time.perf_counter()

    paths: dict[str, list[Path]] = {}
    for v in variants:
        paths[v] = [ensure_model(stack, variant_config(config, v, s), model_file(models_dir, v, s),
                                 device, progress, log) for s in seeds]
    timing["train_or_load"] = time.perf_counter() - t0
    paths.update(extra)
    if train_only:
        log(f"trained or found {sum(len(p) for p in paths.values())} models in {models_dir} "
            f"({timing['train_or_load']:.0f} s); score them with the same command without --train-only")
        return {"models": {v: [str(p) for p in ps] for v, ps in paths.items()}}

    t1 = time.perf_counter()
    ev = EvaluationSet(stack, config, draws, mask_seed, dev)
    log(f"scoring on {ev.describe()}")
    board = Scoreboard()
    first: dict[str, Predictor] = {}
    loaded: dict[str, list[ModelPredictor]] = {}
    for v, ps in paths.items():
        loaded[v] = [ModelPredictor.from_file(p, name=v, device=dev) for p in ps]
        for p, pred in zip(ps, loaded[v]):
            check_cancelled(progress)
            board.score(pred, ev, card_thresholds(read_card(p)), progress=progress, log=log)
        first[v] = loaded[v][0]
    if "unet" in loaded and "unet_no_aux" in loaded:
        for a, b in zip(loaded["unet"], loaded["unet_no_aux"]):
            routed = WholeSpeciesAuxPredictor(a, b, ROUTED)
            board.score(routed, ev, progress=progress, log=log)
        first[ROUTED] = WholeSpeciesAuxPredictor(loaded["unet"][0], loaded["unet_no_aux"][0], ROUTED)
    timing["score_models"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    for b in fit_baselines(ev, baselines):
        check_cancelled(progress)
        board.score(b, ev, progress=progress, log=log)
        first[b.name] = b
    timing["score_baselines"] = time.perf_counter() - t2
    for name, secs in board.seconds.items():
        timing[f"score:{name}"] = secs

    table = board.table()
    seeds_of = {name: len(reps) for name, reps in board.reports.items()}
    result: dict[str, Any] = {
        "seeds": list(seeds), "variants": {v: VARIANTS[v](config) for v in variants}, "baselines": list(baselines),
        "models": {v: [str(p) for p in ps] for v, ps in paths.items()}, "training": json_ready(config.to_dict()),
        "evaluation": {"test_tiles": int(len(ev.test.origins)), "val_tiles": int(len(ev.val.origins)),
                       "tile_size": ev.test.tile_size, "draws": ev.test.draws, "mask_seed": ev.test.seed,
                       "mask": ev.test.spec.to_dict(), "holdout": config.holdout.to_dict()},
        "device": why, "thresholds": board.thresholds, "rows": rows(table, seeds_of), "scenarios": table}

    if interdependence and "unet" in loaded:
        t3 = time.perf_counter()
        log("species interdependence of unet (seed %d) on the test tiles ..." % seeds[0])
        inter = species_interdependence(loaded["unet"][0], ev.tensors, ev.test.origins, ev.test.tile_size,
                                        ev.species, card_thresholds(read_card(paths["unet"][0]))["species"],
                                        progress=progress)
        result["interdependence"] = inter
        write_json(out_dir / "interdependence.json", inter)
        timing["interdependence"] = time.perf_counter() - t3
    if figures:
        from .compare_figures import interdependence_figure, map_panel_figure, pr_curves_figure

        note = f"test blocks, {ev.test.draws} mask draws per scenario; seed {seeds[0]} of each trained model"
        pr_curves_figure(board.curves, out_dir / "pr_curves.png", note)
        map_panel_figure(map_panel(first, ev), out_dir / "map_panel.png")
        if "interdependence" in result:
            interdependence_figure(result["interdependence"], out_dir / "interdependence.png",
                                   title="unet: drop of species i's AUPRC when species j is hidden too")
    timing["total"] = time.perf_counter() - t0
    result["timing_s"] = {k: round(v, 1) for k, v in timing.items()}
    write_json(out_dir / "compare.json", result)
    md = (f"Test blocks: {ev.describe()}. Scores pooled over species on hidden valid cells; "
          f"mean ± std over seeds for trained models (a single value: one deterministic run).\n\n"
          + markdown_tables(table, seeds_of, ev.species))
    write_text(out_dir / "compare.md", md)
    log(text_table(table, seeds_of))
    log(f"wrote {out_dir / 'compare.json'}, {out_dir / 'compare.md'}"
        + (", pr_curves.png, map_panel.png" if figures else "")
        + (", interdependence.png" if figures and "interdependence" in result else "")
        + f" (total {timing['total']:.0f} s)")
    return result
