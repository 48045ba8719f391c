"""The device a run uses (CPU or CUDA), a sentence saying which and why, the float precision
inference runs in there, and a sampler of the GPU's utilisation for the benchmarks."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

import torch

from .errors import InputError, M3Error


def pick_device(prefer: str = "auto") -> tuple[torch.device, str]:
    """The device to run on and a sentence for the user saying which and why."""
    if prefer == "cpu":
        return torch.device("cpu"), "CPU (asked for)"
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        return dev, f"CUDA: {torch.cuda.get_device_name(dev)}"
    if prefer == "cuda":
        raise M3Error("CUDA was asked for but torch sees no CUDA device; use --device cpu or auto.")
    why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
    return torch.device("cpu"), f"CPU ({why}; torch {torch.__version__}, {torch.get_num_threads()} threads)"


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown inference precision, and bf16 on a CPU without native bf16 instructions
    (AVX512-BF16 or AMX), where oneDNN would emulate it more slowly than float32."""
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}.")
    if precision == "bf16" and not bf16_native(device):
        raise InputError("This CPU has no native bf16 instructions (AVX512-BF16 or AMX), so bf16 would be slower "
                         "than float32 here: leave --bf16 off.")


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """Float32 convolutions and matrix products without TF32 on CUDA while inside (TF32 keeps 10
    bits of mantissa), so that a GPU's maps equal a CPU's within float rounding; nothing changes
    on a CPU. The flags are restored on exit."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 runs natively there (CUDA; a CPU with AVX512-BF16 or AMX)."""
    return device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class GpuUtilisation:
    """Samples the GPU's utilisation (%, as NVML reports it) every ``every`` seconds in a thread
    while inside (the context may be entered again: samples add up); :attr:`mean` is None without
    NVML (pynvml), a CUDA device or samples."""

    def __init__(self, dev: torch.device, every: float = 0.2) -> None:
        self.dev, self.every, self.samples = dev, every, []
        self._stop: Optional[threading.Event] = None
        self._thread: Optional[threading.Thread] = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            try:
                self.samples.append(int(torch.cuda.utilization(self.dev)))
            except Exception:  # noqa: BLE001 — pynvml missing or not an NVIDIA device: no figure
                return

    def __enter__(self) -> "GpuUtilisation":
        if self.dev.type == "cuda":
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    @property
    def mean(self) -> Optional[float]:
        return sum(self.samples) / len(self.samples) if self.samples else None
