"""Model stitching: boundaries by module type, a model stitched to itself loses nothing, the map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from fxcore.core.errors import FxcoreError
from fxcore.measures.stitching import (
    Stitched,
    StitchMap,
    block_boundaries,
    fit_least_squares,
    stitching,
    stitching_penalty,
    train_stitch,
)
from fxcore.models.nets import FCNN3, VGGMini
from fxcore.store.runs import load_experiment


class OddVGG(nn.Module):
    """A features/avgpool/classifier model with its own layout and widths (no BatchNorm)."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 5, 3, padding=1),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def seeded(cls, seed: int, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kw).eval()


X = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0].mean((1, 2)) > 0).numpy().astype(np.float64)


def test_boundaries_are_the_max_pools_before_the_last() -> None:
    model = VGGMini()
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert block_boundaries(model) == pools[:-1] and len(pools) == 5
    assert block_boundaries(OddVGG()) == [2, 7]
    with pytest.raises(FxcoreError, match="VGG-like"):
        block_boundaries(FCNN3())


def test_identity_stitch_of_a_model_with_itself_is_the_model() -> None:
    model = seeded(VGGMini, 0)
    for i in block_boundaries(model):
        stitched = Stitched(model, model, i)
        torch.testing.assert_close(stitched(X), model(X), rtol=1e-5, atol=1e-6)
        out = stitching_penalty(model, model, i, X, Y, X, Y, steps=0, init="identity")
        assert out["penalty"] == [0.0, 0.0, 0.0]


def test_least_squares_stitch_of_a_model_with_itself_is_exact_and_stays_near_it() -> None:
    model = seeded(OddVGG, 1)
    for i in block_boundaries(model):
        stitched = Stitched(model, model, i)
        fit_least_squares(stitched, model, X)
        # The identity up to units that never fire on X (their weights are free, lstsq zeroes them)
        torch.testing.assert_close(stitched(X), model(X), rtol=1e-4, atol=1e-4)
        out = stitching_penalty(model, model, i, X, Y, X, Y, steps=20, n_resamples=50)
        assert abs(out["penalty"][0]) <= 0.05
        assert out["accuracy_b"] == pytest.approx(out["accuracy_stitched"], abs=0.05)


def test_only_the_stitch_trains_and_its_loss_falls() -> None:
    a, b = seeded(OddVGG, 2), seeded(OddVGG, 3)
    stitched = Stitched(a, b, 2)
    frozen = {k: v.clone() for k, v in stitched.state_dict().items() if not k.startswith("stitch")}
    losses = train_stitch(stitched, X, torch.as_tensor(Y), steps=60, lr=1e-2)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    for k, v in stitched.state_dict().items():
        if k in frozen:
            torch.testing.assert_close(v, frozen[k])
    with pytest.raises(FxcoreError, match="init"):
        stitching_penalty(a, b, 2, X, Y, X, Y, init="random")


@pytest.fixture(scope="module")
def trio(tiny_trio):
    return load_experiment(tiny_trio)


def test_stitch_map_of_the_pair_and_the_control(trio) -> None:
    l1, l2, control = trio.runs
    kw = {"n_probe": 16, "n_train": 32, "steps": 5, "n_resamples": 20}
    m = stitching(trio, [l1, l2], **kw)
    assert m.control_run == control.name and m.epochs == [2]
    assert len(m.boundaries) == 4 and set(m.pair) == set(m.control) == set(m.boundaries)
    for side in (m.pair, m.control):
        for rows in side.values():
            value, low, high = rows[0]["penalty"]
            assert low <= value <= high and -1 <= value <= 1
    assert StitchMap.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert stitching(trio, [l1, l2], **kw) == m  # from the cache
    first = stitching(trio, [l1, l2], epochs=[0], **kw)  # one shared init: nothing to lose
    for rows in first.pair.values():
        assert abs(rows[0]["penalty"][0]) <= 0.15
