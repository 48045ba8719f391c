"""Where one evaluation's time goes: each step of a draw of a model over bench infer's 512 x 512
part of the CONUS stack, timed on its own (the mean of ``--repeats`` after a warm-up), in the order
``predict`` runs them on a CPU: the mask draw, the model inputs, the per-draw channels (visible
records, hidden indicators, context features), the lean input's reduction and head share (one
matrix product), the backbone, the calibration, the whole split forward and the whole batch step
(forward, calibration, blending into the sums); the aux share is paid once per window and model.
All under the heap policy ``predict`` runs under (:func:`core.inference.heap.kept_heap`).
Run from the repository root:

    OMP_NUM_THREADS=2 .venv/bin/python docs/results/lean_model/draw_parts.py STACK.tif MODEL.safetensors \
        --threads 2 --json draw_parts_2threads.json

``--option KEY=VALUE`` (repeatable; VALUE as JSON) times another design instead: the model's card
with those model options, random weights (the time of a step does not depend on the weights), e.g.
``--option encoder_stages=3 --option 'decoder_channels=[32,16,16]'``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402

from core.evaluation.bench_infer import CPU_PART, part_draws  # noqa: E402
from core.inference.heap import kept_heap  # noqa: E402
from core.inference.infer import inference_member  # noqa: E402
from core.model.inputs import draw_inputs  # noqa: E402
from core.model.model_file import load_model  # noqa: E402
from core.model.models import build_model  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stack", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", type=Path)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="time the card's design with this model option (JSON value), random weights")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    model, card = load_model(args.model, cpu)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    if options:
        card = replace(card, model={**card.model, "options": {**card.model["options"], **options}})
        model = build_model(card.model_config).eval()
    member = inference_member(model, card, args.model.name)
    if member.shared is None or not member.shared.k:
        raise SystemExit("draw_parts times the lean input path: give a model with input_reduction")
    part = part_draws(args.stack, member)
    run, presence, aux, valid = part.run, part.presence, part.aux, part.valid
    shared, scale = member.shared, run._scales[id(member)]

    def timed(f, n=args.repeats):
        out = f()
        t = time.perf_counter()
        for _ in range(n):
            out = f()
        return (time.perf_counter() - t) / n, out

    ms: dict[str, float] = {}
    with torch.inference_mode(), kept_heap():  # the heap policy infill runs under
        ms["mask draw"], (hidden, target) = timed(lambda: part.draw(3))
        aux_m = run._member_aux(member, aux)
        ms["aux share (once per window and model)"], terms = timed(lambda: run._aux_terms(member, aux_m, valid), 3)
        ms["model inputs"], x = timed(lambda: draw_inputs(presence[None], hidden[None], valid[None]))
        ms["per-draw channels and context features"], buf = timed(lambda: shared.per_draw_channels(x))
        b, d, bh, bw = buf.shape  # (with the cell_shuffle option, per block of cells)
        ms["reduction and head share (one product)"], y = timed(
            lambda: torch.matmul(shared.joint_weight, buf.view(b, d, bh * bw)))
        first = y[:, :shared.k].reshape(b, shared.k, bh, bw).contiguous(memory_format=torch.channels_last)
        ms["backbone"], logits = timed(lambda: shared.backbone(first))
        ms["split forward, all of it"], logits = timed(lambda: shared(x, terms))
        probs = torch.sigmoid(logits)
        ms["calibration"], _ = timed(lambda: scale.apply(probs))
        acc = torch.zeros((3, len(run.out_species)) + tuple(valid.shape))
        jobs = [(0, 0, presence, hidden, aux, valid, target)]
        ms["batch step (forward, calibration, blending)"], _ = timed(lambda: run._run_batch(member, jobs, acc, terms))
    figures = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "model": args.model.name,
               "options": options,
               "part": list(CPU_PART), "milliseconds": {k: round(v * 1000, 1) for k, v in ms.items()}}
    for k, v in figures["milliseconds"].items():
        print(f"{k:45s} {v:8.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
