"""Sweeps of the method's levers: the U-Net trained at several values of one lever (training
tiles N, encoder depth, aux on/off, steps), each scored like ``compare`` scores it, on the same
held-out masks, and plotted against the lever."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..atomic import check_writable
from .compare import (EvaluationSet, Log, ensure_model, format_mean_std, json_ready, model_file, write_json,
                      write_text)
from ..data.stack import Stack
from ..device import pick_device
from ..errors import InputError
from ..masks.masking import SCENARIOS
from ..model.metrics import METRICS
from ..model.model_file import read_card
from ..model.predictors import ModelPredictor
from ..progress import Progress
from ..training.train import TrainConfig
from .evaluate import EVAL_SEED, aggregate, card_thresholds, score_predictor

LEVERS = {"tiles": "tiles", "encoder-depth": "encoder_depth", "aux": "use_aux", "steps": "steps"}


def parse_lever_values(lever: str, texts: Sequence[str]) -> list[Any]:
    """The lever's values from the command line: integers, or on/off for ``aux``."""
    if lever not in LEVERS:
        raise InputError(f"Unknown lever '{lever}'; choose from {', '.join(LEVERS)}.")
    out: list[Any] = []
    for t in texts:
        if lever == "aux":
            if t.lower() not in ("on", "off", "true", "false", "yes", "no"):
                raise InputError(f"Values of the aux lever are on/off, not '{t}'.")
            out.append(t.lower() in ("on", "true", "yes"))
        else:
            try:
                out.append(int(t))
            except ValueError:
                raise InputError(f"Values of the {lever} lever are integers, not '{t}'.") from None
    return out


def _value_name(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def sweep(stack: Stack, config: TrainConfig, lever: str, values: Sequence[Any], seeds: Sequence[int],
          out_dir: str | Path, models_dir: Optional[str | Path] = None, draws: Optional[int] = None,
          mask_seed: int = EVAL_SEED, device: str = "auto", figures: bool = True,
          progress: Optional[Progress] = None, log: Log = print) -> dict[str, Any]:
    """Train (or load) the U-Net at each value of one lever for each seed and score it on the
    same held-out masks; write ``sweep_<lever>.json/.md/.png``."""
    if lever not in LEVERS:
        raise InputError(f"Unknown lever '{lever}'; choose from {', '.join(LEVERS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"sweep_{lever.replace('-', '_')}"
    check_writable(out_dir / f"{stem}.json")
    models_dir = Path(models_dir) if models_dir else out_dir / "models"
    dev, why = pick_device(device)
    log(f"device: {why}")
    t0 = time.perf_counter()
    ev = EvaluationSet(stack, config, draws, mask_seed, dev)
    points: dict[str, Any] = {}
    for value in values:
        name = _value_name(value)
        reports = []
        for s in seeds:
            cfg = config.with_overrides({LEVERS[lever]: value, "seed": s})
            path = ensure_model(stack, cfg, model_file(models_dir, f"unet_{lever.replace('-', '_')}_{name}", s),
                                device, progress, log)
            pred = ModelPredictor.from_file(path, name=f"{lever}={name}", device=dev)
            scored = score_predictor(pred, ev.tensors, ev.test, ev.val, ev.species,
                                     card_thresholds(read_card(path)), progress)
            reports.append(scored.reports)
        points[name] = {"value": value, "scenarios": {sc: aggregate([r[sc] for r in reports]) for sc in SCENARIOS}}
        o = {sc: points[name]["scenarios"][sc]["overall"] for sc in SCENARIOS}
        log(f"{lever}={name}: " + "  ".join(f"{sc} Dice {format_mean_std(o[sc]['dice'])} "
                                            f"recall {format_mean_std(o[sc]['recall'])}" for sc in SCENARIOS))
    result = {"lever": lever, "config_key": LEVERS[lever], "values": [_value_name(v) for v in values],
              "seeds": list(seeds), "model": "unet", "scenarios": list(SCENARIOS), "device": why,
              "training": json_ready(config.to_dict()),
              "evaluation": {"test_tiles": int(len(ev.test.origins)), "draws": ev.test.draws,
                             "mask_seed": ev.test.seed},
              "points": points, "timing_s": {"total": round(time.perf_counter() - t0, 1)}}
    write_json(out_dir / f"{stem}.json", result)
    lines = [f"| {lever} | scenario | Dice | recall | precision | AUPRC |", "|---|---|---|---|---|---|"]
    for name, pt in points.items():
        for sc in SCENARIOS:
            cells = " | ".join(format_mean_std(pt["scenarios"][sc]["overall"][m]) for m in METRICS)
            lines.append(f"| {name} | {sc} | {cells} |")
    write_text(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    if figures:
        from .compare_figures import sweep_figure

        sweep_figure(result, out_dir / f"{stem}.png")
    log("\n".join(lines))
    log(f"wrote {out_dir / (stem + '.json')} (+ .md{', .png' if figures else ''})")
    return result
