"""The store owns its format: trainer and importer write experiments, runs and epochs through
the same calls of :mod:`fxcore.store.checkpoints`, and never write the files themselves."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import torch
from conftest import TINY_SYNTH
from safetensors.torch import save_file

from fxcore.models.nets import build_model
from fxcore.store import checkpoints, importer
from fxcore.store.runs import load_experiment
from fxcore.train import loop as train_mod

FXCORE = Path(__file__).resolve().parents[1] / "fxcore"
RAW_WRITERS = {"atomic_write_json", "atomic_write_bytes", "save_checkpoint", "append_jsonl"}


def _spy(monkeypatch, module, name: str, calls: list) -> None:
    real = getattr(module, name)

    def call_through(*args, **kwargs):
        calls.append((name, args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, call_through)


def test_trainer_and_importer_write_through_the_store(tmp_path: Path, monkeypatch) -> None:
    calls: list = []
    for module in (train_mod, importer):
        for name in ("create_run", "write_epoch"):
            _spy(monkeypatch, module, name, calls)
    _spy(monkeypatch, train_mod, "create_experiment", calls)
    _spy(monkeypatch, importer, "add_run", calls)

    cfg = replace(TINY_SYNTH, attributes=["Smiling"], epochs=1, synth_train=16, max_val=8)
    trained = train_mod.train(cfg, tmp_path / "trained")
    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    state = build_model("vgg-mini", 1).state_dict()
    for e in (0, 1):
        save_file({k: v + e for k, v in state.items()}, str(src / f"epoch{e}.safetensors"))
    importer.import_run(src, "vgg-mini", tmp_path / "imported" / "Smiling")

    kinds = [c[0] for c in calls]
    assert kinds == [
        "create_experiment",
        "create_run",
        "write_epoch",
        "write_epoch",  # trainer
        "write_epoch",
        "write_epoch",
        "create_run",
        "add_run",
    ]  # importer
    a = load_experiment(trained).run("Smiling")
    b = load_experiment(tmp_path / "imported").run("Smiling")
    shared = {
        "format",
        "experiment",
        "run",
        "attribute",
        "model",
        "dataset",
        "num_outputs",
        "config",
        "tensors",
    }
    assert shared <= a.info.keys() and shared <= b.info.keys()
    assert list(a.info["tensors"]) == list(b.info["tensors"])  # model order in both
    for run in (a, b):
        meta = run.meta(1)
        assert meta["epoch"] == 1 and meta["run"] == "Smiling"
        assert {"fxcore_version", "torch_version"} <= meta.keys()
    assert [r["epoch"] for r in a.metrics()] == [1] and b.metrics() == []
    assert a.meta(1)["metrics"] == a.metrics()[0]


def test_only_the_store_writes_store_files() -> None:
    """No module but checkpoints/resume/optim_state calls the raw writers of the store's files
    (analysis writes its cache files, progress its progress.json, eval_store its evaluations,
    results the stored comparison results)."""
    allowed = {
        "checkpoints.py",
        "resume.py",
        "optim_state.py",
        "analysis.py",
        "progress.py",
        "eval_store.py",
        "results.py",  # an experiment's stored comparison results, written like its cache
    }
    for path in sorted(FXCORE.glob("*.py")):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not names & RAW_WRITERS, f"{path.name} writes store files itself"


def test_one_header_parser_for_store_and_stats(tmp_path: Path) -> None:
    from fxcore.measures.stats import tensor_info

    t = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4).half()}
    path = tmp_path / "x.safetensors"
    checkpoints.save_checkpoint(path, t, {"epoch": 0})
    header, _ = checkpoints.read_header(path)
    info = tensor_info(path, "b")
    assert info.shape == (4,) and info.dtype == header["b"]["dtype"] == "F16"
    raw = path.read_bytes()[info.offset : info.offset + 8]
    assert torch.equal(torch.frombuffer(bytearray(raw), dtype=torch.float16), t["b"])
