"""A damaged epoch is skipped out loud: one warning line per epoch naming the file and the reason,
the epochs actually used listed (never a range over the gap), ``--strict`` turns it into an error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fxcore.cli.main import main


@pytest.fixture
def damaged(tiny_root: Path, tmp_path: Path) -> Path:
    """A copy of ``tiny-synth`` whose run ``Smiling`` has epoch 1 overwritten with random bytes."""
    root = tmp_path / "root"
    shutil.copytree(
        tiny_root / "tiny-synth", root / "exp", ignore=shutil.ignore_patterns(".fxcore-cache")
    )
    path = root / "exp" / "Smiling" / "epoch_001.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    return root


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_stats_names_the_skipped_epoch_and_lists_the_epochs_used(
    damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.npz"
    args = [
        "stats",
        "exp",
        "--root",
        str(damaged),
        "--run",
        "Smiling",
        "--layer",
        "features.0.weight",
        "--epochs",
        "0:2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    cap = capsys.readouterr()
    (line,) = warnings_of(cap.err)
    assert "epoch 1 of run Smiling" in line and "epoch_001.safetensors" in line, line
    assert "over epochs 0, 2" in cap.out, cap.out
    assert np.load(out)["epochs"].tolist() == [0, 2]
    # Nothing damaged in the asked-for span: no warning.
    assert main([*args[:-4], "--epochs", "2:3", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert warnings_of(cap.err) == [] and "over epochs 2–3" in cap.out
    # --strict: an error line instead of fewer epochs than asked for.
    out.unlink()
    assert main([*args, "--strict"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 asked-for epoch(s) are damaged") and not out.exists()


def test_compare_and_figures_warn_and_explain_refuses_the_damaged_epoch(
    damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["exp", "--root", str(damaged)]
    assert main(["compare", *common, "--probe", "8", "--json"]) == 0
    cap = capsys.readouterr()
    assert len(warnings_of(cap.err)) == 1 and "epoch_001.safetensors" in cap.err
    result = json.loads(cap.out)
    assert result["dynamics"]["epochs"] == [0, 2, 3]
    assert [(s["run"], s["epoch"]) for s in result["skipped_epochs"]] == [("Smiling", 1)]
    assert main(["compare", *common, "--probe", "8", "--strict"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")

    assert (
        main(["figures", *common, "--probe", "8", "--out", str(tmp_path / "fig"), "--strict"]) == 1
    )
    assert "epoch 1 of run Smiling" in capsys.readouterr().err

    image = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (200, 150, 120)).save(image)
    explain = [
        "explain",
        *common,
        "--image",
        str(image),
        "--layer",
        "features.0",
        "--out",
        str(tmp_path / "ex"),
    ]
    assert main([*explain, "--epoch", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch 1 of run Smiling cannot be used" in err[0], err
    assert "valid epochs: 0, 2, 3" in err[0]
    assert main([*explain, "--epoch", "2"]) == 0
