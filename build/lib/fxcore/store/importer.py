"""Turn a folder of per-epoch weight files from someone's own training script into an fxcore run."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fxcore.models.nets import build_model, num_outputs_from_state
from fxcore.store.checkpoints import CheckpointError, add_run, create_run, write_epoch

_SUFFIXES = (".pt", ".pth", ".safetensors")


def _epoch_number(path: Path) -> int | None:
    """The last integer in the file name (``vgg_epoch_7.pt`` -> 7, ``ckpt-0012.pth`` -> 12)."""
    nums = re.findall(r"\d+", path.stem)
    return int(nums[-1]) if nums else None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or a torch file loaded with ``weights_only=True`` (no code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or corrupt file
        raise CheckpointError(f"{path}: cannot read as a weights-only state dict ({exc})") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # common training-script wrapper
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return obj


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def import_run(src: Path, model_name: str, run_dir: Path, attribute: str | None = None) -> Path:
    """Copy ``src``'s per-epoch state dicts into ``run_dir`` as checked fxcore checkpoints.

    Epoch order comes from the numbers in the file names; the architecture named on the command
    line is checked against the tensors (head size read from them, so a stock torchvision VGG-19
    state dict with its 1000-class head imports too). ``run_dir.parent`` is the experiment.
    """
    src, run_dir = Path(src), Path(run_dir)
    if not src.is_dir():
        raise CheckpointError(f"{src}: not a folder of weight files")
    files = {}
    for p in sorted(src.iterdir()):
        if p.suffix in _SUFFIXES and p.is_file():
            e = _epoch_number(p)
            if e is None:
                raise CheckpointError(f"{p}: no epoch number in the file name")
            if e in files:
                raise CheckpointError(f"{p} and {files[e]} both claim epoch {e}")
            files[e] = p
    if not files:
        raise CheckpointError(f"{src}: no {'/'.join(_SUFFIXES)} files found")
    if run_dir.exists() and any(run_dir.glob("epoch_*.safetensors")):
        raise CheckpointError(f"{run_dir}: already holds checkpoints; choose a new run folder")

    first = _strip_prefix(_read_state(files[min(files)]))
    n_out = num_outputs_from_state({k: tuple(v.shape) for k, v in first.items()})
    reference = build_model(model_name, n_out).state_dict()
    expected = {k: list(v.shape) for k, v in reference.items()}
    attribute = attribute or run_dir.name
    run_dir.mkdir(parents=True, exist_ok=True)
    for epoch in sorted(files):
        state = first if epoch == min(files) else _strip_prefix(_read_state(files[epoch]))
        got = {k: list(v.shape) for k, v in state.items()}
        missing = sorted(set(expected) - set(got))
        wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        if missing or wrong:
            raise CheckpointError(
                f"{files[epoch]}: does not match {model_name} (missing {missing[:3]}, "
                f"wrong shape {wrong[:3]}); check --model"
            )
        state = {
            k: state[k].float() if state[k].is_floating_point() else state[k] for k in expected
        }
        write_epoch(run_dir, epoch, state, None, run=attribute, imported_from=files[epoch].name)
    create_run(
        run_dir,
        attribute,
        model_name,
        "imported",
        n_out,
        {"model": model_name, "imported_from": str(src)},
        expected,
        epochs=sorted(files),
    )
    add_run(
        run_dir.parent,
        run_dir.name,
        attribute,
        model_name,
        dataset="imported",
        config={"model": model_name},
    )
    return run_dir
