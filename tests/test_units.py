"""Unit correspondence: streamed correlations, the optimal matching, divergence order, the map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxcore.core.errors import FxcoreError
from fxcore.measures.units import (
    THRESHOLD,
    UnitCorrelation,
    UnitMap,
    correlation,
    diverging_units,
    match_units,
    summarise,
    unit_correspondence,
    unit_view,
)
from fxcore.store.runs import load_experiment

RNG = np.random.default_rng(0)


def test_streamed_correlation_equals_numpy_corrcoef() -> None:
    a = RNG.normal(size=(12, 5, 4, 4))
    b = a[:, ::-1] * 2 + RNG.normal(size=(12, 5, 4, 4))
    acc = UnitCorrelation()
    for s in range(0, 12, 5):
        acc.update(a[s : s + 5], b[s : s + 5])
    flat_a = a.transpose(0, 2, 3, 1).reshape(-1, 5)
    flat_b = b.transpose(0, 2, 3, 1).reshape(-1, 5)
    want = np.corrcoef(flat_a.T, flat_b.T)[:5, 5:]
    np.testing.assert_allclose(acc.matrix(), want, atol=1e-10)
    np.testing.assert_allclose(correlation(a, b), want, atol=1e-10)


def test_a_constant_unit_has_no_correlation() -> None:
    a = RNG.normal(size=(20, 3))
    a[:, 1] = 4.0
    r = correlation(a, a)
    assert np.isnan(r[1]).all() and r[0, 0] == pytest.approx(1.0)


def test_matching_recovers_a_known_permutation_of_units() -> None:
    a = RNG.normal(size=(40, 16, 3, 3))
    perm = RNG.permutation(16)
    b = a[:, perm] + 0.3 * RNG.normal(size=a.shape)  # B's unit j is A's unit perm[j]
    partner, matched = match_units(correlation(a, b))
    np.testing.assert_array_equal(perm[partner], np.arange(16))
    assert (matched > 0.9).all()
    s = summarise(correlation(a, b))
    assert s["share_swapped"] == pytest.approx(np.mean(perm != np.arange(16)))
    assert s["share_new"] == 0.0


def test_summary_of_identical_and_of_unrelated_units() -> None:
    a = RNG.normal(size=(200, 8))
    same = summarise(correlation(a, a))
    assert same["share_same"] == 1.0 and same["share_swapped"] == 0.0
    assert same["null_share"] == 0.0 and same["quantiles"][0] == pytest.approx(1.0)
    other = summarise(correlation(a, RNG.normal(size=(200, 8))))
    assert other["share_same"] == 0.0 and other["share_new"] == 1.0
    json.dumps(other)
    with pytest.raises(FxcoreError):
        summarise(np.zeros((3, 4)))


def test_diverging_units_are_ordered_by_when_they_leave_for_good() -> None:
    same = np.array(
        [
            [1.0, 1.0, 1.0, 1.0],
            [0.9, 0.3, 0.2, 0.9],
            [0.4, 0.6, 0.1, 0.9],
            [0.3, 0.2, 0.1, 0.8],
        ]
    )
    out = diverging_units([0, 1, 2, 3], same, THRESHOLD)
    assert [d["unit"] for d in out] == [2, 0, 1]  # unit 1 came back at epoch 2; unit 3 stays
    assert [d["epoch"] for d in out] == [1, 2, 3]
    assert diverging_units([0, 1, 2, 3], same, top=1) == out[:1]


@pytest.fixture(scope="module")
def trio(tiny_trio):
    return load_experiment(tiny_trio)


def test_unit_map_starts_with_every_unit_itself(trio) -> None:
    l1, l2, control = trio.runs
    m = unit_correspondence(trio, [l1, l2], layers=["features.0", "features.49"], n_probe=16)
    assert m.control_run == control.name and m.epochs == [0, 1, 2]
    for side in (m.pair, m.control):
        first = side["features.0"][0]
        assert first["share_same"] == 1.0 and first["share_swapped"] == 0.0
        assert len(side["features.49"]) == 3 and len(first["same"]) == 8
    assert m.shares("features.0")["pair"][0] == 1.0
    assert set(m.diverging) == {"features.0", "features.49"}
    assert UnitMap.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert (
        unit_correspondence(trio, [l1, l2], layers=["features.0", "features.49"], n_probe=16) == m
    )


def test_unit_view_shows_the_same_unit_in_both_models(trio) -> None:
    from fxcore.store.probeset import probe_data

    x = probe_data(trio, 12).x
    l1, l2, _ = trio.runs
    views = unit_view([l1.build_model(2), l2.build_model(2)], x, "features.3", unit=2, top=4)
    assert len(views) == 2
    for v in views:
        assert v["top"].shape == (4,) and v["mean_map"].shape == (32, 32)
        assert (np.diff(v["strength"]) <= 0).all()
    with pytest.raises(FxcoreError):
        unit_view([l1.build_model(0)], x, "classifier.0", unit=0)
