"""The device a run uses (CPU or CUDA), and a sentence saying which and why."""
from __future__ import annotations

import torch

from .errors import M3Error


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
