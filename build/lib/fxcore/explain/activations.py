"""Feature maps of one layer, safe on models shared between app sessions (Grad-CAM: ``gradcam``).

Every public function that runs a model takes that model's lock (:func:`model_lock`), switches it
to ``eval()`` and restores each module's train/eval flag and each parameter's ``requires_grad``
afterwards (:func:`restore_mode`), and removes every hook it registered, also on errors.

Heads: a single logit ``(B, 1)`` for a binary attribute, or ``(B, K)`` class logits (MNIST).
Maps are returned raw (unnormalised); use :func:`normalize_maps` / :func:`shared_range` to put
several maps on one colour scale so they can be compared.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fxcore.core.errors import ActivationError  # noqa: F401 - re-exported

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock of ``model`` (one per model object, freed with the model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
        return lock


def active_hook_count(model: nn.Module) -> int:
    """Number of forward, forward-pre and backward (incl. full backward) hooks on all modules."""
    total = 0
    for m in model.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        total += len(getattr(m, "_backward_pre_hooks", {}))
    return total


@contextmanager
def restore_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's ``training`` flag and every parameter's ``requires_grad`` on exit."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in grads:
            p.requires_grad_(flag)


def conv_layers(model: nn.Module) -> list[str]:
    """Names of all ``nn.Conv2d`` modules in forward-definition order (``features.0``, ...)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def last_conv_layer(model: nn.Module) -> str:
    """Name of the last ``nn.Conv2d`` (the usual Grad-CAM layer)."""
    names = conv_layers(model)
    if not names:
        raise ActivationError("the model has no Conv2d layer; Grad-CAM needs a convolutional model")
    return names[-1]


def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        valid = conv_layers(model) or [n for n in modules if n]
        few = ", ".join(valid[:8]) + (", ..." if len(valid) > 8 else "")
        raise ActivationError(f"unknown layer {name!r}; valid names include: {few}")
    return modules[name]


def _first(out: object) -> object:
    """A module's output tensor (the first element when it returns a tuple or list)."""
    return out[0] if isinstance(out, (tuple, list)) else out


@contextmanager
def capture(
    model: nn.Module, layer_names: str | Sequence[str]
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the (detached, cloned) outputs of the named layers during forward passes.

    Yields a dict name -> tensor filled as the model runs (the last call of a layer wins). Outputs
    are cloned because a following in-place ReLU would otherwise overwrite them.
    """
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    modules = {name: _module(model, name) for name in names}  # validate all before hooking
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: object, out: object) -> None:
            t = _first(out)
            store[name] = t.detach().clone()  # type: ignore[union-attr]

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batch(x: torch.Tensor) -> torch.Tensor:
    return x[None] if x.dim() == 3 else x  # (C, H, W) -> (1, C, H, W)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[:, None] if out.dim() == 1 else out  # always (B, K)


def _not_spatial(model: nn.Module, layer: str, shape: tuple[int, ...]) -> ActivationError:
    convs = conv_layers(model)
    hint = f"choose a conv layer such as {convs[-1]!r}" if convs else "this model has no conv layer"
    return ActivationError(
        f"layer {layer!r} gives a {shape} output, not a (B, C, h, w) map; {hint}"
    )


@dataclass
class FeatureMaps:
    """Activations of one layer for the first image of a batch (all raw, unnormalised)."""

    layer: str
    activation: np.ndarray  # (C, h, w)
    channel_mean: np.ndarray  # (h, w) mean over channels
    channel_mean_up: np.ndarray  # (S, S) bilinear to input size
    top_channels: np.ndarray  # (k,) channel indices, most active first (by spatial mean)
    top_maps_up: np.ndarray  # (k, S, S) those channels, bilinear to input size
    logit: float | np.ndarray  # float for a single logit, (K,) for class logits
    probability: float | np.ndarray  # sigmoid(logit), or softmax vector (K,)


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) -> (N, H, W), bilinear like captum's LayerAttribution.interpolate."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear")[:, 0]


def summarise(
    layer: str, act: torch.Tensor, out: torch.Tensor, size: tuple[int, int], top_k: int
) -> FeatureMaps:
    """:class:`FeatureMaps` from one image's layer output ``act`` (C, h, w) and logits ``out`` (K,)."""
    act = act.float().cpu()
    k = max(0, min(top_k, act.shape[0]))
    top = torch.argsort(act.mean(dim=(1, 2)), descending=True, stable=True)[:k]  # (k,)
    mean = act.mean(dim=0)  # (h, w)
    out = out.float().cpu()
    if out.numel() == 1:
        logit: float | np.ndarray = float(out[0])
        prob: float | np.ndarray = float(torch.sigmoid(out[0]))
    else:
        logit, prob = out.numpy(), torch.softmax(out, dim=0).numpy()
    return FeatureMaps(
        layer=layer,
        activation=act.numpy(),
        channel_mean=mean.numpy(),
        channel_mean_up=_upsample(mean[None], size)[0].numpy(),
        top_channels=top.numpy(),
        top_maps_up=_upsample(act[top], size).numpy(),
        logit=logit,
        probability=prob,
    )


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str, top_k: int = 8) -> FeatureMaps:
    """Activation of ``layer`` for the first image of ``x`` ``(B, C, S, S)`` or ``(C, S, S)``."""
    x = _batch(x)[:1].to(_device(model))
    with model_lock(model), restore_mode(model), torch.no_grad():
        model.eval()
        with capture(model, layer) as store:
            out = _logits(model, x)[0]  # (K,)
    if store[layer].dim() != 4:
        raise _not_spatial(model, layer, tuple(store[layer].shape))
    return summarise(layer, store[layer][0], out, (x.shape[-2], x.shape[-1]), top_k)


def shared_range(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """One colour range ``(vmin, vmax)`` for several maps; vmin is 0 unless a map is negative."""
    if not maps:
        return 0.0, 1.0
    lo = min(0.0, min(float(np.min(m)) for m in maps))
    hi = max(float(np.max(m)) for m in maps)
    return lo, hi if hi > lo else lo + 1.0


def map_ranges(maps: Sequence[np.ndarray], shared: bool = True) -> list[tuple[float, float]]:
    """The colour range of each map: one :func:`shared_range` for all, or one per map."""
    return [shared_range(maps)] * len(maps) if shared else [shared_range([m]) for m in maps]


def normalize_maps(maps: Sequence[np.ndarray], shared: bool = True) -> list[np.ndarray]:
    """Scale maps to [0, 1] with one range for all (``shared``) or a range per map.

    The range is :func:`shared_range` (anchored at 0 for non-negative maps), so with ``shared``
    a weak map stays dim next to a strong one instead of being stretched to full brightness.
    """
    ranges = map_ranges(maps, shared)
    return [
        ((np.asarray(m, np.float32) - lo) / (hi - lo)).astype(np.float32)
        for m, (lo, hi) in zip(maps, ranges)
    ]


def overlay(
    image_rgb: np.ndarray,
    heat: np.ndarray,
    vmin: float,
    vmax: float,
    alpha: float = 0.45,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend a colour-mapped ``heat`` ``(S, S)`` over ``image_rgb`` uint8 ``(S, S, 3)``."""
    img = np.asarray(image_rgb)
    if img.ndim == 2:  # grayscale (S, S) -> (S, S, 3)
        img = np.repeat(img[..., None], 3, axis=2)
    heat = np.asarray(heat, dtype=np.float32)
    if img.shape[:2] != heat.shape:
        raise ActivationError(f"heat map {heat.shape} does not match image {img.shape[:2]}")
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((heat - vmin) / span, 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](t)[..., :3] * 255.0  # (S, S, 3) float
    out = (1.0 - alpha) * img[..., :3].astype(np.float32) + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@torch.no_grad()
def layer_grams(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    batch: int = 32,
    budget_bytes: int = 2**29,
) -> dict[str, np.ndarray]:
    """Linear Gram matrices ``A A^T`` (n, n), float64, of each layer's flattened outputs over ``x``.

    Layers are taken in groups whose activations for all n images fit ``budget_bytes`` (float32),
    one forward pass over ``x`` per group, so memory stays bounded for large models.
    """
    with model_lock(model), restore_mode(model):
        model.eval()
        return _grams(model, _batch(x), layers, batch, budget_bytes)


def _grams(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], batch: int, budget_bytes: int
) -> dict[str, np.ndarray]:
    with capture(model, layers) as acts:
        _logits(model, x[:1].to(_device(model)))
    per_image = {name: acts[name][0].numel() * 4 * len(x) for name in layers}
    groups: list[list[str]] = [[]]
    used = 0
    for name in layers:
        if groups[-1] and used + per_image[name] > budget_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += per_image[name]
    grams: dict[str, np.ndarray] = {}
    for group in groups:
        feats: dict[str, list[torch.Tensor]] = {name: [] for name in group}
        for start in range(0, len(x), max(1, batch)):
            with capture(model, group) as acts:
                _logits(model, x[start : start + batch].to(_device(model)))
            for name in group:
                feats[name].append(acts[name].flatten(1).float().cpu())
        for name in group:
            a = torch.cat(feats.pop(name)).double()  # (n, d)
            grams[name] = (a @ a.T).numpy()
    return grams


@torch.no_grad()
def pooled_activations(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], batch: int = 64
) -> dict[str, np.ndarray]:
    """Each layer's outputs over ``x`` averaged over space: conv (n, C, h, w) -> (n, C)."""
    x = _batch(x)
    out: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    with model_lock(model), restore_mode(model):
        model.eval()
        for start in range(0, len(x), max(1, batch)):
            with capture(model, layers) as acts:
                _logits(model, x[start : start + batch].to(_device(model)))
            for name in layers:
                a = acts[name].float().cpu()
                out[name].append((a.mean(dim=(2, 3)) if a.dim() == 4 else a.flatten(1)).numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}
