"""Training checkpoints: one safetensors file holding the model weights and the optimizer's
tensors, with the rest of the state (step, optimizer scalars and hyper-parameters, training
config, history) as JSON in the file's metadata. Written atomically, so a run killed at any
moment (kill -9) leaves the previous checkpoint intact. Never pickled."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import InputError

CHECKPOINT_NAME = "checkpoint.safetensors"
META_KEY = "m3_checkpoint"


def checkpoint_path(directory: str | Path) -> Path:
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict[str, Any]) -> Path:
    """Write ``directory/checkpoint.safetensors`` atomically; ``meta`` must be JSON-serialisable."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model/{k}"] = v.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt["state"].items():
        for name, v in state.items():
            if torch.is_tensor(v):
                tensors[f"optim/{idx}/{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = v
    full = dict(meta, optimizer={"param_groups": opt["param_groups"], "scalars": scalars})
    path = checkpoint_path(directory)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(full)})
    return path  # partial files of runs killed mid-write: atomic_path cleans them (core.atomic)


def read_checkpoint_meta(directory: str | Path) -> Optional[dict[str, Any]]:
    """The JSON state of the checkpoint in ``directory``, or None when there is none."""
    from safetensors import safe_open

    path = checkpoint_path(directory)
    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            return json.loads((f.metadata() or {})[META_KEY])
    except Exception as e:  # safetensors raises its own error types
        raise InputError(f"{path} is not a readable M3 checkpoint ({e}); delete it to start afresh.") from None


def load_checkpoint(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer from ``directory``; return the JSON state."""
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(directory)
    if meta is None:
        raise InputError(f"No checkpoint in {directory}.")
    tensors = load_file(str(checkpoint_path(directory)))
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, idx, name = k.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(sc)
    groups = meta["optimizer"]["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return meta
