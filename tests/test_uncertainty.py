"""Bootstrap intervals and the permuted-pairing CKA null (fxcore.measures.uncertainty)."""

import numpy as np
import pytest
from references import cka_estimate

from fxcore.measures.similarity import MinibatchCKA, SimilarityError
from fxcore.measures.uncertainty import gram, mean_ci, minibatch_cka, permuted_null


def _population(seed: int = 123):
    """X ~ N(0, S) (8 dims), Y = X A + 2 E (6 dims); the population linear CKA in closed form."""
    rng = np.random.default_rng(seed)
    p, q, sig = 8, 6, 2.0
    lx = rng.normal(size=(p, p))
    s = lx @ lx.T / p + np.eye(p)
    a = rng.normal(size=(p, q))
    syx, syy = a.T @ s, a.T @ s @ a + sig**2 * np.eye(q)
    true = np.sum(syx**2) / (np.linalg.norm(s) * np.linalg.norm(syy))

    def draw(r: np.random.Generator, n: int):
        x = r.multivariate_normal(np.zeros(p), s, size=n)
        return x, x @ a + sig * r.normal(size=(n, q))

    return float(true), draw


def test_minibatch_cka_from_grams_equals_the_streaming_estimator():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 5)), rng.normal(size=(70, 3))
    y[:, 0] += x[:, 0]
    acc = MinibatchCKA()
    for s in range(0, 70, 32):
        if len(x[s : s + 32]) >= 4:
            acc.update(x[s : s + 32], y[s : s + 32])
    assert minibatch_cka(gram(x), gram(y), 32) == pytest.approx(acc.value(), rel=1e-12)
    with pytest.raises(SimilarityError, match="at least 4"):
        minibatch_cka(gram(x[:3]), gram(y[:3]), 32)


def test_cka_interval_covers_the_population_value_at_the_nominal_rate():
    """95% half-sampling interval over 128 images (measured: see the assertion message)."""
    true, draw = _population()
    hits = 0
    for trial in range(100):
        x, y = draw(np.random.default_rng(trial), 128)
        est = cka_estimate(gram(x), gram(y), batch=32, n_resamples=200, seed=trial)
        assert est["low"] <= est["value"] <= est["high"]
        hits += est["low"] <= true <= est["high"]
    assert hits >= 90, f"only {hits} of 100 intervals cover the true CKA {true:.3f}"


def test_permuted_pairing_null_is_near_zero_while_the_paired_value_is_not():
    true, draw = _population()
    nulls = []
    for trial in range(20):
        x, y = draw(np.random.default_rng(1000 + trial), 256)
        k, ll = gram(x), gram(y)
        assert minibatch_cka(k, ll, 32) > 0.3
        nulls.append(permuted_null(k, ll, 32, seed=trial))
    assert abs(np.mean(nulls)) < 0.02
    assert np.max(np.abs(nulls)) < 0.1


def test_identical_representations_have_cka_one_and_a_degenerate_interval():
    x = np.random.default_rng(3).normal(size=(64, 10))
    est = cka_estimate(gram(x), gram(2 * x), n_resamples=50, seed=0)
    assert est["value"] == pytest.approx(1.0)
    assert est["low"] == pytest.approx(1.0) and est["high"] == pytest.approx(1.0)


def test_mean_interval_coverage_seeded_and_nan_aware():
    hits = 0
    for trial in range(100):
        v = np.random.default_rng(trial).binomial(1, 0.7, size=200).astype(float)
        e = mean_ci(v, n_resamples=200, seed=trial)
        hits += e.low <= 0.7 <= e.high
    assert hits >= 90
    v = np.array([0.2, np.nan, 0.4, 0.9, 0.1])
    a, b = mean_ci(v, 100, seed=5), mean_ci(v, 100, seed=5)
    assert a == b and a.value == pytest.approx(0.4)
    assert np.isnan(mean_ci(np.array([np.nan]), 10).value)
