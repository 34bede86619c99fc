"""The divergence measures against independent references, the onset rule, and the cached map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group
from sklearn.neighbors import NearestNeighbors

from fxcore.core.errors import FxcoreError
from fxcore.measures.divergence import (
    MEASURES,
    DivergenceMap,
    divergence_map,
    estimate,
    mutual_knn,
    mutual_knn_from_grams,
    onset_epoch,
    procrustes_distance,
)
from fxcore.measures.uncertainty import gram
from fxcore.store.runs import load_experiment

RNG = np.random.default_rng(0)


def reference_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """netrep's angular LinearMetric(alpha=1): centre, unit norm, rotate Y onto X with scipy."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    width = max(xc.shape[1], yc.shape[1])  # zero-pad the narrower one, as netrep does
    xc = np.pad(xc, ((0, 0), (0, width - xc.shape[1])))
    yc = np.pad(yc, ((0, 0), (0, width - yc.shape[1])))
    r, _ = orthogonal_procrustes(yc, xc)
    return float(np.arccos(np.clip(np.sum((yc @ r) * xc), -1, 1)))


def reference_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """platonic-rep's mutual_knn with scikit-learn's brute-force cosine neighbours."""

    def neighbours(a):
        nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(a)
        idx = nn.kneighbors(a, return_distance=False)
        return [set(row[row != i][:k]) for i, row in enumerate(idx)]

    na, nb = neighbours(x), neighbours(y)
    return float(np.mean([len(a & b) / k for a, b in zip(na, nb)]))


def test_procrustes_is_zero_for_a_rotated_copy() -> None:
    x = RNG.normal(size=(60, 12))
    rotated = x @ ortho_group.rvs(12, random_state=1) * 3.0 + 5.0  # rotation, scale and shift
    assert procrustes_distance(x, rotated) == pytest.approx(0.0, abs=1e-6)
    assert reference_procrustes(x, rotated) == pytest.approx(0.0, abs=1e-6)


def test_procrustes_matches_the_rotation_reference_on_different_representations() -> None:
    x = RNG.normal(size=(50, 10))
    for y in (RNG.normal(size=(50, 10)), np.tanh(x @ RNG.normal(size=(10, 7))), x[:, :4]):
        d = procrustes_distance(x, y)
        assert d > 0.05
        assert d == pytest.approx(reference_procrustes(x, y), abs=1e-6)
    assert procrustes_distance(x, RNG.normal(size=(50, 10))) <= np.pi / 2


def test_procrustes_is_nan_for_a_constant_representation() -> None:
    assert np.isnan(procrustes_distance(RNG.normal(size=(20, 3)), np.ones((20, 3))))


def test_mutual_knn_is_one_for_identical_and_about_k_over_n_for_independent() -> None:
    x = RNG.normal(size=(200, 16))
    assert mutual_knn(x, x, 10) == 1.0
    assert mutual_knn(x, x @ ortho_group.rvs(16, random_state=2) * 2, 10) == 1.0
    chance = [mutual_knn(x, RNG.normal(size=(200, 16)), 10) for _ in range(5)]
    assert np.mean(chance) == pytest.approx(10 / 199, abs=0.02)


def test_mutual_knn_matches_the_scikit_learn_reference() -> None:
    x = RNG.normal(size=(80, 6))
    y = x + 0.8 * RNG.normal(size=(80, 6))
    for k in (1, 5, 10):
        assert mutual_knn(x, y, k) == pytest.approx(reference_knn(x, y, k))


def test_mutual_knn_on_a_subset_and_of_a_single_feature() -> None:
    x, y = RNG.normal(size=(40, 5)), RNG.normal(size=(40, 5))
    idx = np.arange(0, 40, 2)
    assert mutual_knn_from_grams(gram(x), gram(y), idx, 3) == pytest.approx(
        reference_knn(x[idx], y[idx], 3)
    )
    assert np.isnan(mutual_knn(RNG.normal(size=(30, 1)), RNG.normal(size=(30, 1))))


def test_registry_entries_carry_their_reading() -> None:
    assert {"cka", "procrustes", "mutual_knn"} <= MEASURES.keys()
    assert len({m.family for m in MEASURES.values()}) == len(MEASURES)
    assert not MEASURES["procrustes"].higher_is_similar and MEASURES["cka"].higher_is_similar
    meta = MEASURES["procrustes"].meta()
    assert "fn" not in meta and meta["range"][1] == pytest.approx(np.pi / 2)
    json.dumps(meta)


def test_estimate_gives_an_interval_around_the_value() -> None:
    x = RNG.normal(size=(64, 8))
    y = x + 0.5 * RNG.normal(size=(64, 8))
    for m in MEASURES.values():
        value, low, high = estimate(m, gram(x), gram(y), n_resamples=50, seed=0)
        assert low <= value <= high, m.name
        assert estimate(m, gram(x), gram(y), n_resamples=50, seed=0) == (value, low, high)


# ---------------------------------------------------------------- onset

EPOCHS = [0, 1, 2, 3, 4]
CONTROL = [(0.9, 0.85, 0.95)] * 5


def test_onset_is_the_first_epoch_that_stays_clear() -> None:
    pair = [(1.0, 1.0, 1.0), (0.9, 0.86, 0.94), (0.7, 0.6, 0.8), (0.6, 0.5, 0.7), (0.5, 0.4, 0.6)]
    assert onset_epoch(EPOCHS, pair, CONTROL) == 2


def test_onset_ignores_an_early_excursion_that_comes_back() -> None:
    pair = [(0.9, 0.85, 0.95), (0.5, 0.4, 0.6), (0.9, 0.84, 0.9), (0.6, 0.5, 0.7), (0.5, 0.4, 0.6)]
    assert onset_epoch(EPOCHS, pair, CONTROL) == 3


def test_no_onset_when_the_last_epoch_overlaps_or_is_undefined() -> None:
    overlap = [(0.5, 0.4, 0.6)] * 4 + [(0.8, 0.7, 0.86)]
    assert onset_epoch(EPOCHS, overlap, CONTROL) is None
    assert onset_epoch(EPOCHS, [(0.5, 0.4, 0.6)] * 4 + [(0.5, None, None)], CONTROL) is None
    more_similar = [(0.99, 0.98, 1.0)] * 5  # clear of the control, but on the similar side
    assert onset_epoch(EPOCHS, more_similar, CONTROL) is None


def test_onset_for_a_distance_reads_the_other_side() -> None:
    control = [(0.1, 0.05, 0.15)] * 5
    pair = [(0.0, 0.0, 0.0), (0.1, 0.06, 0.14), (0.3, 0.2, 0.4), (0.4, 0.3, 0.5), (0.5, 0.4, 0.6)]
    assert onset_epoch(EPOCHS, pair, control, higher_is_similar=False) == 2
    assert onset_epoch(EPOCHS, pair, control, higher_is_similar=True) is None


def test_onset_refuses_series_of_different_lengths() -> None:
    with pytest.raises(FxcoreError):
        onset_epoch(EPOCHS, CONTROL[:3], CONTROL)


# ---------------------------------------------------------------- the map on trained runs


@pytest.fixture(scope="module")
def trio(tiny_trio):
    return load_experiment(tiny_trio)


def test_divergence_map_has_pair_and_control_per_layer_and_epoch(trio) -> None:
    l1, l2, control = trio.runs
    layers = ["features.0", "features.49", "classifier.0"]
    d = divergence_map(trio, [l1, l2], layers=layers, n_probe=24, n_resamples=20)
    assert d.control_run == control.name and d.runs == [l1.name, l2.name]
    assert d.epochs == [0, 1, 2] and d.layers == layers and set(d.measures) == set(MEASURES)
    for m in MEASURES:
        for side in (d.pair, d.control):
            for layer in layers:
                assert len(side[m][layer]) == 3
        # Epoch 0 is one shared init: every model is the same, so the measure says "identical".
        first = d.pair[m]["features.0"][0][0]
        assert first == pytest.approx(0.0 if m == "procrustes" else 1.0, abs=1e-6)
        assert set(d.onset[m]) == set(layers)
    assert len(d.table("cka")) == len(layers)
    again = divergence_map(trio, [l1, l2], layers=layers, n_probe=24, n_resamples=20)
    assert again == d  # served from the cache
    assert DivergenceMap.from_json(json.loads(json.dumps(d.to_json()))) == d
    assert list((trio.path / ".fxcore-cache").glob("divergence-*.json"))


def test_divergence_map_without_control_and_with_an_unknown_measure(tiny_root) -> None:
    exp = load_experiment(tiny_root / "tiny-synth")  # a pair, no control run
    d = divergence_map(
        exp,
        exp.runs[:2],
        layers=["features.0"],
        n_probe=16,
        measures=["procrustes"],
        n_resamples=10,
        epochs=[0, 2],
    )
    assert d.control_run is None and d.control == {}
    assert d.onset == {"procrustes": {"features.0": None}}
    assert d.table("procrustes")[0]["onset"] is None
    with pytest.raises(FxcoreError, match="unknown measure"):
        divergence_map(exp, exp.runs[:2], measures=["nope"])
