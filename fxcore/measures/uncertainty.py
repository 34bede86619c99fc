"""How sure a number is: seeded bootstrap confidence intervals over probe images, and CKA's null.

Means (accuracy, region shares) get a percentile bootstrap (``scipy.stats.bootstrap``) over the
probe images; CKA gets half-sampling (:func:`half_sample_ci`: resampling with repeats biases the
unbiased HSIC). Both are seeded, with the number of resamples an argument. CKA stays the project's unbiased minibatch estimator
(:class:`fxcore.measures.similarity.MinibatchCKA`, Nguyen et al. 2021); here it is computed from the full
(n, n) Gram matrices so one forward pass serves the value, every bootstrap resample and the
permuted-pairing null (image i of model A against image perm(i) of model B), which should be ~0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap

from fxcore.measures.similarity import SimilarityError, hsic_unbiased

LEVEL = 0.95  # confidence level of every interval unless told otherwise


@dataclass
class Estimate:
    """A measured value with its bootstrap interval (NaN bounds when it cannot be resampled)."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mean_ci(
    values: np.ndarray, n_resamples: int = 200, seed: int = 0, level: float = LEVEL
) -> Estimate:
    """Mean of per-image ``values`` (NaN ones left out) and its bootstrap interval."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    if v.size < 2 or np.all(v == v[0]) or n_resamples < 1:
        return Estimate(float(v.mean()), float(v.mean()), float(v.mean()))
    res = bootstrap(
        (v,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Estimate(float(v.mean()), float(ci.low), float(ci.high))


def gram(x: np.ndarray) -> np.ndarray:
    """Linear Gram matrix ``X X^T`` (n, n) of activations (n, ...) flattened per example."""
    a = np.asarray(x, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)
    return a @ a.T


def minibatch_cka(
    k: np.ndarray, ll: np.ndarray, batch: int = 32, idx: np.ndarray | None = None
) -> float:
    """Minibatch unbiased CKA of the Grams ``k``, ``ll`` (n, n) over consecutive batches of ``idx``.

    With ``idx = 0..n-1`` this equals :class:`~fxcore.measures.similarity.MinibatchCKA` fed the same
    batches (tested). Should ``idx`` repeat an image, pairs of its copies are dropped like the
    diagonal (the estimator then stays only approximately unbiased).
    """
    if k.shape != ll.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise SimilarityError(
            f"Gram matrices must be (n, n) of one size, got {k.shape}, {ll.shape}"
        )
    order = np.arange(k.shape[0]) if idx is None else np.asarray(idx)
    kl = kk = lll = 0.0
    used = 0
    for s in range(0, len(order), batch):
        b = order[s : s + batch]
        if len(b) < 4:  # the unbiased HSIC needs n >= 4
            continue
        kb, lb = k[np.ix_(b, b)], ll[np.ix_(b, b)]
        same = b[:, None] == b[None, :]
        if same.sum() > len(b):  # repeated images: zero their pairs as the diagonal is
            kb, lb = np.where(same, 0.0, kb), np.where(same, 0.0, lb)
        kl += hsic_unbiased(kb, lb)
        kk += hsic_unbiased(kb, kb)
        lll += hsic_unbiased(lb, lb)
        used += 1
    if used == 0:
        raise SimilarityError(f"minibatch CKA needs at least 4 examples, got {len(order)}")
    den = np.sqrt(kk * lll) if kk > 0 and lll > 0 else 0.0
    return float(kl / den) if den > 0 else float("nan")


def permuted_null(k: np.ndarray, ll: np.ndarray, batch: int = 32, seed: int = 0) -> float:
    """CKA with model B's images shuffled against model A's: no pairing, so the value is ~0."""
    perm = np.random.default_rng(seed).permutation(k.shape[0])
    return minibatch_cka(k, ll[np.ix_(perm, perm)], batch)


def half_sample_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    value: float,
    n_resamples: int = 200,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Interval of ``value`` = ``statistic(0..n-1)`` by half-sampling (McCarthy 1969).

    Each resample is a random half of the images *without* repeats, so U-statistics such as the
    unbiased HSIC stay unbiased (a bootstrap resample repeats ~37% of the images, and a repeated
    image pairs with itself, which biases them strongly for high-dimensional features). A half
    sample's spread around its mean matches the full estimate's spread (n/2 of n without
    replacement: sigma^2/(n/2) * (n/2)/(n-1) ~ sigma^2/n), so the interval is ``value`` plus the
    percentiles of the centred half-sample values.
    """
    if n < 8 or n_resamples < 2 or not np.isfinite(value):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.permutation(n)[: n // 2]) for _ in range(n_resamples)])
    stats = stats[np.isfinite(stats)]
    if stats.size < 2:
        return float("nan"), float("nan")
    dev = stats - stats.mean()
    alpha = (1.0 - level) / 2.0
    return float(value + np.quantile(dev, alpha)), float(value + np.quantile(dev, 1.0 - alpha))
