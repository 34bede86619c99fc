"""Which units change their role: unit-by-unit correlation between two runs that share an init.

At epoch 0 unit *i* of L1 *is* unit *i* of L2 (one init copied), so the diagonal of the channel
correlation matrix starts at 1. Per conv layer and epoch, on the probe images, each pair of channels
(unit *i* of model A, unit *j* of model B) gets the Pearson correlation of their conv outputs over
every image and position (streamed batch by batch, :class:`UnitCorrelation`). From that matrix:

- ``same``: r_ii, unit *i* against itself in the other model; a unit is **still the same unit** when
  r_ii >= ``threshold`` (0.5 by default: more than a quarter of its variance shared). The threshold is
  read against two baselines: ``null_share``, the share of *different* units (i != j) of the same
  two models that clear it (what an arbitrary pairing reaches), and the control (L1 vs a run of the
  same task), which says how many units stay themselves when only the batch order differs;
- the optimal one-to-one matching (``scipy.optimize.linear_sum_assignment``, maximising the summed
  correlation): ``share_swapped`` is the share of units whose matched partner is now another unit,
  ``share_new`` the share whose best match falls below the threshold (they became something new
  rather than another unit of the other model);
- :func:`diverging_units`: the units whose r_ii leaves the threshold earliest and stays below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from fxcore.measures.similarity import SimilarityError
from fxcore.store.cache import cached
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run, shared_epochs
from fxcore.store.select import pick_control

THRESHOLD = 0.5  # r_ii at or above: still the same unit
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _channels_last(a: Any) -> Any:
    """(B, C, h, w) or (B, C) activations -> a float64 torch tensor (B*h*w, C)."""
    import torch

    t = torch.as_tensor(a)
    if t.dim() == 4:
        return t.movedim(1, -1).reshape(-1, t.shape[1]).double()
    if t.dim() == 2:
        return t.double()
    raise SimilarityError(
        f"unit activations need shape (B, C, h, w) or (B, C), got {tuple(t.shape)}"
    )


class UnitCorrelation:
    """Streaming Pearson correlation (C_a, C_b) between the channels of two layers' outputs.

    ``update(a, b)`` with the two models' outputs (numpy or torch) for one batch of the same
    images; every image and position is one sample. Sums are float64, so memory is a few
    (C_a, C_b) arrays.
    """

    def __init__(self) -> None:
        self.n = 0
        self.sums: list[np.ndarray] | None = None  # sum a, sum b, sum a^2, sum b^2, a^T b

    def update(self, a: Any, b: Any) -> None:
        xa, xb = _channels_last(a), _channels_last(b)
        if xa.shape[0] != xb.shape[0]:
            raise SimilarityError(
                f"the two layers give {xa.shape[0]} and {xb.shape[0]} samples; same inputs and "
                "map sizes are needed"
            )
        parts = [xa.sum(0), xb.sum(0), (xa * xa).sum(0), (xb * xb).sum(0), xa.T @ xb]
        parts = [p.numpy() for p in parts]
        self.sums = parts if self.sums is None else [s + p for s, p in zip(self.sums, parts)]
        self.n += xa.shape[0]

    def matrix(self) -> np.ndarray:
        """Correlations (C_a, C_b); NaN for a unit that is constant on the probe images."""
        if self.n < 2 or self.sums is None:
            raise SimilarityError("UnitCorrelation needs at least two samples; call update()")
        sa, sb, saa, sbb, sab = self.sums
        ma, mb = sa / self.n, sb / self.n
        va = np.clip(saa / self.n - ma**2, 0.0, None)
        vb = np.clip(sbb / self.n - mb**2, 0.0, None)
        cov = sab / self.n - np.outer(ma, mb)
        den = np.sqrt(np.outer(va, vb))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 1e-12 * max(den.max(), 1e-300), cov / den, np.nan)
        return np.clip(r, -1.0, 1.0)


def correlation(a: Any, b: Any) -> np.ndarray:
    """Unit correlation matrix of two whole activation arrays (one :class:`UnitCorrelation` step)."""
    acc = UnitCorrelation()
    acc.update(a, b)
    return acc.matrix()


def match_units(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of A's units to B's on ``r`` (C_a, C_b): (partner, matched r).

    ``partner[i]`` is B's unit matched to A's unit i (-1 where A has more units than B); NaN
    correlations (constant units) count as 0 for the matching.
    """
    r = np.asarray(r, dtype=np.float64)
    rows, cols = linear_sum_assignment(np.nan_to_num(r, nan=0.0), maximize=True)
    partner = np.full(r.shape[0], -1, dtype=np.int64)
    partner[rows] = cols
    matched = np.full(r.shape[0], np.nan)
    matched[rows] = r[rows, cols]
    return partner, matched


def summarise(r: np.ndarray, threshold: float = THRESHOLD) -> dict[str, Any]:
    """What one correlation matrix (square: the same layer of two runs) says about the units."""
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise SimilarityError(f"unit correspondence needs a square matrix, got {r.shape}")
    c = r.shape[0]
    diag = np.diag(r).copy()
    partner, matched = match_units(r)
    off = r[~np.eye(c, dtype=bool)]
    off = off[np.isfinite(off)]
    finite = np.isfinite(diag)
    return {
        "same": diag.tolist(),
        "partner": partner.tolist(),
        "matched": matched.tolist(),
        "share_same": float(np.mean(diag[finite] >= threshold)) if finite.any() else float("nan"),
        "share_swapped": float(np.mean(partner != np.arange(c))),
        "share_new": float(np.mean(~(matched >= threshold))),
        "null_share": float(np.mean(off >= threshold)) if off.size else float("nan"),
        "quantiles": np.quantile(diag[finite], QUANTILES).tolist() if finite.any() else [],
    }


def diverging_units(
    epochs: Sequence[int], same: np.ndarray, threshold: float = THRESHOLD, top: int = 5
) -> list[dict[str, Any]]:
    """The units whose r_ii falls below ``threshold`` earliest and stays below, earliest first.

    ``same`` is (E, C): r_ii per epoch. Ties are broken by the lower last-epoch r_ii; units that
    end the run still the same unit are left out.
    """
    s = np.asarray(same, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != len(epochs):
        raise SimilarityError(f"same must be (epochs, units); got {s.shape} for {len(epochs)}")
    found = []
    for unit in range(s.shape[1]):
        below = ~(s[:, unit] >= threshold)  # NaN (a constant unit) counts as diverged
        if not below[-1]:
            continue
        start = len(below) - 1
        while start > 0 and below[start - 1]:
            start -= 1
        found.append({"unit": unit, "epoch": int(epochs[start]), "last": float(s[-1, unit])})
    found.sort(key=lambda d: (d["epoch"], np.nan_to_num(d["last"], nan=-2.0)))
    return found[:top]


def layer_correlations(
    model_a: Any, model_b: Any, x: Any, layers: Sequence[str], batch: int = 32
) -> dict[str, np.ndarray]:
    """Unit correlation matrix per layer between two models on images ``x`` (N, C, S, S)."""
    import torch

    from fxcore.explain.activations import capture, model_lock, restore_mode

    accs = {name: UnitCorrelation() for name in layers}
    with model_lock(model_a), model_lock(model_b), restore_mode(model_a), restore_mode(model_b):
        model_a.eval()
        model_b.eval()
        for start in range(0, len(x), max(1, batch)):
            xb = x[start : start + batch]
            with torch.no_grad(), capture(model_a, layers) as acts_a:
                model_a(xb)
            with torch.no_grad(), capture(model_b, layers) as acts_b:
                model_b(xb)
            for name in layers:
                accs[name].update(acts_a[name], acts_b[name])
    return {name: acc.matrix() for name, acc in accs.items()}


@dataclass
class UnitMap:
    """Per conv layer and epoch, :func:`summarise` of L1 vs L2 and of L1 vs its control.

    ``pair[layer]`` / ``control[layer]`` are lists over ``epochs``; ``diverging[layer]`` the
    earliest diverging units of the pair (:func:`diverging_units`).
    """

    experiment: str
    runs: list[str]
    control_run: str | None
    epochs: list[int]
    layers: list[str]
    threshold: float
    pair: dict[str, list[dict[str, Any]]]
    control: dict[str, list[dict[str, Any]]]
    diverging: dict[str, list[dict[str, Any]]]
    n_probe: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UnitMap:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def shares(self, layer: str, key: str = "share_same") -> dict[str, list[float]]:
        """``key`` per epoch for the pair, the control and the pair's null."""
        out = {"pair": [row[key] for row in self.pair[layer]]}
        if self.control:
            out["control"] = [row[key] for row in self.control[layer]]
        out["null"] = [row["null_share"] for row in self.pair[layer]]
        return out


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def unit_correspondence(
    exp: Experiment,
    runs: Sequence[Run],
    control: Run | None = None,
    layers: Sequence[str] | None = None,
    epochs: Sequence[int] | None = None,
    n_probe: int = 256,
    threshold: float = THRESHOLD,
    batch: int = 32,
    top: int = 5,
) -> UnitMap:
    """Unit correspondence of ``runs[0]`` with ``runs[1]`` and with its control, per conv layer
    (default: all of them) and epoch, on the probe images; disk-cached."""
    a, b = runs[0], runs[1]
    c = control if control is not None else pick_control(exp, a)
    involved = [a, b] + ([c] if c is not None else [])
    eps = shared_epochs(involved, epochs)
    params = {
        "runs": [r.name for r in involved],
        "layers": list(layers) if layers is not None else None,
        "n_probe": n_probe,
        "threshold": threshold,
        "batch": batch,
        "top": top,
    }

    def compute() -> dict[str, Any]:
        from fxcore.explain.activations import conv_layers

        x = probe_data(exp, n_probe).x
        pair: dict[str, list[dict[str, Any]]] = {}
        ctrl: dict[str, list[dict[str, Any]]] = {}
        chosen: list[str] = []
        for e in eps:
            ma = a.build_model(e)
            chosen = list(layers) if layers is not None else conv_layers(ma)
            for target, other in ((pair, b), (ctrl, c)):
                if other is None:
                    continue
                corr = layer_correlations(ma, other.build_model(e), x, chosen, batch)
                for name in chosen:
                    target.setdefault(name, []).append(summarise(corr[name], threshold))
        diverging = {
            name: diverging_units(
                eps, np.array([row["same"] for row in pair[name]]), threshold, top
            )
            for name in chosen
        }
        result = UnitMap(
            exp.name,
            [a.name, b.name],
            c.name if c else None,
            eps,
            chosen,
            threshold,
            pair,
            ctrl,
            diverging,
            int(len(x)),
        )
        return _json_safe(result.to_json())

    return UnitMap.from_json(cached(exp, "units", involved, eps, params, compute))


def unit_view(
    models: Sequence[Any], x: Any, layer: str, unit: int, top: int = 6
) -> list[dict[str, np.ndarray]]:
    """For each model: its ``top`` probe images for ``unit`` of ``layer`` (by spatial-mean
    activation, strongest first), their activations, and the unit's mean map over all images."""
    import torch

    from fxcore.explain.activations import ActivationError, capture, model_lock, restore_mode

    views = []
    for model in models:
        with model_lock(model), restore_mode(model), torch.no_grad():
            model.eval()
            with capture(model, layer) as acts:
                model(x)
        a = acts[layer]
        if a.dim() != 4 or not 0 <= unit < a.shape[1]:
            raise ActivationError(f"{layer!r} has no spatial unit {unit} (output {tuple(a.shape)})")
        maps = a[:, unit].double().numpy()  # (N, h, w)
        strength = maps.mean(axis=(1, 2))
        order = np.argsort(-strength, kind="stable")[:top]
        views.append({"top": order, "strength": strength[order], "mean_map": maps.mean(0)})
    return views
