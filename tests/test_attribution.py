"""Attribution across layers and methods, the cascading-randomisation check, and probes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fxcore.explain.attribution import (
    INPUT_METHOD,
    attribution_maps,
    block_convs,
    sources,
)
from fxcore.explain.gradcam import grad_cam_batch
from fxcore.measures.probes import probe_accuracy
from fxcore.store.probeset import probe_set
from fxcore.store.runs import open_experiment


def test_block_convs_and_fused_gradcam_equal_captum(tiny_root: Path) -> None:
    exp = open_experiment("tiny-synth", root=tiny_root)
    model = exp.runs[0].build_model(3)
    assert block_convs(model) == [
        "features.3",
        "features.10",
        "features.23",
        "features.36",
        "features.49",
    ]
    x, _ = probe_set(exp, 6)
    maps = attribution_maps(model, x, sources(model))
    for layer in block_convs(model):
        ref = grad_cam_batch(model, x, layer, "positive")
        np.testing.assert_allclose(maps[f"gradcam:{layer}"], ref, rtol=1e-5, atol=1e-9)
    assert maps[INPUT_METHOD].shape == (6, 32, 32) and maps[INPUT_METHOD].min() >= 0
    again = attribution_maps(model, x, [INPUT_METHOD])[INPUT_METHOD]
    np.testing.assert_array_equal(again, maps[INPUT_METHOD])  # seeded noise


def test_probe_reads_a_linearly_coded_attribute() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    coded = rng.normal(size=(300, 16)) + 3.0 * y[:, None] * (np.arange(16) < 3)
    assert probe_accuracy(coded, y, seed=0).value > 0.9
    noise = probe_accuracy(rng.normal(size=(300, 16)), y, seed=0)
    assert 0.3 < noise.value < 0.7 and noise.low < 0.5 < noise.high
    assert np.isnan(probe_accuracy(coded, np.zeros(300), seed=0).value)  # one class only
