"""Control runs: same task and init as the first run, their own batch order (fxcore.train.loop)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_SYNTH
from safetensors.torch import load_file

from fxcore.store.checkpoints import CheckpointError
from fxcore.store.runs import load_experiment
from fxcore.store.select import pick_control, pick_runs
from fxcore.train.batches import epoch_order
from fxcore.train.config import run_specs
from fxcore.train.loop import train

TINY = replace(TINY_SYNTH, epochs=2, seed=3, synth_train=48)


@pytest.fixture(scope="module")
def with_control(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(replace(TINY, controls=1), tmp_path_factory.mktemp("ctl") / "tiny")


def _weights(exp: Path, run: str, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(str(exp / run / f"epoch_{epoch:03d}.safetensors"))


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_control_shares_init_and_task_but_not_batch_order(with_control: Path) -> None:
    exp = load_experiment(with_control)
    assert [r.name for r in exp.runs] == ["Smiling", "Male", "Smiling-control1"]
    ctl = exp.run("Smiling-control1")
    assert ctl.is_control and ctl.attribute == "Smiling" and not exp.run("Smiling").is_control
    assert exp.info["controls"] == ["Smiling-control1"]
    # Same init ...
    assert _equal(_weights(with_control, "Smiling", 0), _weights(with_control, ctl.name, 0))
    # ... a different batch order every epoch ...
    specs = run_specs(["Smiling", "Male"], TINY.seed, 1)
    assert ctl.info["order_seed"] == specs[2].order_seed != specs[0].order_seed
    for e in (1, 2):
        a, b = epoch_order(48, specs[0].order_seed, e), epoch_order(48, specs[2].order_seed, e)
        assert not torch.equal(a, b)
    # ... so the same task ends in different weights, while each is a fully trained run.
    w_main, w_ctl = _weights(with_control, "Smiling", 2), _weights(with_control, ctl.name, 2)
    assert not torch.equal(w_main["classifier.6.weight"], w_ctl["classifier.6.weight"])
    assert [r["epoch"] for r in ctl.metrics()] == [1, 2]
    # Analysis compares L1 with L2 by default and finds the control as the baseline.
    assert [r.name for r in pick_runs(exp)] == ["Smiling", "Male"]
    control = pick_control(exp, exp.runs[0])
    assert control is not None and control.name == "Smiling-control1"


def test_controls_leave_the_attribute_runs_untouched(with_control: Path, tmp_path: Path) -> None:
    plain = train(TINY, tmp_path / "plain")
    for run in ("Smiling", "Male"):
        for e in (0, 1, 2):
            assert _equal(_weights(plain, run, e), _weights(with_control, run, e)), (run, e)
    assert pick_control(load_experiment(plain), load_experiment(plain).runs[0]) is None


def test_control_with_its_own_init_and_resume(tmp_path: Path, with_control: Path) -> None:
    out = train(replace(TINY, epochs=1, controls=1, control_init="seed"), tmp_path / "seeded")
    assert not _equal(_weights(out, "Smiling", 0), _weights(out, "Smiling-control1", 0))
    with pytest.raises(CheckpointError, match="control_init"):
        run_specs(["Smiling"], 0, 1, "other")
    # Resuming an experiment with a control replays it exactly.
    part = tmp_path / "part"
    train(replace(TINY, epochs=1, controls=1), part)
    train(replace(TINY, controls=1), part, resume=True)
    assert _equal(
        _weights(part, "Smiling-control1", 2), _weights(with_control, "Smiling-control1", 2)
    )


def test_figures_draw_the_control_beside_the_pair(
    with_control: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fxcore.compare import figures

    legends: dict[str, list[str]] = {}
    real_save = figures._save

    def spy(fig, path):
        legends[Path(path).name] = [
            t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
        ]
        from matplotlib.collections import PolyCollection  # fill_between's bands

        bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
        legends[Path(path).name + ":bands"] = [str(len(bands))]
        return real_save(fig, path)

    monkeypatch.setattr(figures, "_save", spy)
    figures.dynamics_figures(load_experiment(with_control), tmp_path, n_probe=16)
    ctl = "Smiling-control1"
    assert any(ctl in t and "control" in t for t in legends["drift_by_layer.png"])
    assert any(ctl in t for t in legends["cka_vs_control.png"])
    assert legends["cka_vs_control.png:bands"] == ["2"]  # the pair's and the control's 95% bands
    assert any(t.startswith(f"{ctl} (control)") for t in legends["attention_localisation.png"])
