"""`figures` writes every expected figure as a valid, non-blank PNG (tiny fixture experiments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fxcore.cli.main import main

EXPECTED = {
    "tiny-synth": [
        "fig2_1_attributes.png",
        "fig3_1_feature_maps_Smiling.png",
        "fig3_2_feature_maps_Male.png",
        "fig3_7_Smiling_mean.png",
        "fig3_8_Male_mean.png",
        "fig3_9_Smiling_var.png",
        "fig3_10_Male_var.png",
        "drift_by_layer.png",
        "cka_layer_epoch.png",
        "cka_vs_control.png",
        "attention_localisation.png",
    ],
    "tiny-mnist": [
        "fig2_1_attributes.png",
        "fig3_3_mnist_weights_epoch1.png",
        "fig3_4_mnist_weights_epoch3.png",
        "fig3_5_mnist_mean.png",
        "fig3_6_mnist_variance.png",
        "mnist_unit_tiles.png",
        "drift_by_layer.png",
    ],
}


def test_figures_command_writes_valid_pngs(tiny_root: Path, tmp_path: Path) -> None:
    for exp, names in EXPECTED.items():
        out = tmp_path / exp
        assert (
            main(["figures", exp, "--root", str(tiny_root), "--out", str(out), "--probe", "16"])
            == 0
        )
        assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
        for name in names:
            with Image.open(out / name) as im:
                im.verify()
            arr = np.asarray(Image.open(out / name).convert("L"), dtype=np.float32)
            assert arr.shape[0] > 100 and arr.shape[1] > 100
            assert arr.std() > 5, f"{exp}/{name} looks blank"
