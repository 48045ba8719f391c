"""Page faults and time of a mask draw with glibc's default heap, then under the heap policy
inference runs under (:func:`core.inference.heap.kept_heap`), in one process (default first: leaving the
policy leaves glibc's thresholds fixed). Each draw: the mask draw and the batch step (forward,
calibration, blending) of the bundled model over bench infer's 512 x 512 part. Run from the
repository root:

    OMP_NUM_THREADS=2 .venv/bin/python docs/results/speed/heap_faults.py ~/.cache/m3/conus_stack_1mile_v3.tif \
        resources/models/m3_unet_conus.safetensors
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402

from core.evaluation.bench_infer import part_draws  # noqa: E402
from core.inference.heap import kept_heap  # noqa: E402
from core.inference.infer import inference_member  # noqa: E402
from core.model.model_file import load_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stack", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--draws", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    model, card = load_model(args.model, cpu)
    member = inference_member(model, card, args.model.name)
    part = part_draws(args.stack, member)
    run = part.run
    terms = run._aux_terms(member, run._member_aux(member, part.aux), part.valid)
    acc = torch.zeros((3, len(run.out_species)) + tuple(part.valid.shape))

    def draws(n: int) -> tuple[float, float]:
        faults, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for d in range(n):
            hidden, target = part.draw(d)
            run._run_batch(member, [(0, 0, part.presence, hidden, part.aux, part.valid, target)], acc, terms)
        return ((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / n,
                (time.perf_counter() - t0) / n * 1000)

    draws(3)
    faults, ms = draws(args.draws)
    print(f"glibc's default heap: {faults:8.0f} page faults per draw, {ms:6.1f} ms per draw")
    with kept_heap():
        draws(3)
        faults, ms = draws(args.draws)
    print(f"kept heap (inference):{faults:8.0f} page faults per draw, {ms:6.1f} ms per draw")


if __name__ == "__main__":
    main()
