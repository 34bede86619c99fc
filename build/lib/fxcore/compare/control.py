"""Trustworthy comparisons: every pairwise measure for L1 vs L2 and for L1 vs its control.

A control run learns the same attribute as L1 from the same init with its own batch order
(``train --controls N``): how different two runs of the *same* task are. Each measure of the pair
(weight dynamics and update geometry, CKA, localisation shares) is repeated for L1 vs control and
comes with seeded bootstrap intervals over the probe images; accuracy on the probe images and the
cross-task linear probes are given per model. Everything is cached like :mod:`fxcore.compare.analysis`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fxcore.compare import analysis
from fxcore.compare.plan import ComparePlan, plan_compare
from fxcore.core.steps import Progress, Steps, quiet
from fxcore.explain.activations import _logits, pooled_activations
from fxcore.explain.attribution import INPUT_METHOD, attribution_maps, sanity_check, sources
from fxcore.explain.layers import layer_names
from fxcore.measures.probes import probe_grid
from fxcore.measures.similarity import region_shares
from fxcore.measures.uncertainty import LEVEL, mean_ci
from fxcore.store.cache import cached, layers_param
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run, common_epochs

Tick = Callable[[str], None]


def _column(attributes: Sequence[str], run: Run) -> int:
    names = [a.lower() for a in attributes]
    return names.index(run.attribute.lower()) if run.attribute.lower() in names else 0


@torch.no_grad()
def _correct(model: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> np.ndarray:
    out = _logits(model, x.to(next(model.parameters()).device))  # (N, K)
    pred = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(1)
    return (pred.cpu().numpy() == y.astype(np.int64)).astype(np.float64)


def accuracy(
    exp: Experiment,
    runs: Sequence[Run],
    n_probe: int = 256,
    n_resamples: int = 200,
    seed: int = 0,
    epochs: Sequence[int] | None = None,
    device: str = "cpu",
    tick: Tick = quiet,
) -> dict:
    """Each run's accuracy on its own attribute over the probe images, per epoch, with its CI.

    ``runs[name]`` is a list of ``[accuracy, low, high]`` per epoch.
    """
    eps = list(epochs) if epochs is not None else common_epochs(runs)
    params = {
        "n_probe": n_probe,
        "runs": [r.name for r in runs],
        "n_resamples": n_resamples,
        "seed": seed,
    }

    def compute() -> dict:
        data = probe_data(exp, n_probe)
        out: dict[str, list[list[float]]] = {}
        for run in runs:
            y = data.labels[:, _column(data.attributes, run)]
            for e in eps:
                est = mean_ci(_correct(run.build_model(e, device), data.x, y), n_resamples, seed)
                out.setdefault(run.name, []).append([est.value, est.low, est.high])
                tick(f"accuracy {run.name} epoch {e}")
        return {"epochs": eps, "n_probe": int(len(data.x)), "runs": out, "level": LEVEL}

    return cached(exp, "accuracy", runs, eps, params, compute)


def probes(
    exp: Experiment,
    runs: Sequence[Run],
    n_probe: int = 256,
    n_resamples: int = 200,
    seed: int = 0,
    epochs: Sequence[int] | None = None,
    device: str = "cpu",
    tick: Tick = quiet,
    layers: Sequence[str] | None = None,
) -> dict:
    """Cross-task linear probes: per run, attribute, layer and epoch, held-out accuracy and CI.

    ``runs[run][attribute][layer]`` is a list of ``[accuracy, low, high]`` per epoch; the
    features are each layer's spatially pooled outputs (:func:`fxcore.measures.probes.probe_grid`).
    """
    eps = list(epochs) if epochs is not None else common_epochs(runs)
    params = {
        "n_probe": n_probe,
        "runs": [r.name for r in runs],
        "n_resamples": n_resamples,
        "seed": seed,
        **layers_param(layers),
    }

    def compute() -> dict:
        data = probe_data(exp, n_probe)
        out: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
        names: list[str] = []
        for run in runs:
            for e in eps:
                model = run.build_model(e, device)
                names = [n for n in layer_names(model) if not layers or n in layers]
                feats = pooled_activations(model, data.x, names)
                grid = probe_grid(feats, data.labels, data.attributes, seed, n_resamples)
                for attr, per_layer in grid.items():
                    for layer, row in per_layer.items():
                        out.setdefault(run.name, {}).setdefault(attr, {}).setdefault(
                            layer, []
                        ).append(row)
                tick(f"probes {run.name} epoch {e}")
        # Chance level to read the accuracies against: the majority class share.
        chance = {
            a: float(max(np.mean(data.labels[:, k] == v) for v in np.unique(data.labels[:, k])))
            for k, a in enumerate(data.attributes)
        }
        return {
            "epochs": eps,
            "attributes": data.attributes,
            "layers": names,
            "n_probe": int(len(data.x)),
            "chance": chance,
            "runs": out,
            "level": LEVEL,
        }

    return cached(exp, "probes", runs, eps, params, compute)


def _mean_map(maps: np.ndarray, side: int) -> list[list[float]]:
    """Mean over images of each map scaled to sum 1 (where each image's energy lies), pooled to
    ``side`` x ``side``; zero where no image has energy."""
    total = maps.sum(axis=(1, 2), keepdims=True)
    keep = total[:, 0, 0] > 0
    if not keep.any():
        return np.zeros((side, side)).tolist()
    mean = torch.from_numpy((maps[keep] / total[keep]).mean(axis=0))[None, None]
    pooled = torch.nn.functional.adaptive_avg_pool2d(mean.double(), side)[0, 0]
    return np.round(pooled.numpy() * (maps.shape[1] * maps.shape[2]), 5).tolist()  # 1 = uniform


def attribution(
    exp: Experiment,
    runs: Sequence[Run],
    n_probe: int = 256,
    n_resamples: int = 200,
    seed: int = 0,
    epochs: Sequence[int] | None = None,
    map_side: int = 32,
    n_sanity: int = 32,
    device: str = "cpu",
    tick: Tick = quiet,
    layers: Sequence[str] | None = None,
) -> dict:
    """Region shares for every attribution source (Grad-CAM at each block, the input method) per
    run, epoch and region, for images with and without the run's attribute, with CIs; the mean
    maps behind them; and the cascading-randomisation check of each source at the last epoch.

    ``shares[run][source][group][region]``: per epoch ``[share, low, high]``, group "with" /
    "without". ``maps[run][source][group]``: per epoch a (side, side) mean map of each image's
    energy distribution (1 = uniform). ``sanity[run][source]``: rank correlations and ``passes``.
    """
    eps = list(epochs) if epochs is not None else common_epochs(runs)
    params = {
        "n_probe": n_probe,
        "runs": [r.name for r in runs],
        "n_resamples": n_resamples,
        "seed": seed,
        "map_side": map_side,
        "n_sanity": n_sanity,
        **layers_param(layers),
    }

    def chosen(model: torch.nn.Module) -> list[str]:
        """Every source, or (with ``layers``) the input method and Grad-CAM at those layers."""
        keep = {INPUT_METHOD, *(f"gradcam:{n}" for n in layers or ())}
        return [n for n in sources(model) if not layers or n in keep]

    def compute() -> dict:
        data = probe_data(exp, n_probe)
        if not data.masks:
            return {
                "epochs": eps,
                "regions": [],
                "shares": {},
                "note": "dataset has no face regions",
            }
        side = min(map_side, data.x.shape[-1])
        shares: dict[str, Any] = {}
        maps_out: dict[str, Any] = {}
        sanity: dict[str, Any] = {}
        names: list[str] = []
        for run in runs:
            y = data.labels[:, _column(data.attributes, run)]
            groups = {"with": y == 1, "without": y == 0}
            for e in eps:
                model = run.build_model(e, device)
                names = chosen(model)
                for src, m in attribution_maps(model, data.x, names, seed=seed).items():
                    per = region_shares(m, data.masks)
                    for g, sel in groups.items():
                        for region, values in per.items():
                            est = mean_ci(values[sel], n_resamples, seed)
                            shares.setdefault(run.name, {}).setdefault(src, {}).setdefault(
                                g, {}
                            ).setdefault(region, []).append([est.value, est.low, est.high])
                        maps_out.setdefault(run.name, {}).setdefault(src, {}).setdefault(
                            g, []
                        ).append(_mean_map(m[sel], side))
                tick(f"attribution {run.name} epoch {e}")
            sanity[run.name] = sanity_check(
                run.build_model(eps[-1], device), data.x[:n_sanity], names, seed
            )
            tick(f"sanity check {run.name}")
        return {
            "epochs": eps,
            "sources": names,
            "regions": list(data.masks),
            "regions_from": data.regions_from,
            "n_probe": int(len(data.x)),
            "area": {k: float(np.mean(v)) for k, v in data.masks.items()},
            "shares": shares,
            "maps": maps_out,
            "map_side": side,
            "sanity": sanity,
            # Where each region lies on average (for drawing it over the mean maps).
            "region_maps": {
                k: _mean_map(v.astype(np.float64), side)
                for k, v in data.masks.items()
                if v.ndim == 3 and v.any()
            },
            "level": LEVEL,
        }

    return cached(exp, "attribution", runs, eps, params, compute)


def _pair(
    exp: Experiment,
    part: str,
    pair: list[Run],
    steps: Steps,
    plan: ComparePlan,
    kw: dict[str, Any],
) -> dict[str, Any]:
    """Weight dynamics, CKA and attention shares of one pair, each reported to ``steps``."""
    out: dict[str, Any] = {"runs": [r.name for r in pair]}
    out["dynamics"] = steps.measure(
        1, "weight dynamics", lambda _tick: analysis.dynamics(exp, pair)
    )
    if (part, "cka") in plan.steps:
        out["cka"] = steps.measure(
            plan.steps[(part, "cka")],
            "CKA",
            lambda tick: analysis.cka(exp, pair, tick=tick, layers=plan.layers, **kw),
        )
    if (part, "localisation") in plan.steps:
        out["localisation"] = steps.measure(
            plan.steps[(part, "localisation")],
            "attention shares",
            lambda tick: analysis.localisation(exp, pair, tick=tick, **kw),
        )
    return out


def compare(
    exp: Experiment,
    run_names: Sequence[str] | None = None,
    n_probe: int = 256,
    n_resamples: int = 200,
    seed: int = 0,
    *,
    epochs: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> dict:
    """Everything ``compare --json`` prints.

    Top level: ``dynamics``, ``cka``, ``localisation`` of L1 vs L2. ``control``: the
    same for L1 vs its first control run (absent when the experiment has none). ``accuracy`` and
    ``probes`` cover L1, L2 and the control. Intervals: ``low``/``high`` or ``ci`` entries.

    ``epochs`` and ``layers`` limit the work (default: every common epoch, every conv and linear
    layer; weight dynamics always cover all of them); ``limits`` in the result says which were
    used. Models run on ``device`` (:func:`fxcore.core.devices.resolve_device`); the statistics stay
    on the host in float64. ``progress(done, total, label)`` is called after each step of
    :func:`fxcore.compare.plan.plan_compare`'s plan (one run x epoch of one measure).
    """
    plan = plan_compare(exp, run_names, n_probe, epochs, layers)
    steps = Steps(plan.total, progress)
    runs, control, everyone = plan.runs, plan.control, plan.everyone
    kw: dict[str, Any] = {
        "n_probe": n_probe,
        "n_resamples": n_resamples,
        "seed": seed,
        "epochs": plan.epochs,
        "device": device,
    }
    result: dict[str, Any] = {
        "experiment": exp.name,
        "runs": [r.name for r in runs],
        "n_resamples": n_resamples,
        "seed": seed,
        "level": LEVEL,
    }
    if plan.epochs is not None or plan.layers:
        result["limits"] = {"epochs": plan.epochs, "layers": plan.layers}
    if len(runs) >= 2:
        result.update(_pair(exp, "pair", runs[:2], steps, plan, kw))
    else:
        result["dynamics"] = steps.measure(
            1, "weight dynamics", lambda _tick: analysis.dynamics(exp, runs)
        )
    if control is not None:
        result["control"] = _pair(exp, "control", [runs[0], control], steps, plan, kw)
    per_model = {
        "accuracy": lambda tick: accuracy(exp, everyone, tick=tick, **kw),
        "probes": lambda tick: probes(exp, everyone, tick=tick, layers=plan.layers, **kw),
        "attribution": lambda tick: attribution(exp, everyone, tick=tick, layers=plan.layers, **kw),
    }
    for measure, run in per_model.items():
        if ("all", measure) in plan.steps:
            result[measure] = steps.measure(plan.steps[("all", measure)], measure, run)
    return result
