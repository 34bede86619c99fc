"""Which device the analysis runs models on: ``--device auto|cpu|cuda`` or ``FXCORE_DEVICE``.

``auto`` is CUDA when PyTorch sees a CUDA device, else the CPU. Only the models and their forward
and backward passes move; CKA's HSIC, the bootstrap and every other statistic stay in float64 on
the host (activations are copied to the CPU before them), so ``cpu`` gives the numbers fxcore
always gave. Torch is imported only to resolve ``auto`` and check ``cuda``, so listing commands and
``--help`` stay torch-free.
"""

from __future__ import annotations

import os

from fxcore.core.errors import DeviceError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEVICE_ENV = "FXCORE_DEVICE"  # the default for the CLI's --device and the app's models
DEVICE_HELP = (
    f"where models run: auto (CUDA when available, else CPU), cpu or cuda; "
    f"default: ${DEVICE_ENV}, else auto"
)


def default_device() -> str:
    """``$FXCORE_DEVICE`` when set, else ``auto`` (checked by :func:`resolve_device`)."""
    return os.environ.get(DEVICE_ENV, "").strip().lower() or "auto"


def resolve_device(name: str | None = None) -> str:
    """``cpu`` or ``cuda`` for ``name`` (None: :func:`default_device`); a :class:`DeviceError`
    that names the fix for an unknown name or for ``cuda`` where PyTorch sees none."""
    source = "--device" if name else f"{DEVICE_ENV}="
    name = (name or default_device()).strip().lower()
    said = f"{source} {name}" if source == "--device" else f"{source}{name}"
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"{said}: unknown device; use one of {', '.join(DEVICE_CHOICES)}")
    import torch

    has_cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if has_cuda else "cpu"
    if name == "cuda" and not has_cuda:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceError(
            f"{said}: PyTorch {torch.__version__} ({build}) sees no CUDA device on this machine; "
            "use --device auto or cpu, or run on a machine with a GPU and a CUDA build of PyTorch"
        )
    return name
