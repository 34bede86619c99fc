"""Same basin? The error barrier on the straight line between two runs' weights (Frankle et al. 2020).

At each point ``theta(alpha) = (1 - alpha) theta_A + alpha theta_B`` the model's BatchNorm running
statistics are re-estimated on training images (an interpolated network's activations no longer
match either end's statistics, and stale ones make every midpoint look bad); every point is treated
alike, ends included, so a model against itself has a barrier of exactly 0. The error is taken on
the probe images for A's attribute, and the barrier is
``max_alpha [err(alpha) - ((1 - alpha) err(0) + alpha err(1))]`` (Frankle et al.'s instability),
with a seeded percentile bootstrap over the probe images (``scipy.stats.bootstrap``, the
images resampled jointly for every alpha). A barrier near 0 between L1 and its control: the noise
floor is one linearly connected basin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import bootstrap
from torch import nn

from fxcore.core.errors import CheckpointError, SimilarityError
from fxcore.measures.stitching import correct
from fxcore.measures.uncertainty import LEVEL
from fxcore.store.cache import cached
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run
from fxcore.store.select import pick_control, pick_runs

ALPHAS = tuple(float(a) for a in np.linspace(0.0, 1.0, 11))


def interpolate_state(
    sa: dict[str, torch.Tensor], sb: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) A + alpha B`` for floating tensors; counters (``num_batches_tracked``) from A."""
    if sa.keys() != sb.keys():
        raise SimilarityError("the two state dicts name different tensors; interpolate one model")
    out = {}
    for k, a in sa.items():
        b = sb[k]
        if a.shape != b.shape:
            raise SimilarityError(f"{k!r} has shape {tuple(a.shape)} in A, {tuple(b.shape)} in B")
        out[k] = torch.lerp(a, b.to(a.dtype), alpha) if a.is_floating_point() else a.clone()
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch: int = 64) -> None:
    """Replace every BatchNorm's running statistics by their average over ``x`` (only BatchNorm
    layers in train mode, so dropout stays off); the model is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    model.eval()
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
            m.train()
        for s in range(0, len(x), batch):
            model(x[s : s + batch])
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()


def path_errors(
    build: Callable[[], nn.Module],
    state_a: dict[str, torch.Tensor],
    state_b: dict[str, torch.Tensor],
    x_bn: torch.Tensor,
    x: torch.Tensor,
    y: np.ndarray,
    alphas: Sequence[float] = ALPHAS,
) -> np.ndarray:
    """Per-image error (0/1) at each alpha, (len(alphas), N); ``build()`` makes a fresh model."""
    rows = []
    for alpha in alphas:
        model = build()
        model.load_state_dict(interpolate_state(state_a, state_b, float(alpha)))
        reestimate_batchnorm(model, x_bn)
        rows.append(1.0 - correct(model, x, y))
    return np.stack(rows)


def _barrier(mean_err: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Barrier along the last axis of mean errors (..., n_alpha)."""
    line = mean_err[..., :1] + alphas * (mean_err[..., -1:] - mean_err[..., :1])  # exact if flat
    return np.max(mean_err - line, axis=-1)


def error_barrier(
    errors: np.ndarray,
    alphas: Sequence[float] = ALPHAS,
    n_resamples: int = 200,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """``(barrier, low, high)`` from per-image errors (n_alpha, N), bootstrapped over images."""
    e = np.asarray(errors, dtype=np.float64)
    a = np.asarray(alphas, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != len(a) or len(a) < 2:
        raise SimilarityError(f"errors must be (alphas, images); got {e.shape} for {len(a)} alphas")
    value = float(_barrier(e.mean(1), a))
    if e.shape[1] < 2 or n_resamples < 1 or np.all(e == e[:, :1]):
        return value, value, value  # nothing varies between images: no spread to resample

    def stat(d: np.ndarray, axis: int = -1) -> np.ndarray:
        return _barrier(np.moveaxis(d.mean(axis=axis), 0, -1), a)

    res = bootstrap(
        (e,),
        stat,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        axis=-1,
        rng=np.random.default_rng(seed),
    )
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class ConnectivityMap:
    """Per epoch: mean error at each alpha and the barrier ``[value, low, high]``."""

    experiment: str
    runs: list[str]  # [A, B]: alpha 0 is A
    attribute: str  # whose error is measured
    epochs: list[int]
    alphas: list[float]
    error: list[list[float]]  # per epoch, per alpha
    barrier: list[list[float]]  # per epoch
    batchnorm: bool  # whether statistics were re-estimated (the model has BatchNorm)
    n_probe: int
    n_bn: int
    level: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ConnectivityMap:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def connectivity(
    exp: Experiment,
    runs: Sequence[Run] | None = None,
    epochs: Sequence[int] | None = None,
    n_probe: int = 256,
    n_bn: int = 256,
    alphas: Sequence[float] = ALPHAS,
    n_resamples: int = 200,
    seed: int = 0,
) -> ConnectivityMap:
    """The error barrier between ``runs[0]`` and ``runs[1]`` (default: L1 and its control) per
    epoch (default: every common epoch after the init), on ``runs[0]``'s task; disk-cached."""
    from fxcore.data.base import uint8_to_input
    from fxcore.data.inputs import load_split
    from fxcore.models.nets import build_model
    from fxcore.store.runs import common_epochs

    if runs is None:
        first = pick_runs(exp)[0]
        other = pick_control(exp, first)
        if other is None:
            raise CheckpointError(f"{exp.name} has no control run of {first.name}; name two runs")
        runs = [first, other]
    a, b = runs[0], runs[1]
    eps = list(epochs) if epochs is not None else [e for e in common_epochs([a, b]) if e > 0]
    if not eps:
        raise CheckpointError(f"no epoch common to runs {a.name} and {b.name}")
    params = {
        "runs": [a.name, b.name],
        "n_probe": n_probe,
        "n_bn": n_bn,
        "alphas": [float(v) for v in alphas],
        "n_resamples": n_resamples,
        "seed": seed,
    }

    def compute() -> dict[str, Any]:
        test = probe_data(exp, n_probe)
        names = [s.lower() for s in test.attributes]
        col = names.index(a.attribute.lower()) if a.attribute.lower() in names else 0
        ds = load_split(exp.info, "train", max_samples=n_bn)
        x_bn = uint8_to_input(ds.images_uint8()[:n_bn], ds.normalize)

        def build() -> nn.Module:
            return build_model(a.model, num_outputs=int(a.info.get("num_outputs", 1)))

        errors, barriers = [], []
        for e in eps:
            per_image = path_errors(
                build, a.state_dict(e), b.state_dict(e), x_bn, test.x, test.labels[:, col], alphas
            )
            errors.append(per_image.mean(1).tolist())
            barriers.append(list(error_barrier(per_image, alphas, n_resamples, seed)))
        return ConnectivityMap(
            exp.name,
            [a.name, b.name],
            a.attribute,
            eps,
            [float(v) for v in alphas],
            errors,
            barriers,
            has_batchnorm(build()),
            int(len(test.x)),
            int(len(x_bn)),
            LEVEL,
        ).to_json()

    return ConnectivityMap.from_json(cached(exp, "lmc", [a, b], eps, params, compute))
