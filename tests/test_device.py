"""--device for the analysis: one resolver, cpu gives exactly today's numbers, cuda without CUDA
is a clear error; compare announces its work and reports progress on stderr."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fxcore.cli.main import main
from fxcore.compare import control as trust
from fxcore.compare.plan import plan_compare
from fxcore.core.devices import DEVICE_ENV, resolve_device
from fxcore.core.errors import DeviceError
from fxcore.store.runs import load_experiment

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
FAST = ["--probe", "8", "--bootstrap", "10"]


def test_resolver_cpu_and_unknown(monkeypatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device("cpu") == "cpu" and resolve_device("CPU") == "cpu"
    with pytest.raises(DeviceError, match="--device tpu: unknown device; use one of auto, cpu"):
        resolve_device("tpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(DeviceError, match=f"{DEVICE_ENV}=tpu"):
        resolve_device()
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device() == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@NO_CUDA
def test_auto_is_cpu_and_cuda_is_a_clear_error_here(monkeypatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device() == "cpu" and resolve_device("auto") == "cpu"
    with pytest.raises(DeviceError, match="sees no CUDA device.*use --device auto or cpu"):
        resolve_device("cuda")
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceError, match=f"{DEVICE_ENV}=cuda: PyTorch"):
        resolve_device()


@NO_CUDA
@pytest.mark.parametrize("command", ["compare", "eval", "explain", "figures"])
def test_every_model_command_refuses_cuda_in_one_line_before_any_work(
    command: str, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    shutil.copytree(tiny_root / "tiny-synth", tmp_path / "tiny-synth")
    shutil.rmtree(tmp_path / "tiny-synth" / ".fxcore-cache", ignore_errors=True)
    extra = {
        "compare": [],
        "eval": ["--centre"],
        "explain": ["--image", "x.png", "--epoch", "1", "--layer", "features.0", "--out", "o"],
        "figures": ["--out", str(tmp_path / "fig")],
    }[command]
    argv = [command, "tiny-synth", "--root", str(tmp_path), "--device", "cuda", *extra]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda: PyTorch"), lines
    assert not (tmp_path / "tiny-synth" / ".fxcore-cache").exists()


def test_build_model_on_cpu_is_the_model_as_before(tiny_root: Path) -> None:
    run = load_experiment(tiny_root / "tiny-synth").run("Smiling")
    a, b = run.build_model(2), run.build_model(2, "cpu")
    assert not b.training and next(b.parameters()).device.type == "cpu"
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.fixture(scope="module")
def cold_runs(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``compare --json`` twice on uncached copies of tiny-synth: plain and ``--device cpu``."""
    out = {}
    for name, extra in (("plain", []), ("cpu", ["--device", "cpu"])):
        root = tmp_path_factory.mktemp(f"cold-{name}")
        shutil.copytree(tiny_root / "tiny-synth", root / "tiny-synth")
        shutil.rmtree(root / "tiny-synth" / ".fxcore-cache", ignore_errors=True)
        out[name] = (root, [*FAST, "--epochs", "3:", "--json", *extra])  # one cold epoch
    return out


def test_device_cpu_gives_exactly_the_numbers_of_no_option(cold_runs: dict, capsys) -> None:
    texts = {}
    for name, (root, argv) in cold_runs.items():
        assert main(["compare", "tiny-synth", "--root", str(root), *argv]) == 0
        captured = capsys.readouterr()
        texts[name] = captured.out
        if name == "plain":  # announced on stderr, result alone on stdout
            plan = plan_compare(load_experiment(root / "tiny-synth"), None, 8, [3])
            assert captured.err.startswith(f"{plan.describe()} on cpu\n"), captured.err
            assert "estimate: about " in captured.err
            assert f"{plan.total}/{plan.total}" in captured.err  # the bar reached the end
    assert texts["cpu"] == texts["plain"]  # byte for byte: the same JSON, the same numbers
    res = json.loads(texts["plain"])
    assert res["limits"]["epochs"] == [3] and res["cka"]["epochs"] == [3]


def test_library_progress_hook_counts_every_planned_step(tiny_root: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_root / "tiny-synth", tmp_path / "tiny-synth")
    exp = load_experiment(tmp_path / "tiny-synth")
    calls: list[tuple[int, int, str]] = []
    kw = {"n_probe": 8, "n_resamples": 10, "epochs": [2, 3], "layers": ["features.0"]}
    res = trust.compare(exp, progress=lambda *c: calls.append(c), **kw)
    total = plan_compare(exp, None, 8, [2, 3], ["features.0"]).total
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == total and {c[1] for c in calls} == {total}
    assert res["limits"] == {"epochs": [2, 3], "layers": ["features.0"]}
    assert res["cka"]["epochs"] == [2, 3] and list(res["cka"]["layers"]) == ["features.0"]
    assert res["probes"]["layers"] == ["features.0"]
    assert set(res["attribution"]["sources"]) == {"smoothgrad-ixg"}  # features.0 ends no block
    again: list[tuple[int, int, str]] = []  # cached: the count still reaches its end
    trust.compare(exp, progress=lambda *c: again.append(c), **kw)
    assert again[-1][:2] == (total, total)


def test_compare_limits_on_the_command_line(tiny_root: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(tiny_root / "tiny-synth", tmp_path / "tiny-synth")
    argv = ["compare", "tiny-synth", "--root", str(tmp_path), *FAST]
    assert main([*argv, "--epochs", "3:", "--layers", "classifier.6", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cka"]["epochs"] == [3] and list(res["cka"]["layers"]) == ["classifier.6"]
    assert main([*argv, "--layers", "features.99"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown layer(s) features.99" in err[0] and "features.0" in err[0]
    assert main([*argv, "--epochs", "7:9"]) == 1
    assert "no valid epoch in 7..9" in capsys.readouterr().err


def test_the_app_runs_its_models_on_fxcore_device(tiny_root: Path, monkeypatch) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
    import cache

    run = load_experiment(tiny_root / "tiny-synth").run("Smiling")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert cache.device() == "cpu"
    assert next(cache.model(run, 1).parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(DeviceError, match=f"{DEVICE_ENV}=cuda"):
            cache.model(run, 1)
