"""A float16 experiment (``fxcore ship``) reads back through the store: stats, CKA and the app."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fxcore.compare.analysis import cka, run_mean_var
from fxcore.compare.ship import ship_experiment
from fxcore.store.checkpoints import read_meta
from fxcore.store.runs import load_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the float32 tiny-synth, a float16 copy of it) under two roots."""
    base = tmp_path_factory.mktemp("ship")
    full, half = base / "f32" / "tiny-synth", base / "f16" / "tiny-synth"
    for dst in (full, half):
        shutil.copytree(
            tiny_root / "tiny-synth",
            dst,
            ignore=shutil.ignore_patterns(".fxcore-cache", "evaluations"),
        )
    res = ship_experiment(half)
    assert res["files"] == 8 and res["bytes_after"] < 0.5 * res["bytes_before"]
    assert ship_experiment(half)["files"] == 0  # idempotent
    return full, half


def test_float16_files_keep_metadata_and_drop_optimizer_state(pair) -> None:
    full, half = pair
    for run in ("Smiling", "Male"):
        assert not list((half / run).glob("optim_*"))
        sd = load_file(str(half / run / "epoch_003.safetensors"))
        assert {t.dtype for t in sd.values() if t.is_floating_point()} == {torch.float16}
        meta, ref = (
            read_meta(half / run / "epoch_003.safetensors"),
            read_meta(full / run / "epoch_003.safetensors"),
        )
        assert meta.pop("stored_dtype") == "float16" and meta == ref


def test_stats_and_cka_of_float16_match_float32(pair) -> None:
    full, half = pair
    ef, eh = load_experiment(full), load_experiment(half)
    key = "features.0.weight"
    mf, vf = run_mean_var(ef.run("Smiling"), key)
    mh, vh = run_mean_var(eh.run("Smiling"), key)
    np.testing.assert_allclose(mh, mf, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(vh, vf, atol=2e-4, rtol=5e-2)
    ck_f, ck_h = cka(ef, ef.runs, n_probe=16), cka(eh, eh.runs, n_probe=16)
    assert ck_f["layers"].keys() == ck_h["layers"].keys()
    for layer, values in ck_f["layers"].items():
        np.testing.assert_allclose(ck_h["layers"][layer], values, atol=1e-2)  # 16 probes
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        pf = ef.run("Male").build_model(3)(x)
        ph = eh.run("Male").build_model(3)(x)
    torch.testing.assert_close(ph, pf, atol=5e-3, rtol=5e-3)


def test_app_pages_on_a_float16_experiment(pair, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    _, half = pair
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(half.parent))
    at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=180)
    at.session_state["experiment"] = "tiny-synth"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for page in ("views/1_Feature_maps.py", "views/2_Weight_statistics.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert at.get("plotly_chart"), page
    assert len(at.get("plotly_chart")) >= 1
