"""Attribution that does not hang on one layer: Grad-CAM at every block, one input-level method,
and the cascading-randomisation sanity check (Adebayo et al. 2018).

Sources are named ``"gradcam:<layer>"`` (Grad-CAM at a conv layer, all of them from one backward
pass, equal to :func:`fxcore.explain.gradcam.grad_cam_batch`, tested) and ``"smoothgrad-ixg"`` (Captum's
``NoiseTunnel`` over ``InputXGradient``: input x gradient averaged over noisy copies, summed over
colour channels). Every map is evidence FOR the attribute (positive logit), ReLU'd, so the
energy-based pointing game (Wang et al. 2020) applies: the share of a map's energy in a region.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import InputXGradient, LayerAttribution, NoiseTunnel
from scipy.stats import spearmanr
from torch import nn

from fxcore.explain.activations import (
    _batch,
    _device,
    _module,
    _not_spatial,
    model_lock,
    restore_mode,
)
from fxcore.explain.gradcam import _explained_output

INPUT_METHOD = "smoothgrad-ixg"
NOISE_SAMPLES = 8
NOISE_STD = 0.15  # in normalised input units (images span about 4 of them)


def block_convs(model: nn.Module) -> list[str]:
    """The last conv layer of every block (a block ends at a max-pool, or at the features' end)."""
    out, last = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last = name
        elif isinstance(module, nn.MaxPool2d | nn.AdaptiveAvgPool2d) and last:
            out.append(last)
            last = None
    if last:
        out.append(last)
    return out


def sources(model: nn.Module) -> list[str]:
    """Every attribution source for ``model``: Grad-CAM at each block's last conv, then the
    input-level method."""
    return [*(f"gradcam:{name}" for name in block_convs(model)), INPUT_METHOD]


def _gradcams(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Grad-CAM (B, S, S) at each layer from one forward and one backward pass."""
    store: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> torch.Tensor:
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise _not_spatial(model, name, tuple(getattr(out, "shape", ())))
            out.retain_grad()
            store[name] = out
            return out.clone()  # the rest of the net (in-place ReLU included) works on a copy

        return hook

    try:
        for name in layers:
            handles.append(_module(model, name).register_forward_hook(keep(name)))
        # Parameters are frozen: the input carries the graph so the activations get gradients.
        score = _explained_output(model, "positive")(x.clone().requires_grad_(True))  # (B, 1)
    finally:
        for h in handles:
            h.remove()
    score.sum().backward()
    size = (x.shape[-2], x.shape[-1])
    maps = {}
    for name in layers:
        acts, grad = store[name], store[name].grad
        raw = (grad.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True)
        up = LayerAttribution.interpolate(torch.relu(raw.detach()), size, "bilinear")
        maps[name] = up[:, 0].float().cpu()
    return maps


def attribution_maps(
    model: nn.Module, x: torch.Tensor, names: Sequence[str], batch: int = 32, seed: int = 0
) -> dict[str, np.ndarray]:
    """Maps (N, S, S), non-negative, for each source in ``names`` (see :func:`sources`).

    Seeded: the input method's noise is drawn from ``torch.manual_seed(seed)``.
    """
    x = _batch(x)
    layers = [n.removeprefix("gradcam:") for n in names if n.startswith("gradcam:")]
    unknown = [n for n in names if not n.startswith("gradcam:") and n != INPUT_METHOD]
    if unknown:
        raise ValueError(
            f"unknown attribution source(s) {unknown}; use gradcam:<layer> or {INPUT_METHOD}"
        )
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    device = _device(model)
    with model_lock(model), restore_mode(model), torch.random.fork_rng():
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # only activation / input gradients are needed
        torch.manual_seed(seed)
        for start in range(0, len(x), max(1, batch)):
            xb = x[start : start + batch].to(device)
            if layers:
                with torch.enable_grad():
                    for layer, m in _gradcams(model, xb, layers).items():
                        parts[f"gradcam:{layer}"].append(m)
            if INPUT_METHOD in names:
                nt = NoiseTunnel(InputXGradient(_explained_output(model, "positive")))
                attr = nt.attribute(
                    xb.clone().requires_grad_(True),
                    nt_type="smoothgrad",
                    nt_samples=NOISE_SAMPLES,
                    stdevs=NOISE_STD,
                    target=0,
                )
                parts[INPUT_METHOD].append(torch.relu(attr.detach().sum(dim=1)).float().cpu())
    return {n: torch.cat(p).numpy() for n, p in parts.items()}


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of Spearman's rank correlation of two map stacks (N, S, S).

    Images whose original map ``a`` is constant (nothing to preserve) are left out; a constant map
    in ``b`` against a varying one in ``a`` counts 0 (the structure is gone). NaN if none is left.
    """
    out = []
    for u, v in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        if u.std() == 0:
            continue
        r = spearmanr(u, v).statistic if v.std() > 0 else 0.0
        out.append(float(r) if np.isfinite(r) else 0.0)
    return float(np.mean(out)) if out else float("nan")


def randomisation_steps(model: nn.Module) -> list[list[str]]:
    """Cascading order, from the top: the classifier's layers, then each conv block downwards."""
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    blocks, current = [], []
    ends = set(block_convs(model))
    for name in convs:
        current.append(name)
        if name in ends:
            blocks.append(current)
            current = []
    return [linear[::-1], *(b for b in reversed(blocks))]


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    names: Sequence[str],
    seed: int = 0,
    threshold: float = 0.5,
    steps: int = 2,
) -> dict[str, dict]:
    """Cascading randomisation: re-initialise the top layers step by step (classifier, then the
    last conv block, ...), recompute each source's maps, and report the rank correlation with the
    original maps after each step. A source passes when it drops below ``threshold`` once the
    first ``steps`` steps are randomised: an explanation that survives scrambling the weights
    does not explain the model (Adebayo et al. 2018).
    """
    original = attribution_maps(model, x, names, seed=seed)
    randomised = copy.deepcopy(model)
    plan = randomisation_steps(model)[:steps]
    out = {n: {"steps": [], "rank_corr": []} for n in names}
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        for step in plan:
            for name in step:
                _module(randomised, name).reset_parameters()
            maps = attribution_maps(randomised, x, names, seed=seed)
            for n in names:
                out[n]["steps"].append(step[0] if len(step) == 1 else f"{step[-1]}..{step[0]}")
                out[n]["rank_corr"].append(_rank_corr(original[n], maps[n]))
    finally:
        torch.random.set_rng_state(gen_state)
    for n in names:
        last = out[n]["rank_corr"][-1] if out[n]["rank_corr"] else float("nan")
        out[n]["passes"] = bool(last < threshold)  # NaN (every original map empty): not passed
    return out


@dataclass(frozen=True)
class Verdict:
    """The randomisation check of one attribution source over several models."""

    source: str
    passes: bool | None  # None: not checked for every model
    rank_corr: dict[str, float]  # model -> rank correlation after the last step
    failed: tuple[str, ...]  # the models it failed for

    @property
    def mark(self) -> str:
        """The mark every front end shows beside the source: ✓, ✗ or ? (not checked)."""
        return {True: "✓", False: "✗"}.get(self.passes, "?")

    @property
    def text(self) -> str:
        if self.passes is None:
            return "? sanity not checked"
        return "✓ sanity" if self.passes else "✗ sanity"


def gradcam_source(layer: str) -> str:
    """The source name of Grad-CAM at ``layer`` (see :func:`sources`)."""
    return f"gradcam:{layer}"


def layer_verdicts(
    sanity: Mapping[str, Mapping[str, Mapping]], names: Sequence[str] | None = None
) -> dict[str, Verdict]:
    """One verdict per source from :func:`sanity_check` results of several models
    (``sanity[model][source]``): a source passes only when it passes for every model, fails when
    it fails for any, and is unchecked (``passes`` None) when a model lacks it."""
    names = (
        list(names)
        if names is not None
        else list(dict.fromkeys(s for r in sanity.values() for s in r))
    )
    out = {}
    for src in names:
        got = {m: per[src] for m, per in sanity.items() if src in per}
        failed = tuple(m for m, r in got.items() if not r.get("passes", False))
        checked = bool(sanity) and len(got) == len(sanity)
        passes = False if failed else (True if checked else None)
        corr = {
            m: float(r["rank_corr"][-1]) if r.get("rank_corr") else float("nan")
            for m, r in got.items()
        }
        out[src] = Verdict(src, passes, corr, failed)
    return out
