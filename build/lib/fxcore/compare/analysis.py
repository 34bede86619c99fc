"""Experiment-level analysis: the one call each CLI command and app page makes.

Glues the run store to the numerics in ``stats``, ``similarity`` and ``activations``. The expensive
measures (weight dynamics, CKA, attention localisation) are cached as JSON next to the experiment in
``<experiment>/.fxcore-cache/``, keyed by the parameters and by every epoch file's size and mtime,
so a changed or re-trained run is never served stale numbers.

Torch, Captum and the datasets are imported by the functions that run models, so the weight
statistics (``stats``, the Weight statistics page) load numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fxcore.core.steps import quiet
from fxcore.data.inputs import capabilities
from fxcore.explain.layers import cam_layer, layer_names
from fxcore.measures.similarity import MinibatchCKA, region_shares, weight_dynamics
from fxcore.measures.stats import layout_2d, mean_var, pool_to_budget
from fxcore.store.cache import cached, layers_param
from fxcore.store.checkpoints import CheckpointError
from fxcore.store.probeset import probe_set
from fxcore.store.runs import Experiment, Run, common_epochs
from fxcore.store.select import epoch_span, pick_runs

if TYPE_CHECKING:
    import torch
    from torch import nn


# ---------------------------------------------------------------- weights


def run_mean_var(run: Run, key: str, lo: int | None = None, hi: int | None = None):
    """Per-weight mean and population variance of ``key`` over the run's epochs lo..hi."""
    eps = epoch_span([run], lo, hi)
    if key not in run.shapes:
        raise CheckpointError(f"run {run.name} has no weight tensor {key!r}")
    return mean_var([run.epoch_path(e) for e in eps], key)


@dataclass
class WeightMaps:
    """Display maps for one weight tensor across runs (pooled to the budget, one shared block)."""

    key: str
    shape: tuple[int, ...]
    epochs: list[int]
    block: tuple[int, int]  # rows x cols of weights averaged into one displayed cell
    mean: dict[str, np.ndarray]  # run -> 2-D map
    var: dict[str, np.ndarray]


def weight_maps(
    runs: Sequence[Run],
    key: str,
    lo: int | None = None,
    hi: int | None = None,
    budget: tuple[int, int] = (512, 512),
    mode: str = "mean",
    stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> WeightMaps:
    """Mean/variance maps of ``key`` for each run plus ``"difference"`` (first minus second run).

    ``stats`` may hold precomputed ``run_mean_var`` results by run name (the app caches them).
    """
    eps = epoch_span(runs, lo, hi)
    means, variances, block = {}, {}, (1, 1)
    for run in runs:
        mean, var = (
            stats[run.name] if stats and run.name in stats else run_mean_var(run, key, lo, hi)
        )
        means[run.name], variances[run.name] = layout_2d(mean), layout_2d(var)
    if len(runs) >= 2:
        a, b = runs[0].name, runs[1].name
        means["difference"] = means[a] - means[b]
        variances["difference"] = variances[a] - variances[b]
    for d in (means, variances):
        for name, m in d.items():
            d[name], block = pool_to_budget(m, budget, mode)
    return WeightMaps(key, tuple(runs[0].shapes[key]), eps, block, means, variances)


def dynamics(exp: Experiment, runs: Sequence[Run], keys: Sequence[str] | None = None) -> dict:
    """Per weight tensor and epoch: drift from init, update size, cross-model cosine (cached)."""
    a, b = (runs[0], runs[1]) if len(runs) > 1 else (runs[0], runs[0])
    eps = common_epochs([a, b])
    keys = list(keys or [k for k, s in a.shapes.items() if k.endswith("weight") and len(s) >= 2])
    params = {"keys": keys, "runs": [a.name, b.name], "v": 2}  # v2: update geometry

    def compute() -> dict:
        res = weight_dynamics([a.epoch_path(e) for e in eps], [b.epoch_path(e) for e in eps], keys)
        return {"epochs": eps, "runs": [a.name, b.name], "layers": res}

    return cached(exp, "dynamics", [a, b], eps, params, compute)


# ---------------------------------------------------------------- activations


def _cka_epoch(ma: nn.Module, mb: nn.Module, x: torch.Tensor, layers: list[str], batch: int):
    import torch

    from fxcore.explain.activations import capture

    accs = {name: MinibatchCKA() for name in layers}
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(next(ma.parameters()).device)
        if len(xb) < 4:  # the unbiased HSIC needs n >= 4
            continue
        with torch.no_grad(), capture(ma, layers) as acts_a, capture(mb, layers) as acts_b:
            ma(xb)
            mb(xb)
        for name in layers:  # HSIC in float64 on the host, wherever the models ran
            fa, fb = (acts[name].flatten(1).cpu().double().numpy() for acts in (acts_a, acts_b))
            accs[name].update(fa, fb)
    return {name: acc.value() for name, acc in accs.items()}


def cka(
    exp: Experiment,
    runs: Sequence[Run],
    n_probe: int = 256,
    batch: int = 32,
    epochs: Sequence[int] | None = None,
    n_resamples: int = 200,
    seed: int = 0,
    device: str = "cpu",
    tick: Callable[[str], None] = quiet,
    layers: Sequence[str] | None = None,
) -> dict:
    """Minibatch linear CKA between the two runs' activations per layer and epoch (cached).

    ``layers`` holds the values; ``low``/``high`` their seeded half-sampling interval over the probe
    images (``n_resamples`` resamples, :data:`~fxcore.measures.uncertainty.LEVEL`), ``null`` the CKA of a
    permuted pairing of the images (~0: a check on the estimator). The argument ``layers`` limits
    the layers measured (default: every conv and linear layer); models run on ``device``, the HSIC
    and its intervals in float64 on the host; ``tick`` is called after each epoch.
    """
    a, b = runs[0], runs[1]
    eps = list(epochs) if epochs is not None else common_epochs([a, b])
    params = {
        "n_probe": n_probe,
        "batch": batch,
        "runs": [a.name, b.name],
        "n_resamples": n_resamples,
        "seed": seed,
        "ci": "half-sampling",
        **layers_param(layers),
    }

    def compute() -> dict:
        from fxcore.explain.activations import layer_grams
        from fxcore.measures.uncertainty import LEVEL, half_sample_ci, minibatch_cka, permuted_null

        x, _ = probe_set(exp, n_probe)
        out: dict[str, dict[str, list[float]]] = {k: {} for k in ("layers", "low", "high", "null")}
        for e in eps:
            ma, mb = a.build_model(e, device), b.build_model(e, device)
            names = [n for n in layer_names(ma) if not layers or n in layers]
            values = _cka_epoch(ma, mb, x, names, batch)
            ga, gb = layer_grams(ma, x, names, batch), layer_grams(mb, x, names, batch)
            for name in names:
                k, ll = ga[name], gb[name]
                low, high = half_sample_ci(
                    lambda i, k=k, ll=ll: minibatch_cka(k, ll, batch, i),
                    len(x),
                    values[name],
                    n_resamples,
                    seed,
                )
                row = {
                    "layers": values[name],
                    "low": low,
                    "high": high,
                    "null": permuted_null(k, ll, batch, seed),
                }
                for key, v in row.items():
                    out[key].setdefault(name, []).append(v)
            tick(f"CKA {a.name}/{b.name} epoch {e}")
        return {
            "epochs": eps,
            "runs": [a.name, b.name],
            "n_probe": int(len(x)),
            **out,
            "n_resamples": n_resamples,
            "level": LEVEL,
        }

    return cached(exp, "cka", [a, b], eps, params, compute)


def localisation(
    exp: Experiment,
    runs: Sequence[Run],
    n_probe: int = 128,
    epochs: Sequence[int] | None = None,
    n_resamples: int = 200,
    seed: int = 0,
    device: str = "cpu",
    tick: Callable[[str], None] = quiet,
) -> dict:
    """Share of each model's Grad-CAM inside each face region, per epoch, over a probe set.

    The CAM shows the evidence FOR each run's attribute (positive logit) at :func:`cam_layer`.
    ``ci`` holds each share's seeded bootstrap interval over the probe images as [low, high].
    Models run on ``device``; ``tick`` is called after each run x epoch.
    """
    eps = list(epochs) if epochs is not None else common_epochs(runs)
    params = {
        "n_probe": n_probe,
        "runs": [r.name for r in runs],
        "n_resamples": n_resamples,
        "seed": seed,
    }

    def compute() -> dict:
        from fxcore.explain.gradcam import grad_cam_batch
        from fxcore.measures.uncertainty import LEVEL, mean_ci

        x, masks = probe_set(exp, n_probe)
        if not masks:
            return {"epochs": eps, "regions": [], "runs": {}, "note": "dataset has no face regions"}
        shares: dict[str, dict[str, list[float]]] = {}
        ci: dict[str, dict[str, list[list[float]]]] = {}
        for run in runs:
            for e in eps:
                model = run.build_model(e, device)
                cams = grad_cam_batch(model, x, cam_layer(model, x.shape[-1]), "positive")
                for region, per_image in region_shares(cams, masks).items():
                    est = mean_ci(per_image, n_resamples, seed)
                    shares.setdefault(run.name, {}).setdefault(region, []).append(est.value)
                    ci.setdefault(run.name, {}).setdefault(region, []).append([est.low, est.high])
                tick(f"attention {run.name} epoch {e}")
        return {
            "epochs": eps,
            "regions": list(masks),
            # A uniform map's share equals the region's area: the baseline to read shares against.
            "area": {name: float(np.mean(m)) for name, m in masks.items()},
            "n_probe": int(len(x)),
            "runs": shares,
            "ci": ci,
            "level": LEVEL,
            "layer": cam_layer(runs[0].build_model(eps[0]), x.shape[-1]),
        }

    return cached(exp, "localisation", runs, eps, params, compute)


def compare(exp: Experiment, run_names: Sequence[str] | None = None, n_probe: int = 128) -> dict:
    """Everything ``compare --json`` prints: dynamics, CKA and localisation for two runs."""
    runs = pick_runs(exp, run_names)
    result: dict[str, Any] = {
        "experiment": exp.name,
        "runs": [r.name for r in runs],
        "dynamics": dynamics(exp, runs),
    }
    can = capabilities(exp.info)
    if len(runs) >= 2 and can.probe_images:
        result["cka"] = cka(exp, runs, n_probe=n_probe)
    if can.face_regions:
        result["localisation"] = localisation(exp, runs, n_probe=n_probe)
    return result


# ---------------------------------------------------------------- one image


@dataclass
class ModelView:
    """What one model makes of one image at one layer (raw maps: shared scales are up to the UI)."""

    run: str
    attribute: str
    probability: float
    logit: float
    channel_mean: np.ndarray  # (S, S) channel-mean activation upsampled to the input
    top_channels: list[int]
    top_maps: np.ndarray  # (k, S, S)
    cam_positive: np.ndarray  # (S, S) Grad-CAM: evidence FOR the attribute
    cam_negative: np.ndarray  # (S, S) Grad-CAM: evidence AGAINST it


def explain(
    models: Sequence[tuple[str, str, nn.Module]], x: torch.Tensor, layer: str, top_k: int = 8
) -> list[ModelView]:
    """Feature maps and Grad-CAM of each (run, attribute, model) for the image ``x`` (1, C, S, S).

    Grad-CAM is taken at ``layer`` when it is a conv layer, else at :func:`cam_layer`. One
    forward and one backward per model (:func:`~fxcore.explain.gradcam.explain_image`).
    """
    from torch import nn

    from fxcore.explain.gradcam import explain_image

    views = []
    for run, attribute, model in models:
        module = dict(model.named_modules()).get(layer)
        cam_at = layer if isinstance(module, nn.Conv2d) else cam_layer(model, x.shape[-1])
        e = explain_image(model, x, layer, cam_at, top_k=top_k)
        fm = e.maps
        views.append(
            ModelView(
                run,
                attribute,
                float(np.ravel(fm.probability)[0]),
                float(np.ravel(fm.logit)[0]),
                fm.channel_mean_up,
                [int(c) for c in fm.top_channels],
                fm.top_maps_up,
                e.cam_positive,
                e.cam_negative,
            )
        )
    return views
