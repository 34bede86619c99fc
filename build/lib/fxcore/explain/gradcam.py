"""Grad-CAM of one layer (captum's ``LayerGradCam``), and the fused pass the upload view uses.

Same safety rules as :mod:`fxcore.explain.activations`: each call takes the model's lock, runs it in
``eval()``, restores every train/eval flag and ``requires_grad``, and removes its hooks on errors.
Sign convention for a single-logit head: ``"positive"`` explains the logit (evidence FOR the
attribute), ``"negative"`` explains ``-logit`` (evidence AGAINST it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from fxcore.explain.activations import (
    ActivationError,
    FeatureMaps,
    _batch,
    _device,
    _first,
    _logits,
    _module,
    _not_spatial,
    model_lock,
    restore_mode,
    summarise,
)

Target = str | int


def explained_score(out: torch.Tensor, target: Target) -> torch.Tensor:
    """Column ``(B, 1)`` of the logits ``out`` ``(B, K)`` that Grad-CAM explains for ``target``.

    Single logit: "positive" -> logit, "negative" -> -logit; int 1/0 mean the same; "predicted"
    -> |logit|, i.e. the evidence for the class the model chose for each image.
    Class logits: int c -> logit c; "positive"/"negative" -> +/- logit of the predicted class.
    """
    if out.shape[1] == 1:
        if target == "predicted":  # |logit|: the evidence for whichever class was predicted
            return out.abs()
        if isinstance(target, int) and target not in (0, 1):
            raise ActivationError(f"a single-logit model has classes 0 and 1, not {target}")
        sign = 1.0 if target in ("positive", 1) else -1.0
        return sign * out
    if isinstance(target, int):
        if not 0 <= target < out.shape[1]:
            raise ActivationError(f"class index {target} outside 0..{out.shape[1] - 1}")
        return out[:, target : target + 1]
    picked = out.gather(1, out.argmax(dim=1, keepdim=True))  # (B, 1) predicted-class logit
    return -picked if target == "negative" else picked


def _signed_maps(raw: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """ReLU(raw) and ReLU(-raw) of a signed CAM ``(1, 1, h, w)``, bilinear to ``size``."""
    pos, neg = (
        LayerAttribution.interpolate(F.relu(r), size, interpolate_mode="bilinear")
        for r in (raw, -raw)
    )
    return pos[0, 0].cpu().numpy(), neg[0, 0].cpu().numpy()


def _explained_output(model: nn.Module, target: Target) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward function whose column 0 is :func:`explained_score` (captum target=0)."""
    is_index = isinstance(target, int) and not isinstance(target, bool)
    if not is_index and target not in ("positive", "negative", "predicted"):
        raise ActivationError(
            f"target must be 'positive', 'negative' or a class index, not {target!r}"
        )

    def forward(x: torch.Tensor) -> torch.Tensor:
        return explained_score(_logits(model, x), target)

    return forward


def grad_cam_batch(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    target: Target = "positive",
    batch_size: int = 32,
) -> np.ndarray:
    """Grad-CAM maps ``(N, S, S)`` (raw, >= 0) of ``x`` ``(N, C, S, S)`` at ``layer``.

    Captum's ``LayerGradCam``: weights = spatial mean of d(score)/d(activation), map =
    ReLU(sum_c w_c A_c), bilinearly upsampled to the input size. Sign convention for a
    single-logit head: ``target="positive"`` explains the logit, i.e. shows evidence FOR the
    attribute; ``"negative"`` explains ``-logit``, i.e. evidence AGAINST it. For class logits,
    an int picks the class and "positive"/"negative" use the predicted class of each image.
    """
    x = _batch(x)
    module = _module(model, layer)
    size = (x.shape[-2], x.shape[-1])
    device = _device(model)
    chunks: list[np.ndarray] = []
    with model_lock(model), restore_mode(model):
        model.eval()
        cam = LayerGradCam(_explained_output(model, target), module)
        step = max(1, batch_size)
        for start in range(0, x.shape[0], step):
            xb = x[start : start + step].to(device)
            attr = cam.attribute(xb, target=0, relu_attributions=True)
            if not isinstance(attr, torch.Tensor) or attr.dim() != 4:
                raise _not_spatial(model, layer, tuple(getattr(attr, "shape", ())))
            up = LayerAttribution.interpolate(attr.detach(), size, interpolate_mode="bilinear")
            chunks.append(up[:, 0].float().cpu().numpy())  # (b, S, S)
    if not chunks:
        return np.zeros((0, *size), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def grad_cam(
    model: nn.Module, x: torch.Tensor, layer: str, target: Target = "positive"
) -> np.ndarray:
    """Grad-CAM map ``(S, S)`` of the first image of ``x``; see :func:`grad_cam_batch`.

    Positive target = evidence FOR the attribute (gradient of the logit); negative target =
    evidence AGAINST it (gradient of -logit). Raw values, not normalised.
    """
    return grad_cam_batch(model, _batch(x)[:1], layer, target=target)[0]


def grad_cam_both(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative Grad-CAM ``(S, S)`` of the first image from ONE backward pass.

    The gradient of ``-score`` is minus the gradient of ``score``, so the negative map's channel
    weights are the positive map's negated: ``neg = ReLU(-sum_c w_c A_c)``. Equal to calling
    :func:`grad_cam` with ``"positive"`` and ``"negative"``, at half the cost.
    """
    x = _batch(x)[:1]
    module = _module(model, layer)
    size = (x.shape[-2], x.shape[-1])
    with model_lock(model), restore_mode(model):
        model.eval()
        cam = LayerGradCam(_explained_output(model, "positive"), module)
        raw = cam.attribute(x.to(_device(model)), target=0, relu_attributions=False)
        if not isinstance(raw, torch.Tensor) or raw.dim() != 4:
            raise _not_spatial(model, layer, tuple(getattr(raw, "shape", ())))
    return _signed_maps(raw.detach().float(), size)  # raw: (1, 1, h, w) signed sum_c w_c A_c


@dataclass
class ImageExplanation:
    """One model on one image: a layer's feature maps and the +/- Grad-CAM at ``cam_layer``."""

    maps: FeatureMaps
    cam_layer: str
    cam_positive: np.ndarray  # (S, S) evidence FOR the attribute (predicted class if K > 1)
    cam_negative: np.ndarray  # (S, S) evidence AGAINST it


def explain_image(
    model: nn.Module, x: torch.Tensor, layer: str, cam_at: str, top_k: int = 8
) -> ImageExplanation:
    """Feature maps of ``layer`` and both Grad-CAM maps at ``cam_at`` from ONE forward pass.

    Equals :func:`~fxcore.explain.activations.feature_maps` plus :func:`grad_cam_both` (tested) at about
    half their cost: the forward that feeds the feature maps also builds the graph, and that graph
    starts at ``cam_at``'s output (parameters are frozen for the call), so nothing before the
    Grad-CAM layer is recorded and the backward stops there.
    """
    x = _batch(x)[:1].to(_device(model))
    size = (x.shape[-2], x.shape[-1])
    shown_module, cam_module = _module(model, layer), _module(model, cam_at)  # validate first
    store: dict[str, torch.Tensor] = {}

    def keep_shown(_m: nn.Module, _i: object, out: object) -> None:
        t = _first(out)
        if isinstance(t, torch.Tensor):
            store["shown"] = t.detach().clone()  # clone: a following in-place ReLU rewrites it

    def graph_root(_m: nn.Module, _i: object, out: object) -> object:
        if not isinstance(out, torch.Tensor) or out.dim() != 4:  # e.g. a tuple or a (B, F) output
            raise _not_spatial(model, cam_at, tuple(getattr(_first(out), "shape", ())))
        root = out.detach().requires_grad_(True)  # (1, C, h, w) the graph begins here
        store["cam"] = root
        return root.clone()  # the rest of the net (in-place ReLU included) works on a copy

    handles = []
    with model_lock(model), restore_mode(model), torch.enable_grad():
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # no parameter gradients: restore_mode puts the flags back
        try:
            handles.append(shown_module.register_forward_hook(keep_shown))
            handles.append(cam_module.register_forward_hook(graph_root))
            out = _logits(model, x)  # (1, K)
        finally:
            for h in handles:
                h.remove()
        for key, name in (("shown", layer), ("cam", cam_at)):
            if key not in store:
                raise ActivationError(f"layer {name!r} did not run in the model's forward pass")
        shown = store["shown"]
        if shown.dim() != 4:
            raise _not_spatial(model, layer, tuple(shown.shape))
        score = explained_score(out, "positive")  # (1, 1), as grad_cam_both explains
        (grad,) = torch.autograd.grad(score.sum(), store["cam"])  # (1, C, h, w)
    acts = store["cam"].detach()
    raw = (grad.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True).float()  # (1,1,h,w)
    pos, neg = _signed_maps(raw, size)
    return ImageExplanation(
        maps=summarise(layer, shown[0], out[0].detach(), size, top_k),
        cam_layer=cam_at,
        cam_positive=pos,
        cam_negative=neg,
    )
