"""Cross-task linear probes: how well each layer's pooled features predict each attribute.

A probe is scikit-learn's ``LogisticRegression`` on standardised, spatially pooled activations
(:func:`fxcore.explain.activations.pooled_activations`), fitted on a seeded stratified part of the probe
images and scored on the held-out rest; the accuracy comes with a bootstrap interval over the
held-out images (:func:`fxcore.measures.uncertainty.mean_ci`). Does the Smiling network still encode Male,
and from which layer and epoch on does it lose it?
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fxcore.core.errors import ProbeError  # noqa: F401 - re-exported
from fxcore.measures.uncertainty import Estimate, mean_ci

TEST_FRACTION = 0.3


def probe_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    n_resamples: int = 200,
    test_fraction: float = TEST_FRACTION,
) -> Estimate:
    """Held-out accuracy of a logistic-regression probe of ``labels`` (n,) on ``features`` (n, d).

    NaN when a class has fewer than 2 examples (nothing to stratify or learn).
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y = np.asarray(labels).astype(np.int64).ravel()
    if len(x) != len(y):
        raise ProbeError(f"{len(x)} feature rows but {len(y)} labels; pass one label per image.")
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        return Estimate(float("nan"), float("nan"), float("nan"))
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    correct = (clf.predict(x_te) == y_te).astype(np.float64)
    return mean_ci(correct, n_resamples, seed)


def probe_grid(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    attributes: Sequence[str],
    seed: int = 0,
    n_resamples: int = 200,
) -> dict[str, dict[str, list[float]]]:
    """Probe every layer's features for every attribute (``labels`` (n, K), one column each).

    Returns ``{attribute: {layer: [accuracy, low, high]}}``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.shape[1] != len(attributes):
        raise ProbeError(
            f"labels must be (n, {len(attributes)}), one column per attribute, got {lab.shape}."
        )
    out: dict[str, dict[str, list[float]]] = {}
    for k, attr in enumerate(attributes):
        for layer, f in features.items():
            est = probe_accuracy(f, lab[:, k], seed, n_resamples)
            out.setdefault(attr, {})[layer] = [est.value, est.low, est.high]
    return out
