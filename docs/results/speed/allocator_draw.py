"""One 512 x 512 draw of the bundled model's split U-Net (1 thread), timed in fresh processes with
glibc's default malloc settings and with large blocks served from the heap and kept when freed
(``mallopt(M_MMAP_THRESHOLD, 1 GiB)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``: no page faults on
fresh pages for each large tensor), alternating; prints the best time of each and their ratio.
A lever tried and not kept (docs/cli.md, bench infer). Run from the repository root:

    .venv/bin/python docs/results/speed/allocator_draw.py [rounds]
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import ctypes, sys, time, torch
sys.path.insert(0, {root!r})
if sys.argv[1] == "keep":
    libc = ctypes.CDLL("libc.so.6")
    assert libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, 1 << 30)  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
torch.set_num_threads(1)
from core.data.defaults import BUNDLED_MODEL
from core.inference.infer import load_members
from core.model.inputs import model_inputs
split = load_members([BUNDLED_MODEL], torch.device("cpu"))[0].shared
g = torch.Generator().manual_seed(0)
h = w = 512
presence = torch.rand(1, 10, h, w, generator=g) < 0.02
hidden = (torch.rand(1, 10, 1, 1, generator=g) < 0.5).expand(1, 10, h, w).clone()
valid = torch.ones(1, h, w, dtype=torch.bool)
with torch.inference_mode():
    terms = split.aux_terms(torch.randn(1, 6, h, w, generator=g))
    x = model_inputs(presence, hidden, torch.zeros(1, 0, h, w), valid).contiguous(memory_format=torch.channels_last)
    split(x, terms)
    best = float("inf")
    for _ in range(4):
        t0 = time.perf_counter()
        split(x, terms)
        best = min(best, time.perf_counter() - t0)
print(best)
"""


def main(rounds: int = 3) -> None:
    times = {"default": [], "keep": []}
    for _ in range(rounds):
        for mode in times:
            out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode], capture_output=True,
                                 text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
            times[mode].append(float(out.stdout.split()[-1]))
    d, k = min(times["default"]), min(times["keep"])
    print(f"seconds per draw, best of {rounds} processes x 4 draws: glibc defaults {d:.3f}, "
          f"heap kept {k:.3f}; ratio {d / k:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
