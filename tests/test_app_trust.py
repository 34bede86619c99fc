"""Training dynamics, trustworthy part (app/trust_view.py) with AppTest: control, CIs, shares,
mean maps and the probe heatmap are drawn for an experiment with a control run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fxcore.compare import control as trust
from fxcore.store.runs import load_experiment

APP_DIR = Path(__file__).resolve().parents[1] / "app"
HOME, DYNAMICS = str(APP_DIR / "Home.py"), "views/3_Training_dynamics.py"
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="module")
def root(tiny_trio: Path) -> Path:
    # What `fxcore compare` leaves on disk; the page then only reads and draws.
    trust.compare(load_experiment(tiny_trio), ["Smiling", "Male"], n_probe=16, n_resamples=20)
    return tiny_trio.parent


def test_control_intervals_shares_maps_and_probes_are_drawn(root: Path, monkeypatch) -> None:
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(root))
    at = AppTest.from_file(HOME, default_timeout=300)
    at.session_state["experiment"] = "tiny-trio"
    at.run()
    at.switch_page(DYNAMICS)
    for key, value in {
        "td_cka_n": 16,
        "td_loc_n": 8,
        "tr_on": True,
        "tr_n": 16,
        "tr_boot": 20,
    }.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = {c.proto.id: c.proto.spec for c in at.get("plotly_chart")}
    specs = " ".join(charts.values())
    assert "L1 vs control" in specs and "permuted-pairing null" in specs  # control + null
    assert '"error_y"' in specs  # CIs as error bars
    assert "Share of attribution energy" in specs and "features.49" in specs  # per-layer shares
    assert "L1 \\u2212 L2" in specs or "L1 − L2" in specs  # mean-map difference
    assert "features \\u2192 Smiling" in specs or "features → Smiling" in specs  # probes
    assert any("Control: **Smiling-control1**" in m.value for m in at.caption)
    assert any("per-image ground truth" in m.value for m in at.caption)
