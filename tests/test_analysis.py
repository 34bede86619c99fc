"""Experiment-level analysis on a real tiny experiment: weight maps, dynamics, CKA, localisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fxcore.compare.analysis import cka, dynamics, explain, localisation, weight_maps
from fxcore.store.runs import open_experiment
from fxcore.store.select import pick_runs


def test_weight_maps_and_difference(tiny_root: Path) -> None:
    exp = open_experiment("tiny-synth", root=tiny_root)
    runs = pick_runs(exp)
    wm = weight_maps(runs, "features.0.weight", 0, 3)
    assert wm.epochs == [0, 1, 2, 3]
    a = np.stack([runs[0].read_tensor(e, "features.0.weight").numpy() for e in range(4)])
    b = np.stack([runs[1].read_tensor(e, "features.0.weight").numpy() for e in range(4)])
    out_c, in_c, kh, kw = a.shape[1:]
    ref = a.mean(0).transpose(0, 2, 1, 3).reshape(out_c * kh, in_c * kw)
    np.testing.assert_allclose(wm.mean["Smiling"], ref, rtol=1e-5, atol=1e-7)
    ref_b = b.var(0).transpose(0, 2, 1, 3).reshape(out_c * kh, in_c * kw)
    np.testing.assert_allclose(wm.var["Male"], ref_b, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(
        wm.mean["difference"], wm.mean["Smiling"] - wm.mean["Male"], atol=1e-7
    )


def test_dynamics_cached_and_consistent(tiny_root: Path) -> None:
    exp = open_experiment("tiny-synth", root=tiny_root)
    runs = pick_runs(exp)
    d1 = dynamics(exp, runs)
    assert list((exp.path / ".fxcore-cache").glob("dynamics-*.json"))
    d2 = dynamics(exp, runs)
    assert json.dumps(d1, sort_keys=True) == json.dumps(d2, sort_keys=True)  # NaN-safe: epoch 0's
    # update cosine is undefined (no update yet)
    layer = d1["layers"]["classifier.6.weight"]
    assert layer["cosine"][0] == pytest.approx(1.0)  # shared init
    assert layer["drift_a"][0] == 0.0 and layer["drift_a"][-1] > 0
    w0 = runs[0].read_tensor(0, "classifier.6.weight").double()
    w3 = runs[0].read_tensor(3, "classifier.6.weight").double()
    assert layer["drift_a"][3] == pytest.approx(float((w3 - w0).norm() / w0.norm()), rel=1e-6)


def test_cka_is_one_at_shared_init(tiny_root: Path) -> None:
    exp = open_experiment("tiny-synth", root=tiny_root)
    res = cka(exp, pick_runs(exp), n_probe=32, batch=16, epochs=[0, 3])
    for values in res["layers"].values():
        assert values[0] == pytest.approx(1.0, abs=1e-6)
        # The unbiased estimator can dip slightly below 0, never above 1.
        assert -0.1 <= values[1] <= 1.0 + 1e-6, values
    # Three epochs on different labels move at least one layer apart.
    assert min(v[1] for v in res["layers"].values()) < 0.999, res["layers"]


def test_localisation(tiny_root: Path) -> None:
    exp = open_experiment("tiny-synth", root=tiny_root)
    loc = localisation(exp, pick_runs(exp), n_probe=16, epochs=[3])
    assert {"mouth", "eyes", "nose"} <= set(loc["regions"])
    for shares in loc["runs"].values():
        share = shares["mouth"][0]
        assert share != share or 0.0 <= share <= 1.0  # NaN when a model's CAM is all zero


def test_explain_two_models(tiny_root: Path) -> None:
    exp = open_experiment("tiny-synth", root=tiny_root)
    models = [(r.name, r.attribute, r.build_model(3)) for r in pick_runs(exp)]
    x = torch.rand(1, 3, 32, 32)
    views = explain(models, x, "features.3", top_k=4)
    assert [v.run for v in views] == ["Smiling", "Male"]
    for v in views:
        assert v.channel_mean.shape == (32, 32) and v.top_maps.shape == (4, 32, 32)
        assert v.cam_positive.shape == (32, 32) and 0.0 <= v.probability <= 1.0
