"""fxcore.measures.similarity: weight dynamics against direct NumPy, CKA against independent formulas."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fxcore.measures import similarity as sim
from fxcore.measures.similarity import SimilarityError

KEYS = ("features.0.weight", "classifier.0.bias")


def write_run(tmp: Path, epochs: list[dict[str, np.ndarray]]) -> list[Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for e, tensors in enumerate(epochs):
        p = tmp / f"epoch_{e:03d}.safetensors"
        pt = {k: torch.from_numpy(v) for k, v in tensors.items()}
        save_file(pt, str(p), metadata={"fxcore": json.dumps({"epoch": e})})
        paths.append(p)
    return paths


def two_runs(n_ep: int = 6, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Two runs from one init: a conv weight (300, 3, 5, 5) and a zero-initialised bias."""
    rng = np.random.default_rng(seed)
    init = {
        KEYS[0]: rng.standard_normal((300, 3, 5, 5)).astype(np.float32),
        KEYS[1]: np.zeros(7, np.float32),
    }
    runs = []
    for _ in range(2):
        cur, run = {k: v.copy() for k, v in init.items()}, []
        for _ in range(n_ep):
            run.append({k: v.copy() for k, v in cur.items()})
            cur = {
                k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) for k, v in cur.items()
            }
        runs.append(run)
    return runs[0], runs[1]


def test_weight_dynamics_match_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "_BLOCK_ELEMS", 1000)  # several blocks with a ragged last one
    run_a, run_b = two_runs()
    pa, pb = write_run(tmp_path / "a", run_a), write_run(tmp_path / "b", run_b)
    key = KEYS[0]
    wa = [r[key].astype(np.float64).ravel() for r in run_a]
    wb = [r[key].astype(np.float64).ravel() for r in run_b]
    ref_drift = [np.linalg.norm(w - wa[0]) / np.linalg.norm(wa[0]) for w in wa]
    ref_update = [0.0] + [np.linalg.norm(wa[t] - wa[t - 1]) for t in range(1, len(wa))]
    ref_cos = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(wa, wb)]
    np.testing.assert_allclose(sim.drift(pa, key), ref_drift, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sim.update_size(pa, key), ref_update, rtol=1e-10)
    cos = sim.cross_cosine(pa, pb, key)
    np.testing.assert_allclose(cos, ref_cos, rtol=1e-10)
    assert cos[0] == pytest.approx(1.0)  # shared init

    dyn = sim.weight_dynamics(pa, pb, KEYS)
    assert set(dyn) == set(KEYS)
    np.testing.assert_allclose(dyn[key]["drift_a"], ref_drift, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dyn[key]["update_a"], ref_update, rtol=1e-10)
    np.testing.assert_allclose(dyn[key]["cosine"], ref_cos, rtol=1e-10)
    np.testing.assert_allclose(dyn[key]["drift_b"], sim.drift(pb, key), rtol=1e-12)
    np.testing.assert_allclose(dyn[key]["update_b"], sim.update_size(pb, key), rtol=1e-12)
    np.testing.assert_allclose(dyn[key]["norm_b"], [np.linalg.norm(w) for w in wb], rtol=1e-10)
    # A zero-initialised bias has no relative drift and no cosine at epoch 0: NaN, not a crash.
    bias = dyn[KEYS[1]]
    assert np.isnan(bias["drift_a"][0]) and np.isnan(bias["cosine"][0])
    assert bias["update_a"][1] > 0 and all(isinstance(v, float) for v in bias["norm_a"])


def test_weight_dynamics_uses_common_epochs_and_checks_shapes(tmp_path: Path) -> None:
    run_a, run_b = two_runs(n_ep=4)
    pa, pb = write_run(tmp_path / "a", run_a), write_run(tmp_path / "b", run_b[:3])
    dyn = sim.weight_dynamics(pa, pb, [KEYS[0]])
    assert all(len(v) == 3 for v in dyn[KEYS[0]].values())
    odd = write_run(tmp_path / "c", [{KEYS[0]: np.ones((2, 2), np.float32)}] * 3)
    with pytest.raises(SimilarityError, match="same model"):
        sim.cross_cosine(pa, odd, KEYS[0])


def centered(x: np.ndarray) -> np.ndarray:
    return x - x.mean(0, keepdims=True)


def feature_cka(x: np.ndarray, y: np.ndarray) -> float:
    x, y = centered(x), centered(y)
    num = np.linalg.norm(y.T @ x) ** 2
    return num / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.fixture
def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 12))
    y = x @ rng.standard_normal((12, 9)) + 0.5 * rng.standard_normal((60, 9))
    return x, y


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_identity_and_invariances(xy, unbiased: bool) -> None:
    x, y = xy
    assert sim.linear_cka(x, x, unbiased) == pytest.approx(1.0, abs=1e-12)
    base = sim.linear_cka(x, y, unbiased)
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((12, 12)))
    assert sim.linear_cka(x @ q, y, unbiased) == pytest.approx(base, rel=1e-9)
    assert sim.linear_cka(3.7 * x, 0.2 * y, unbiased) == pytest.approx(base, rel=1e-9)
    assert 0.3 < base < 1.0


def test_cka_biased_equals_feature_space_formula(xy) -> None:
    x, y = xy
    assert sim.linear_cka(x, y) == pytest.approx(feature_cka(x, y), rel=1e-10)
    # Torch input and conv-shaped activations (n, C, h, w) are flattened the same way.
    x4 = torch.from_numpy(x.reshape(60, 3, 2, 2)).float()
    assert sim.linear_cka(x4, y) == pytest.approx(
        feature_cka(x4.double().numpy().reshape(60, -1), y)
    )


def test_cka_independent_data_is_near_zero() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((400, 20)), rng.standard_normal((400, 20))
    assert abs(sim.linear_cka(x, y, unbiased=True)) < 0.03
    assert sim.linear_cka(x, y) < 0.1  # the biased estimator is pulled up by ~p/n


def test_unbiased_hsic_equals_u_statistic() -> None:
    # Song et al. 2012: HSIC_1 is the U-statistic of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq over
    # distinct (i, j, q, r); brute force on a tiny sample.
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    k, ll = x @ x.T, y @ y.T
    terms = [
        k[i, j] * ll[i, j] + k[i, j] * ll[q, r] - 2 * k[i, j] * ll[i, q]
        for i, j, q, r in itertools.permutations(range(6), 4)
    ]
    assert sim.hsic_unbiased(k, ll) == pytest.approx(np.mean(terms), rel=1e-10)


def test_minibatch_cka(xy) -> None:
    x, y = xy
    one = sim.MinibatchCKA()
    one.update(x, y)
    assert one.value() == pytest.approx(sim.linear_cka(x, y, unbiased=True), rel=1e-12)
    many = sim.MinibatchCKA()
    for s in range(0, 60, 20):
        many.update(torch.from_numpy(x[s : s + 20]), y[s : s + 20])
    assert many.batches == 3 and 0.3 < many.value() <= 1.0
    with pytest.raises(SimilarityError):
        sim.MinibatchCKA().value()
    with pytest.raises(SimilarityError, match="examples"):
        sim.linear_cka(x, y[:10])


def test_localisation_shares_by_hand() -> None:
    cams = np.zeros((3, 2, 2))
    cams[0] = [[1, 3], [0, 0]]  # eyes (top-left) get 1 of 4
    cams[1] = [[2, 0], [0, 2]]  # 2 of 4
    # image 2 is all zero: skipped
    eyes = np.zeros((3, 2, 2), bool)
    eyes[:, 0, 0] = True
    mouth = np.zeros((2, 2), bool)  # (H, W) masks broadcast over images
    mouth[1, :] = True
    shares = sim.localisation_shares(cams, {"eyes": eyes, "mouth": mouth})
    assert shares["eyes"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert shares["mouth"] == pytest.approx((0 + 2 / 4) / 2)
    assert np.isnan(sim.localisation_shares(np.zeros((1, 2, 2)), {"m": mouth})["m"])
    with pytest.raises(SimilarityError, match="non-negative"):
        sim.localisation_shares(-cams, {"eyes": eyes})
