"""Optimizer state as safetensors (no pickle), so ``--resume`` continues Adam exactly."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fxcore.store.checkpoints import CheckpointError, read_header, save_checkpoint


def save_optimizer(opt: torch.optim.Optimizer, path: Path, epoch: int) -> None:
    """Flatten ``opt.state_dict()``: tensors as ``state.<param>.<name>``, the rest as JSON."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float | int]] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                # Adam's `step` is a 0-d tensor; keep it 1-d for safetensors.
                tensors[f"state.{pid}.{name}"] = val.detach().reshape(-1) if val.dim() == 0 else val
            else:
                scalars.setdefault(str(pid), {})[name] = val
    meta = {
        "epoch": epoch,
        "param_groups": sd["param_groups"],
        "scalars": scalars,
        "scalar_shapes": {k: list(v.shape) for k, v in _zero_dim(sd).items()},
    }
    save_checkpoint(path, tensors, meta)


def _zero_dim(sd: dict) -> dict[str, torch.Tensor]:
    return {
        f"state.{pid}.{n}": v
        for pid, st in sd["state"].items()
        for n, v in st.items()
        if torch.is_tensor(v) and v.dim() == 0
    }


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """Restore what :func:`save_optimizer` wrote; a missing or bad file is a CheckpointError."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise CheckpointError(f"{path}: optimizer state missing; cannot resume exactly")
    _, raw = read_header(path)
    meta = json.loads(raw.get("fxcore", "{}"))
    flat = load_file(str(path))
    state: dict[int, dict[str, object]] = {}
    for key, val in flat.items():
        _, pid, name = key.split(".", 2)
        if key in meta.get("scalar_shapes", {}):
            val = val.reshape(())
        state.setdefault(int(pid), {})[name] = val
    for pid, extra in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
