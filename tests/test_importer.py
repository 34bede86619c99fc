"""`import`: per-epoch state dicts from a user's own script become a run every command can use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fxcore.cli.main import main
from fxcore.models.nets import build_model
from fxcore.store.checkpoints import CheckpointError
from fxcore.store.importer import import_run
from fxcore.store.runs import open_experiment

ROOT = Path(__file__).resolve().parents[1]


def _series(src: Path, name: str = "vgg-mini", n_out: int = 1000, kind: str = ".pt") -> list[dict]:
    src.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    model = build_model(name, n_out)
    states = []
    for e in (0, 2, 1, 10):  # unsorted on purpose; numbers come from the names
        state = {f"module.{k}": v + e for k, v in model.state_dict().items()}
        if kind == ".pt":
            torch.save(state, src / f"weights_epoch{e}.pt")
        else:
            save_file(
                {k: v.contiguous() for k, v in state.items()}, str(src / f"ep-{e}.safetensors")
            )
        states.append((e, state))
    return [s for _, s in sorted(states, key=lambda t: t[0])]


@pytest.mark.parametrize("kind", [".pt", ".safetensors"])
def test_import_series_with_1000_class_head(tmp_path: Path, kind: str) -> None:
    states = _series(tmp_path / "src", kind=kind)
    run_dir = import_run(tmp_path / "src", "vgg-mini", tmp_path / "imported" / "Smiling")
    run = open_experiment(tmp_path / "imported").run("Smiling")
    assert run.epochs() == [0, 1, 2, 10] and run.bad_epochs() == {}
    assert torch.equal(
        run.read_tensor(10, "classifier.6.weight"), states[-1]["module.classifier.6.weight"]
    )
    assert run.info["num_outputs"] == 1000
    assert run.build_model(2).classifier[6].out_features == 1000
    assert (run_dir.parent / "experiment.json").is_file()


def test_import_cli_and_runs_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _series(tmp_path / "src", name="fcnn3", n_out=10)
    assert (
        main(
            [
                "import",
                str(tmp_path / "src"),
                "--model",
                "fcnn3",
                "--out",
                str(tmp_path / "root" / "mine" / "digit"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["runs", "--root", str(tmp_path / "root"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["experiment"] == "mine" and rows[0]["model"] == "fcnn3"
    assert rows[0]["epochs"][:3] == [0, 1, 2]


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    _series(tmp_path / "src", name="fcnn3", n_out=10)
    with pytest.raises(CheckpointError, match="head|does not match"):
        import_run(tmp_path / "src", "vgg-mini", tmp_path / "x" / "r")


def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    marker = tmp_path / "pwned"
    code = (
        f"import os, torch\nclass E:\n def __reduce__(self): return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'w': E()}}, '{src / 'epoch_1.pt'}')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(CheckpointError, match="weights-only"):
        import_run(src, "fcnn3", tmp_path / "x" / "r")
    assert not marker.exists()
