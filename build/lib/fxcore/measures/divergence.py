"""When and where two runs come apart: CKA and two measures of other families, against the control.

Every measure reads the same linear Gram matrices ``A A^T`` (n, n) of a layer's flattened outputs
(:func:`fxcore.explain.activations.layer_grams`, one forward pass per model and epoch, the inputs CKA uses),
so the measures differ by what they look at, not by what they were given:

- ``cka``: unbiased minibatch linear CKA (:func:`fxcore.measures.uncertainty.minibatch_cka`), kernel
  alignment, the whole geometry weighted by variance;
- ``procrustes``: the angular orthogonal-Procrustes shape distance of Williams et al. 2021 (netrep's
  ``LinearMetric(alpha=1, score_method="angular")``): columns centred, each representation scaled to
  unit Frobenius norm, ``arccos ||X^T Y||_*`` — the angle left after the best rotation. The nuclear
  norm is ``sum sqrt(eig(Kc Lc))``, so it comes from the centred Grams without the features;
- ``mutual_knn``: mutual k-nearest-neighbour overlap of Huh et al. 2024 (platonic-rep's
  ``mutual_knn``): per image, the share of its k nearest images (cosine, itself left out) that both
  models agree on, averaged; local neighbourhoods only. Independent representations score ~k/(n-1).

Why written here rather than installed: ``repsim`` (PyPI, numpy-only, installs with our pins) offers
CKA/CCA/SVCCA/PWCCA/HSIC only, no shape metric and no k-NN measure; ``rsatoolbox`` installs but
brings scikit-image, h5py, pandas and networkx for RDM comparisons, again without either measure;
``netrep`` and platonic-rep are not on the package index. Each measure is a few lines of numpy,
tested against an independent route (``scipy.linalg.orthogonal_procrustes`` alignment; the brute
force k-NN of ``sklearn.neighbors``) in tests/test_divergence.py.

Intervals are half-sampling intervals over probe images (:func:`fxcore.measures.uncertainty.half_sample_ci`)
for every measure alike: a bootstrap resample repeats images, and a repeated image is its own nearest
neighbour in both models (inflating k-NN overlap) and biases the unbiased HSIC. For k-NN the half
samples hold n/2 images with the same k, so only their spread, not their level, is used (that is
what ``half_sample_ci`` does: the value plus the centred half-sample quantiles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpstrf

from fxcore.explain.layers import layer_names
from fxcore.measures.similarity import SimilarityError
from fxcore.measures.uncertainty import LEVEL, half_sample_ci, minibatch_cka
from fxcore.store.cache import cached
from fxcore.store.probeset import probe_data
from fxcore.store.runs import Experiment, Run, shared_epochs
from fxcore.store.select import pick_control

# ---------------------------------------------------------------- measures on Gram matrices


def _sub(k: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return k if idx is None else k[np.ix_(idx, idx)]


def _check(k: np.ndarray, ll: np.ndarray) -> None:
    if k.shape != ll.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise SimilarityError(
            f"Gram matrices must be (n, n) of one size, got {k.shape}, {ll.shape}"
        )


def _centre(k: np.ndarray) -> np.ndarray:
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def _factor(k: np.ndarray) -> np.ndarray:
    """F (n, r) with F F^T = k for a PSD k of rank r (LAPACK's pivoted Cholesky, rank-revealing)."""
    c, piv, rank, _ = dpstrf(k, lower=1, tol=-1)
    f = np.zeros((k.shape[0], rank))
    f[piv - 1] = np.tril(c)[:, :rank]
    return f


def procrustes_from_grams(k: np.ndarray, ll: np.ndarray, idx: np.ndarray | None = None) -> float:
    """Angular Procrustes distance in [0, pi/2] from linear Grams (n, n); NaN for a constant one.

    ``||Xc^T Yc||_*`` = sum sqrt(eig(Kc Lc)) with Kc = H K H; with Kc = F F^T that is
    sum sqrt(eig(F^T Lc F)), a symmetric (r, r) problem, whatever the layer's width.
    """
    _check(k, ll)
    kc, lc = _centre(_sub(k, idx)), _centre(_sub(ll, idx))
    den = np.sqrt(max(np.trace(kc), 0.0) * max(np.trace(lc), 0.0))
    if den <= 0:
        return float("nan")
    f = _factor(kc)
    nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(f.T @ lc @ f), 0.0, None)).sum()
    return float(np.arccos(np.clip(nuclear / den, -1.0, 1.0)))


def _neighbours(k: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Indices (n, k) of each row's k most cosine-similar other rows, from a linear Gram."""
    norms = np.sqrt(np.clip(np.diag(k), 0.0, None))
    safe = np.where(norms > 0, norms, 1.0)
    sim = k / safe[:, None] / safe[None, :]
    np.fill_diagonal(sim, -np.inf)
    return np.argpartition(-sim, n_neighbors - 1, axis=1)[:, :n_neighbors]


def _rank_one(k: np.ndarray) -> bool:
    d = np.sqrt(np.clip(np.diag(k), 0.0, None))
    outer = np.outer(d, d)
    return bool(np.allclose(np.abs(k), outer, rtol=1e-6, atol=1e-12 * max(outer.max(), 1e-300)))


def mutual_knn_from_grams(
    k: np.ndarray, ll: np.ndarray, idx: np.ndarray | None = None, n_neighbors: int = 10
) -> float:
    """Mean share of each image's ``n_neighbors`` nearest images (cosine) both models share."""
    _check(k, ll)
    ks, ls = _sub(k, idx), _sub(ll, idx)
    n = ks.shape[0]
    if n < 3:
        raise SimilarityError(f"mutual k-NN needs at least 3 examples, got {n}")
    kk = max(1, min(n_neighbors, n - 1))
    if _rank_one(ks) or _rank_one(ls):
        return float("nan")  # one feature (a single logit): cosine is only a sign, ties everywhere
    na, nb = _neighbours(ks, kk), _neighbours(ls, kk)
    hits = np.zeros((n, n), bool)
    hits[np.arange(n)[:, None], na] = True
    shared = hits[np.arange(n)[:, None], nb].sum(1)
    return float(shared.mean() / kk)


def _features_gram(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)
    return a @ a.T


def procrustes_distance(x: Any, y: Any) -> float:
    """Angular Procrustes shape distance between activations X (n, p) and Y (n, q)."""
    return procrustes_from_grams(_features_gram(x), _features_gram(y))


def mutual_knn(x: Any, y: Any, n_neighbors: int = 10) -> float:
    """Mutual k-NN overlap between activations X (n, p) and Y (n, q) of the same n inputs."""
    return mutual_knn_from_grams(_features_gram(x), _features_gram(y), n_neighbors=n_neighbors)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Measure:
    """One representation measure: ``fn(K, L, idx)`` on linear Grams (idx: a subset of images)."""

    name: str
    label: str
    family: str
    higher_is_similar: bool
    range: tuple[float, float]
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float] = field(repr=False)

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("fn")
        d["range"] = list(self.range)
        return d


def _cka(k: np.ndarray, ll: np.ndarray, idx: np.ndarray | None = None) -> float:
    return minibatch_cka(k, ll, 32, idx)


#: name -> measure; a new measure is one entry here (the map, its table and figure pick it up).
MEASURES: dict[str, Measure] = {
    "cka": Measure(
        "cka", "linear CKA", "kernel alignment (global, variance-weighted)", True, (0.0, 1.0), _cka
    ),
    "procrustes": Measure(
        "procrustes",
        "Procrustes angle",
        "shape metric (orthogonal Procrustes, Williams et al. 2021)",
        False,
        (0.0, float(np.pi / 2)),
        procrustes_from_grams,
    ),
    "mutual_knn": Measure(
        "mutual_knn",
        "mutual 10-NN overlap",
        "local neighbourhoods (mutual k-NN, Huh et al. 2024)",
        True,
        (0.0, 1.0),
        mutual_knn_from_grams,
    ),
}


def estimate(
    measure: Measure,
    k: np.ndarray,
    ll: np.ndarray,
    n_resamples: int = 200,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """``(value, low, high)`` of ``measure`` on Grams ``k``, ``ll`` with its half-sampling CI."""
    from threadpoolctl import threadpool_limits

    # (n/2, n/2) matrices: BLAS threads cost more than they save, badly so on a busy machine.
    with threadpool_limits(1):
        value = measure.fn(k, ll, None)
        low, high = half_sample_ci(
            lambda idx: measure.fn(k, ll, idx), k.shape[0], value, n_resamples, seed, level
        )
    return value, low, high


# ---------------------------------------------------------------- onset


def _clear(pair: Sequence[float], control: Sequence[float], higher_is_similar: bool) -> bool:
    """The pair's interval lies wholly on the less-similar side of the control's."""
    _, p_lo, p_hi = (float("nan") if v is None else float(v) for v in pair)
    _, c_lo, c_hi = (float("nan") if v is None else float(v) for v in control)
    if not all(np.isfinite([p_lo, p_hi, c_lo, c_hi])):
        return False
    return p_hi < c_lo if higher_is_similar else p_lo > c_hi


def onset_epoch(
    epochs: Sequence[int],
    pair: Sequence[Sequence[float]],
    control: Sequence[Sequence[float]],
    higher_is_similar: bool = True,
) -> int | None:
    """The first epoch from which the pair's interval stays clear of the control's, else None.

    ``pair`` and ``control`` hold one ``(value, low, high)`` per epoch. "Clear" means the pair is
    less similar than the control with no overlap of the two intervals; a NaN bound is not clear.
    An epoch that clears and is followed by one that does not is no onset: the first epoch of the
    last unbroken run of clear epochs that reaches the final epoch is.
    """
    if not (len(epochs) == len(pair) == len(control)):
        raise SimilarityError(
            f"onset needs one pair and one control value per epoch: got {len(epochs)} epochs, "
            f"{len(pair)} pair and {len(control)} control values"
        )
    onset = None
    for e, p, c in zip(epochs, pair, control):
        if _clear(p, c, higher_is_similar):
            onset = e if onset is None else onset
        else:
            onset = None
    return onset


# ---------------------------------------------------------------- the map


@dataclass
class DivergenceMap:
    """Per measure, layer and epoch: ``[value, low, high]`` for the pair and for the control.

    ``pair[measure][layer]`` and ``control[measure][layer]`` are lists over ``epochs``;
    ``control`` is empty and every onset None when the experiment has no control run.
    """

    experiment: str
    runs: list[str]  # [L1, L2]
    control_run: str | None  # L1's control, compared with L1
    epochs: list[int]
    layers: list[str]
    measures: dict[str, dict[str, Any]]  # name -> Measure.meta()
    pair: dict[str, dict[str, list[list[float]]]]
    control: dict[str, dict[str, list[list[float]]]]
    onset: dict[str, dict[str, int | None]]
    n_probe: int
    n_resamples: int
    level: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DivergenceMap:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def table(self, measure: str) -> list[dict[str, Any]]:
        """One row per layer: the last epoch's pair and control values and the onset epoch."""
        rows = []
        for layer in self.layers:
            p = self.pair[measure][layer][-1]
            c = self.control.get(measure, {}).get(layer, [[float("nan")] * 3])[-1]
            rows.append(
                {
                    "layer": layer,
                    "pair": p[0],
                    "pair_ci": p[1:],
                    "control": c[0],
                    "control_ci": c[1:],
                    "onset": self.onset.get(measure, {}).get(layer),
                }
            )
        return rows


def _nan_safe(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def divergence_map(
    exp: Experiment,
    runs: Sequence[Run],
    control: Run | None = None,
    layers: Sequence[str] | None = None,
    epochs: Sequence[int] | None = None,
    n_probe: int = 256,
    measures: Sequence[str] | None = None,
    n_resamples: int = 100,
    seed: int = 0,
    batch: int = 32,
) -> DivergenceMap:
    """Every registered measure per layer and epoch for ``runs[0]`` vs ``runs[1]`` and for
    ``runs[0]`` vs ``control`` (default: L1's first control run), with intervals; disk-cached.

    ``layers`` default to every conv and linear layer (:func:`fxcore.explain.layers.layer_names`).
    """
    a, b = runs[0], runs[1]
    c = control if control is not None else pick_control(exp, a)
    names = list(measures) if measures is not None else list(MEASURES)
    unknown = [m for m in names if m not in MEASURES]
    if unknown:
        raise SimilarityError(f"unknown measure(s) {unknown}; known: {', '.join(MEASURES)}")
    involved = [a, b] + ([c] if c is not None else [])
    eps = shared_epochs(involved, epochs)
    params = {
        "runs": [r.name for r in involved],
        "layers": list(layers) if layers is not None else None,
        "n_probe": n_probe,
        "measures": names,
        "n_resamples": n_resamples,
        "seed": seed,
        "batch": batch,
    }

    def compute() -> dict[str, Any]:
        from fxcore.explain.activations import layer_grams

        x = probe_data(exp, n_probe).x
        pair: dict[str, dict[str, list[list[float]]]] = {m: {} for m in names}
        ctrl: dict[str, dict[str, list[list[float]]]] = {m: {} for m in names} if c else {}
        chosen: list[str] = []
        for e in eps:
            ma = a.build_model(e)
            chosen = list(layers) if layers is not None else layer_names(ma)
            grams = {r.name: layer_grams(r.build_model(e), x, chosen, batch) for r in involved}
            for m in names:
                for layer in chosen:
                    ka = grams[a.name][layer]
                    for target, other in ((pair, b), (ctrl, c)):
                        if other is None:
                            continue
                        est = estimate(MEASURES[m], ka, grams[other.name][layer], n_resamples, seed)
                        target[m].setdefault(layer, []).append(list(est))
        onset = {
            m: {
                layer: onset_epoch(
                    eps, pair[m][layer], ctrl[m][layer], MEASURES[m].higher_is_similar
                )
                if c
                else None
                for layer in chosen
            }
            for m in names
        }
        clean = {
            side: {
                m: {la: [[_nan_safe(v) for v in row] for row in s] for la, s in per.items()}
                for m, per in d.items()
            }
            for side, d in (("pair", pair), ("control", ctrl))
        }
        return DivergenceMap(
            experiment=exp.name,
            runs=[a.name, b.name],
            control_run=c.name if c else None,
            epochs=eps,
            layers=chosen,
            measures={m: MEASURES[m].meta() for m in names},
            pair=clean["pair"],
            control=clean["control"],
            onset=onset,
            n_probe=int(len(x)),
            n_resamples=n_resamples,
            level=LEVEL,
        ).to_json()

    return DivergenceMap.from_json(cached(exp, "divergence", involved, eps, params, compute))
