"""Linear mode connectivity: interpolation, BatchNorm re-estimation, the barrier and its interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fxcore.core.errors import FxcoreError
from fxcore.measures.lmc import (
    ALPHAS,
    ConnectivityMap,
    connectivity,
    error_barrier,
    has_batchnorm,
    interpolate_state,
    path_errors,
    reestimate_batchnorm,
)
from fxcore.models.nets import FCNN3, VGGMini
from fxcore.store.runs import load_experiment

X = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0].mean((1, 2)) > 0).numpy().astype(np.float64)


def seeded(seed: int) -> VGGMini:
    torch.manual_seed(seed)
    return VGGMini().eval()


def test_interpolation_hits_both_ends_and_the_middle() -> None:
    sa, sb = seeded(0).state_dict(), seeded(1).state_dict()
    k = "features.0.weight"
    torch.testing.assert_close(interpolate_state(sa, sb, 0.0)[k], sa[k])
    torch.testing.assert_close(interpolate_state(sa, sb, 1.0)[k], sb[k])
    torch.testing.assert_close(interpolate_state(sa, sb, 0.5)[k], (sa[k] + sb[k]) / 2)
    counter = "features.1.num_batches_tracked"
    assert interpolate_state(sa, sb, 0.5)[counter].dtype == sa[counter].dtype
    with pytest.raises(FxcoreError):
        interpolate_state(sa, FCNN3().state_dict(), 0.5)


def test_batchnorm_statistics_are_the_average_over_the_images() -> None:
    model = seeded(0)
    assert has_batchnorm(model) and not has_batchnorm(FCNN3())
    dropout_before = [m.training for m in model.modules()]
    reestimate_batchnorm(model, X, batch=20)  # equal batches: their mean is the mean
    bn = model.features[1]
    with torch.no_grad():
        out = model.features[0](X)
    torch.testing.assert_close(bn.running_mean, out.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training
    assert [m.training for m in model.modules()] == dropout_before


def test_barrier_between_a_model_and_itself_is_zero() -> None:
    state = seeded(0).state_dict()
    errors = path_errors(VGGMini, state, state, X, X, Y, ALPHAS)
    assert errors.shape == (len(ALPHAS), len(X))
    assert (errors == errors[0]).all()
    assert error_barrier(errors) == (0.0, 0.0, 0.0)


def test_barrier_on_hand_made_error_curves() -> None:
    alphas = [0.0, 0.5, 1.0]
    bump = np.array([[0, 0, 1, 0], [1, 1, 1, 0], [0, 1, 0, 0]], dtype=float)  # 0.25, 0.75, 0.25
    value, low, high = error_barrier(bump, alphas, n_resamples=100, seed=1)
    assert value == pytest.approx(0.5) and low <= value <= high
    assert error_barrier(bump, alphas, n_resamples=100, seed=1) == (value, low, high)
    flat_line = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=float)
    assert error_barrier(flat_line, alphas, n_resamples=50)[0] == pytest.approx(0.0)
    with pytest.raises(FxcoreError):
        error_barrier(bump, [0.0, 1.0])


@pytest.fixture(scope="module")
def trio(tiny_trio):
    return load_experiment(tiny_trio)


def test_connectivity_of_l1_and_its_control(trio) -> None:
    l1, _, control = trio.runs
    alphas = [0.0, 0.5, 1.0]
    m = connectivity(trio, n_probe=16, n_bn=16, alphas=alphas, n_resamples=20)
    assert m.runs == [l1.name, control.name] and m.epochs == [1, 2] and m.batchnorm
    assert len(m.error) == 2 and len(m.error[0]) == 3
    for value, low, high in m.barrier:
        assert low <= value <= high
    assert ConnectivityMap.from_json(json.loads(json.dumps(m.to_json()))) == m
    same = connectivity(trio, [l1, l1], epochs=[2], n_probe=16, n_bn=16, alphas=alphas)
    assert same.barrier == [[0.0, 0.0, 0.0]]
    # Epoch 0: L1 and its control are one init.
    assert connectivity(trio, epochs=[0], n_probe=16, n_bn=16, alphas=alphas).barrier[0][0] == 0.0


def test_connectivity_needs_a_control_or_two_named_runs(tiny_root) -> None:
    with pytest.raises(FxcoreError, match="control"):
        connectivity(load_experiment(tiny_root / "tiny-synth"))
