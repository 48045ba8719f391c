#!/usr/bin/env python3
"""Choose the bundled preset on the validation blocks, many trainings at a time on one GPU (or CPU).

Each candidate configuration (overrides of a preset) is trained as `compare` trains it: the U-Net
with the aux layers (``unet``) and without them (``unet_no_aux``), for each seed. Several trainings
run side by side (``--workers``) until ``--budget-s`` has passed; a candidate whose models did not
all finish is left out. The rule, fixed before the run:

  a candidate is *eligible* when its aux U-Net's mean validation Dice and mean validation recall
  (over the seeds, overall, at each model's validation-chosen thresholds) are above its no-aux
  U-Net's in every masking scenario; the chosen candidate is the eligible one with the highest
  mean validation AUPRC of its aux U-Net over the scenarios. If none is eligible, the one whose
  smallest margin is largest is reported, marked not eligible.

Only the chosen candidate is then scored on the test blocks (``--test``), by `compare` on its
seeded masks, with the baselines named. Usage:

    python docs/results/masked_scenarios/gpu_sweep/gpu_sweep.py --plan plan.json --out out/gpu_sweep --workers 12 --budget-s 330 --test

plan.json: {"preset": "bundled", "seeds": [0, 1, 2], "candidates": {"name": {overrides}, ...}}
(candidates in priority order; overrides as ``TrainConfig.with_overrides`` takes them).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root

from core.evaluation.compare import compare, model_file, variant_config  # noqa: E402
from core.evaluation.evaluate import aggregate  # noqa: E402
from core.masks.masking import SCENARIOS  # noqa: E402
from core.model.model_file import load_model, read_card, save_model  # noqa: E402
from core.training.presets import preset  # noqa: E402
from core.data.stack import Stack  # noqa: E402
from core.training.train import TrainConfig, train  # noqa: E402

VARIANTS = ("unet", "unet_no_aux")
_STACK: Optional[Stack] = None


def _init_worker(stack_path: str, threads: int) -> None:
    global _STACK
    import torch
    torch.set_num_threads(threads)
    _STACK = Stack.read(stack_path)


def _train_one(config: dict[str, Any], path: str, device: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    with open(Path(path).with_suffix(".log"), "w") as log:
        train(_STACK, TrainConfig.from_dict(config), path, resume=True, device=device,
              log=lambda s: print(s, file=log, flush=True))
    return path, time.perf_counter() - t0


def candidate_configs(plan: dict[str, Any]) -> dict[str, TrainConfig]:
    base = TrainConfig().with_overrides(preset(plan.get("preset", "bundled")))
    return {name: base.with_overrides(ov) for name, ov in plan["candidates"].items()}


def validation_summary(models_dir: Path, seeds: list[int]) -> Optional[dict[str, Any]]:
    """Mean (and std) over seeds of each variant's validation overall metrics; None if incomplete."""
    out: dict[str, Any] = {}
    for v in VARIANTS:
        paths = [model_file(models_dir, v, s) for s in seeds]
        if not all(p.exists() for p in paths):
            return None
        cards = [read_card(p) for p in paths]
        out[v] = {sc: aggregate([c.metrics["validation"]["scenarios"][sc] for c in cards])["overall"]
                  for sc in SCENARIOS}
        out[v]["train_wall_s"] = statistics.fmean(c.metrics["run"]["wall_s"] for c in cards)
    margins = {f"{sc} {m}": out["unet"][sc][m]["mean"] - out["unet_no_aux"][sc][m]["mean"]
               for sc in SCENARIOS for m in ("dice", "recall")}
    out["margins"] = margins
    out["eligible"] = all(x > 0 for x in margins.values())
    out["auprc"] = statistics.fmean(out["unet"][sc]["auprc"]["mean"] for sc in SCENARIOS)
    return out


def choose(summaries: dict[str, Optional[dict[str, Any]]]) -> tuple[Optional[str], bool]:
    """The rule in this module's docstring: (chosen candidate, whether it is eligible)."""
    done = {n: s for n, s in summaries.items() if s is not None}
    if not done:
        return None, False
    eligible = [n for n, s in done.items() if s["eligible"]]
    if eligible:
        return max(eligible, key=lambda n: done[n]["auprc"]), True
    return max(done, key=lambda n: min(done[n]["margins"].values())), False


def table(summaries: dict[str, Optional[dict[str, Any]]]) -> str:
    rows = ["| candidate | model | " + " | ".join(SCENARIOS) + " | train s |", "|---" * (len(SCENARIOS) + 3) + "|"]
    for name, s in summaries.items():
        if s is None:
            rows.append(f"| {name} | (not all models finished) |" + " |" * (len(SCENARIOS) + 1))
            continue
        for v in VARIANTS:
            cells = [f"{s[v][sc]['dice']['mean']:.3f} ± {s[v][sc]['dice']['std']:.3f} / {s[v][sc]['recall']['mean']:.3f}"
                     f" / {s[v][sc]['auprc']['mean']:.3f}" for sc in SCENARIOS]
            rows.append(f"| {name}{' (eligible)' if s['eligible'] and v == 'unet' else ''} | {v} | "
                        + " | ".join(cells) + f" | {s[v]['train_wall_s']:.0f} |")
    return "\n".join(rows)


def run_trainings(configs: dict[str, TrainConfig], seeds: list[int], out: Path, stack_path: str, workers: int,
                  threads: int, budget_s: float, stop_s: float, device: str) -> None:
    """Train every candidate's variants and seeds into ``out/<candidate>/``, ``workers`` at a time,
    none started after ``budget_s`` (or when it would not finish by ``stop_s``), those still
    running at ``stop_s`` stopped; a training already there is kept."""
    jobs = [(name, v, s) for name in configs for s in seeds for v in VARIANTS]
    t0 = time.perf_counter()
    print(f"{len(jobs)} trainings, {workers} at a time, none started after {budget_s:.0f} s", flush=True)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(stack_path, threads))
    running: dict[Future, tuple[str, int]] = {}
    queue = list(jobs)
    pace: list[float] = []  # seconds per step of the finished trainings
    while queue or running:
        now = time.perf_counter() - t0
        while queue and len(running) < workers and now < budget_s:
            name, v, s = queue.pop(0)
            steps = configs[name].steps
            if stop_s and pace and now + statistics.fmean(pace) * steps > stop_s:
                print(f"[{now:6.0f} s] {name}/{v}/seed{s} not started: would not finish by {stop_s:.0f} s")
                continue
            path = model_file(out / name, v, s)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                continue
            cfg = variant_config(configs[name], v, s).to_dict()
            running[pool.submit(_train_one, cfg, str(path), device)] = (f"{name}/{v}/seed{s}", steps)
        if now >= budget_s:
            queue.clear()
        if not running:
            break
        if stop_s and now >= stop_s:
            print(f"[{now:6.0f} s] stopping {len(running)} unfinished trainings: "
                  + ", ".join(label for label, _ in running.values()), flush=True)
            for proc in list(getattr(pool, "_processes", {}).values()):  # the executor has no public kill
                proc.kill()
            running.clear()
            break
        done, _ = wait(running, timeout=5, return_when=FIRST_COMPLETED)
        for f in done:
            label, steps = running.pop(f)
            try:
                _, wall = f.result()
                pace.append(wall / steps)
                print(f"[{time.perf_counter() - t0:6.0f} s] {label} done in {wall:.0f} s", flush=True)
            except Exception as e:  # one failed training must not lose the others
                print(f"[{time.perf_counter() - t0:6.0f} s] {label} FAILED: {e!r}", flush=True)
    pool.shutdown(wait=False, cancel_futures=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: the embedded CONUS stack)")
    p.add_argument("--out", type=Path, default=Path("out/gpu_sweep"))
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per training")
    p.add_argument("--budget-s", type=float, default=300, help="no training starts after this")
    p.add_argument("--stop-s", type=float, default=0,
                   help="trainings still running then are stopped (0: none); none starts that would not "
                        "finish by then at the pace of those finished")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--test", action="store_true", help="score the chosen candidate on the test blocks")
    p.add_argument("--baselines", nargs="*", default=["kriging", "co_presence", "neighbour_density"])
    p.add_argument("--extra-model", action="append", default=[], metavar="NAME=FILE",
                   help="also score this model file on the test masks")
    args = p.parse_args()

    from core.data.build_stack import default_stack_path
    stack_path = str(args.stack or default_stack_path())
    plan = json.loads(args.plan.read_text())
    seeds = [int(s) for s in plan.get("seeds", [0, 1, 2])]
    configs = candidate_configs(plan)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_trainings(configs, seeds, args.out, stack_path, args.workers, args.threads, args.budget_s, args.stop_s,
                  args.device)

    summaries = {name: validation_summary(args.out / name, seeds) for name in configs}
    chosen, eligible = choose(summaries)
    md = (f"Validation blocks, mean over seeds {seeds} (Dice ± std / recall / AUPRC, overall, per scenario); "
          f"chosen by the rule in docs/results/masked_scenarios/gpu_sweep/gpu_sweep.py: **{chosen}** ({'eligible' if eligible else 'NOT eligible'}).\n\n"
          + table(summaries) + "\n")
    (args.out / "sweep.md").write_text(md)
    (args.out / "sweep.json").write_text(json.dumps({"plan": plan, "summaries": summaries, "chosen": chosen,
                                                     "eligible": eligible, "wall_s": time.perf_counter() - t0},
                                                    indent=1))
    print(md, flush=True)
    if chosen is None or not args.test:
        return 0
    stack = Stack.read(stack_path)
    extra: dict[str, list[str]] = {}
    for item in args.extra_model:
        name, _, file = item.partition("=")
        extra.setdefault(name, []).append(file)
    compare(stack, configs[chosen], seeds, args.out / f"test_{chosen}", models_dir=args.out / chosen,
            variants=VARIANTS, baselines=args.baselines, device=args.device, interdependence=False,
            extra_models=extra)
    model, card = load_model(model_file(args.out / chosen, "unet", seeds[0]))
    save_model(args.out / f"test_{chosen}" / f"{chosen}_unet_seed{seeds[0]}_fp16.safetensors", model, card, half=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
