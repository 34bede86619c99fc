"""``make_demo``: trains each demo experiment and leaves the Training dynamics caches filled."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import TINY_SYNTH

import fxcore.cli.demo as demo
import fxcore.compare.analysis as analysis
import fxcore.explain.gradcam as gradcam
from fxcore.store.runs import load_experiment
from fxcore.store.select import pick_runs


def test_make_demo_trains_and_precomputes_comparison(tmp_path: Path, monkeypatch) -> None:
    cfg = dataclasses.replace(TINY_SYNTH, epochs=1)
    monkeypatch.setattr(demo, "DEMOS", {"tiny-demo": cfg, "other": cfg})
    monkeypatch.setattr(demo, "PROBE", 16)
    made = demo.make_demo(tmp_path, ["tiny-demo"])
    assert made == [tmp_path / "tiny-demo"] and not (tmp_path / "other").exists()
    exp = load_experiment(tmp_path / "tiny-demo")
    kinds = {p.name.split("-")[0] for p in (exp.path / ".fxcore-cache").glob("*.json")}
    assert {"dynamics", "cka", "localisation", "accuracy", "probes", "attribution"} <= kinds

    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("recomputed although make_demo cached it")

    # The page's calls (first two runs, the page's probe count) are now served from the cache.
    monkeypatch.setattr(analysis, "MinibatchCKA", fail)
    monkeypatch.setattr(gradcam, "grad_cam_batch", fail)  # analysis imports it when it runs
    runs = pick_runs(exp)
    assert len(analysis.cka(exp, runs, n_probe=16)["epochs"]) == 2
    assert analysis.localisation(exp, runs, n_probe=16)["runs"]
    with pytest.raises(AssertionError, match="recomputed"):
        analysis.cka(exp, runs, n_probe=8)  # a different probe count is not cached


def test_make_demo_keeps_the_runs_when_the_comparison_fails(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from fxcore.store.checkpoints import CheckpointError

    def broken(*_a: object, **_k: object) -> None:
        raise CheckpointError("disk trouble")

    monkeypatch.setattr(demo, "DEMOS", {"tiny-demo": dataclasses.replace(TINY_SYNTH, epochs=1)})
    monkeypatch.setattr(demo, "compare", broken)
    assert demo.make_demo(tmp_path) == [tmp_path / "tiny-demo"]
    assert len(load_experiment(tmp_path / "tiny-demo").runs) == 2
    assert "comparison not cached: disk trouble" in capsys.readouterr().err


def test_missing_demos_beside_the_shipped_pair(tmp_path: Path, monkeypatch) -> None:
    # Fake folders stand for finished demos here (interrupted ones: tests/test_make_run.py).
    monkeypatch.setattr(demo, "finished", lambda out, cfg: (out / "experiment.json").is_file())

    def exp(name: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "experiment.json").write_text("{}")

    assert demo.missing_demos(tmp_path / "absent") == list(demo.DEMOS)
    exp("celeba-pair")  # shipped: the demos are still trained beside it
    assert demo.missing_demos(tmp_path) == list(demo.DEMOS)
    exp("mnist-fcnn3")
    assert demo.missing_demos(tmp_path) == ["synthfaces-smiling-vs-male"]
    exp("my-own-study")  # a folder of the user's experiments: leave it alone
    assert demo.missing_demos(tmp_path) == []
