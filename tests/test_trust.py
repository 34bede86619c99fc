"""compare with controls and intervals (fxcore.compare.control): L1 vs L2 and L1 vs control, cached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fxcore.cli.main import main
from fxcore.compare import analysis
from fxcore.compare import control as trust
from fxcore.explain import activations, gradcam
from fxcore.explain.activations import layer_grams
from fxcore.measures.uncertainty import minibatch_cka
from fxcore.store.probeset import probe_set
from fxcore.store.runs import load_experiment
from fxcore.store.select import pick_runs


@pytest.fixture(scope="module")
def exp_dir(tiny_trio: Path) -> Path:
    return tiny_trio  # 64 train, 32 val images at 32 px, 2 epochs, L1's control


@pytest.fixture(scope="module")
def result(exp_dir: Path) -> dict:
    return trust.compare(load_experiment(exp_dir), n_probe=32, n_resamples=50)


def test_every_pairwise_measure_for_the_pair_and_the_control(result: dict) -> None:
    assert result["runs"] == ["Smiling", "Male"]
    ctl = result["control"]
    assert ctl["runs"] == ["Smiling", "Smiling-control1"]
    for part in (result, ctl):
        c = part["cka"]
        for name, values in c["layers"].items():
            assert values[0] == pytest.approx(1.0, abs=1e-6)  # shared init
            for v, lo, hi in zip(values, c["low"][name], c["high"][name]):
                if np.isfinite(v):
                    assert lo - 1e-9 <= v <= hi + 1e-9
        assert abs(np.nanmean([v[-1] for v in c["null"].values()])) < 0.3
        loc = part["localisation"]
        for run, shares in loc["runs"].items():
            for region, values in shares.items():
                for v, (lo, hi) in zip(values, loc["ci"][run][region]):
                    assert lo - 1e-9 <= v <= hi + 1e-9
        d = part["dynamics"]["layers"]["classifier.6.weight"]
        assert np.isnan(d["update_cosine"][0]) and -1 <= d["update_cosine"][-1] <= 1
        assert 0 <= d["common_share"][-1] <= 1
    assert set(result["accuracy"]["runs"]) == {"Smiling", "Male", "Smiling-control1"}
    assert set(result["probes"]["runs"]) == {"Smiling", "Male", "Smiling-control1"}


def test_cka_value_is_the_minibatch_estimator_on_the_probe_grams(exp_dir: Path) -> None:
    exp = load_experiment(exp_dir)
    runs = pick_runs(exp)
    res = analysis.cka(exp, runs, n_probe=32, batch=16, epochs=[2], n_resamples=20)
    x, _ = probe_set(exp, 32)
    ma, mb = runs[0].build_model(2), runs[1].build_model(2)
    ga, gb = layer_grams(ma, x, ["features.7"], 16), layer_grams(mb, x, ["features.7"], 16)
    want = minibatch_cka(ga["features.7"], gb["features.7"], 16)
    assert res["layers"]["features.7"][0] == pytest.approx(want, rel=1e-9)


def test_update_geometry_matches_a_torch_reference(exp_dir: Path) -> None:
    exp = load_experiment(exp_dir)
    a, c = exp.run("Smiling"), exp.run("Smiling-control1")
    d = analysis.dynamics(exp, [a, c])["layers"]["features.7.weight"]
    da = (a.read_tensor(2, "features.7.weight") - a.read_tensor(0, "features.7.weight")).double()
    dc = (c.read_tensor(2, "features.7.weight") - c.read_tensor(0, "features.7.weight")).double()
    cos = float(torch.dot(da.flatten(), dc.flatten()) / (da.norm() * dc.norm()))
    common = float((da + dc).norm() ** 2 / (2 * (da.norm() ** 2 + dc.norm() ** 2)))
    assert d["update_cosine"][2] == pytest.approx(cos, rel=1e-6)
    assert d["common_share"][2] == pytest.approx(common, rel=1e-6)


def test_probe_accuracy_equals_the_trainer_validation_accuracy(exp_dir: Path, result) -> None:
    exp = load_experiment(exp_dir)
    for run in exp.runs:  # the probe set is the whole (32-image) validation split here
        got = [row[0] for row in result["accuracy"]["runs"][run.name]]
        want = [m["val_accuracy"] for m in run.metrics()]
        assert got[1:] == pytest.approx(want, abs=1e-6)
        for v, lo, hi in result["accuracy"]["runs"][run.name]:
            assert lo <= v <= hi


def test_compare_is_cached_and_the_cli_prints_both_comparisons(
    exp_dir: Path, result, capsys, monkeypatch
) -> None:
    def fail(*_a, **_k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(gradcam, "grad_cam_batch", fail)  # analysis imports both lazily
    monkeypatch.setattr(activations, "layer_grams", fail)
    monkeypatch.setattr(trust, "pooled_activations", fail)
    again = trust.compare(load_experiment(exp_dir), n_probe=32, n_resamples=50)
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)  # NaN-safe
    assert main(["compare", str(exp_dir), "--probe", "32", "--bootstrap", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["control"]["runs"] == ["Smiling", "Smiling-control1"]
    assert main(["compare", str(exp_dir), "--probe", "32", "--bootstrap", "50"]) == 0
    assert "control CKA" in capsys.readouterr().out
