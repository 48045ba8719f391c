#!/usr/bin/env python3
"""Ship a trained model as the plugin's bundled model: score it on the held-out test blocks, write the
metrics, data provenance, hardware and training time into its card, and store fp16 weights in
resources/models/. Usage:

    .venv/bin/python scripts/ship_bundled_model.py --model trained.safetensors --stack stack.tif \
        --train-seconds 2900 --hardware "2-core CPU (shared)" \
        --compare out/compare/compare.json --compare-name bundled

``--compare`` takes a ``compare.json`` in which the model was scored with ``--model NAME=FILE``:
the card then lists every predictor of that comparison on the same masks, and names each
scenario and species where the model's Dice or recall is below a rival's (``--rivals``).
``--discovery`` takes a ``discovery.json`` (``discover``) whose rows the card then carries.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import defaults  # noqa: E402
from core.evaluation.evaluate import evaluate_models  # noqa: E402
from core.model.model_file import load_model, read_card, save_model  # noqa: E402
from core.data.stack import Stack  # noqa: E402


def means(d: dict) -> dict:
    return {m: (v["mean"] if isinstance(v, dict) else v) for m, v in d.items()}


def overall_means(rows: dict) -> dict:
    return means(rows["overall"])


RIVALS = ("kriging", "unet_no_aux")


def comparison(result: dict, name: str, rivals: tuple[str, ...] = RIVALS) -> dict:
    """Overall mean Dice/recall/AUPRC of every predictor per scenario, and where ``name`` does worse
    than a rival (overall or per species, by mean Dice or mean recall)."""
    if not any(name in preds for preds in result["scenarios"].values()):
        raise SystemExit(f"'{name}' was not scored in that comparison; run compare with --model {name}=FILE")
    out = {"note": "test blocks, the same seeded masks for every predictor (train_cli.py compare); "
                   "mean over seeds", "evaluation": result["evaluation"], "scenarios": {}, "worse": []}
    for sc, preds in result["scenarios"].items():
        out["scenarios"][sc] = {p: {m: v["mean"] for m, v in d["overall"].items()} for p, d in preds.items()}
        mine = preds[name]
        for rival in (r for r in rivals if r in preds):
            theirs = preds[rival]
            pairs = [("overall", mine["overall"], theirs["overall"])]
            pairs += [(s, d, theirs["per_species"][s]) for s, d in mine["per_species"].items()]
            for what, a, b in pairs:
                for metric, label in (("dice", "Dice"), ("recall", "recall")):
                    va, vb = a[metric]["mean"], b[metric]["mean"]
                    if va is not None and vb is not None and va < vb:  # NaN compares False: no hidden records
                        out["worse"].append(f"{sc}: {what} {label} {va:.3f} below {rival} ({vb:.3f})")
    return out


def discovery_rows(found: dict) -> dict:
    """What the card keeps of a ``discover`` result: per predictor and held-out survey, the AUC over
    10-mile blocks and the share of the survey's record cells in the top 10 % of its area."""
    return {"note": "the discovery test (train_cli.py discover): four state surveys held out of a stack, the model's "
                    "configuration trained on it (mean ± std over seeds); AUC over 10-mile blocks, share of the "
                    "held-out record cells in the top 10 % of each survey's area",
            "predictors": {name: {src: {m: v[m] for m in ("auc_10cell", "top10") if m in v} for src, v in rows.items()}
                           for name, rows in found["predictors"].items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--stack", type=Path, required=True)
    p.add_argument("--out", type=Path, default=defaults.BUNDLED_MODEL)
    p.add_argument("--train-seconds", type=float, required=True)
    p.add_argument("--hardware", default=f"{platform.processor() or platform.machine()} CPU")
    p.add_argument("--command", default="python train_cli.py train --preset bundled_blocks --seed 1 "
                                        "--out m3_unet_conus.safetensors")
    p.add_argument("--compare", type=Path, help="compare.json in which the model was scored (same masks)")
    p.add_argument("--compare-name", default="bundled", help="the model's name in that comparison")
    p.add_argument("--rivals", nargs="+", default=list(RIVALS), help="predictors of that comparison to list "
                   "the model's shortfalls against")
    p.add_argument("--discovery", type=Path, help="discovery.json (discover) of the model's configuration")
    args = p.parse_args()

    stack = Stack.read(args.stack)
    eval_json = args.out.with_name(args.out.stem + "_test_eval.json")
    if eval_json.exists() and args.model.resolve() in [Path(m).resolve() for m in json.loads(eval_json.read_text())["models"]]:
        result = json.loads(eval_json.read_text())  # already scored: reuse
    else:
        result = evaluate_models(stack, [args.model], out=eval_json)
    label = result["label"]
    card = read_card(args.model)
    card.metrics["test"] = {
        "note": "held-out test blocks, seeded masks (core.evaluation.evaluate); thresholds chosen on validation blocks",
        "test_tiles": result["test_tiles"], "draws": result["draws"],
        "scenarios": {sc: {"overall": overall_means(rows[label]),
                           "per_species": {s: means(d)
                                           for s, d in rows[label]["per_species"].items()},
                           "baselines": {name: overall_means(rows[name]) for name in rows if name != label}}
                      for sc, rows in result["scenarios"].items()}}
    if args.compare:
        card.metrics["comparison"] = comparison(json.loads(args.compare.read_text()), args.compare_name,
                                                tuple(args.rivals))
    if args.discovery:
        card.metrics["discovery"] = discovery_rows(json.loads(args.discovery.read_text()))
    card.training.update({"seconds": round(args.train_seconds), "hardware": args.hardware,
                          "command": args.command, "weights": "float16 (trained in float32)"})
    card.data.update({"records": "resources/data/records/mineral_sites_us.csv.gz (MinMod / DARPA CriticalMAAS, MIT)",
                      "aux": [b["source"] for b in card.aux_bands],
                      "provenance": "resources/data/README.md"})
    model, _ = load_model(args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(args.out, model, card, half=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and its card")
    print(json.dumps({sc: v["overall"] for sc, v in card.metrics["test"]["scenarios"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
