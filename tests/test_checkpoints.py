"""Run store: validation of bad files, atomic writes under SIGKILL, lazy single-tensor reads."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fxcore.models.nets import build_model
from fxcore.store.checkpoints import (
    CheckpointError,
    atomic_write_json,
    read_header,
    save_checkpoint,
)
from fxcore.store.runs import Run, list_experiments, open_experiment, runs_table, safe_child

ROOT = Path(__file__).resolve().parents[1]


def _make_run(tmp: Path, epochs: int = 4) -> Run:
    """A real fcnn3 run on disk (no training needed: perturbed weights per epoch)."""
    exp = tmp / "exp"
    run_dir = exp / "digit"
    run_dir.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("fcnn3", 10)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    atomic_write_json(exp / "experiment.json", {"name": "exp", "runs": ["digit"], "config": {}})
    atomic_write_json(
        run_dir / "run.json",
        {"attribute": "digit", "model": "fcnn3", "num_outputs": 10, "tensors": shapes},
    )
    for e in range(epochs):
        state = {k: v + 0.01 * e for k, v in model.state_dict().items()}
        save_checkpoint(run_dir / f"epoch_{e:03d}.safetensors", state, {"epoch": e})
    return open_experiment(exp).runs[0]


def test_good_run_reads_lazily(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    assert run.epochs() == [0, 1, 2, 3]
    w = run.read_tensor(2, "fc1.weight")
    assert w.shape == (128, 784)
    model = run.build_model(3)
    assert not model.training
    assert torch.equal(model.fc1.weight, run.read_tensor(3, "fc1.weight"))
    with pytest.raises(CheckpointError, match="no tensor"):
        run.read_tensor(1, "nope.weight")


def _corrupt(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "beyond_end":  # header intact, data cut: offsets point past the end
        (n,) = struct.unpack("<Q", data[:8])
        path.write_bytes(data[: 8 + n + 16])
    elif kind == "bad_json_meta":
        header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
        header["__metadata__"]["fxcore"] = "{not json"
        raw = json.dumps(header).encode()
        body = data[8 + struct.unpack("<Q", data[:8])[0] :]
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    elif kind == "other_arch":
        save_file({"fc1.weight": torch.zeros(3, 3)}, str(path), metadata={"fxcore": "{}"})
    elif kind == "missing":
        path.unlink()


@pytest.mark.parametrize(
    "kind,message",
    [
        ("truncated", "truncated|not a safetensors"),
        ("random", "not a safetensors|corrupt|truncated"),
        ("beyond_end", "ends at byte"),
        ("bad_json_meta", "not valid JSON"),
        ("other_arch", "architecture"),
        ("missing", "missing"),
    ],
)
def test_bad_epoch_is_reported_and_others_stay_usable(
    tmp_path: Path, kind: str, message: str
) -> None:
    run = _make_run(tmp_path)
    _corrupt(run.epoch_path(2), kind)
    run = open_experiment(tmp_path / "exp").runs[0]
    bad = run.bad_epochs()
    assert list(bad) == [2]
    assert "epoch_002.safetensors" in bad[2]
    assert pytest.importorskip("re").search(message, bad[2]), bad[2]
    assert run.epochs() == [0, 1, 3]
    with pytest.raises(CheckpointError, match="epoch_002"):
        run.read_tensor(2, "fc1.weight")
    assert run.read_tensor(3, "fc1.weight").shape == (128, 784)
    row = runs_table(list_experiments(tmp_path))[0]
    assert row["epochs"] == [0, 1, 3] and list(row["bad_epochs"]) == ["2"]


def test_symlink_outside_is_refused(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(run.epoch_path(1).read_bytes())
    run.epoch_path(1).unlink()
    run.epoch_path(1).symlink_to(outside)
    run = open_experiment(tmp_path / "exp").runs[0]
    assert "outside" in run.bad_epochs()[1]


@pytest.mark.parametrize("name", ["..", "../etc", "/etc", "a/b", "", "."])
def test_names_cannot_escape_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(CheckpointError):
        safe_child(tmp_path, name)
    with pytest.raises(CheckpointError):
        open_experiment(name, root=tmp_path)


def test_symlinked_experiment_outside_root_is_refused(tmp_path: Path) -> None:
    _make_run(tmp_path / "elsewhere")
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil").symlink_to(tmp_path / "elsewhere" / "exp")
    with pytest.raises(CheckpointError, match="outside"):
        open_experiment("evil", root=root)
    assert list_experiments(root) == []


_WRITER = """
import sys, torch
from pathlib import Path
from fxcore.store.checkpoints import save_checkpoint
out = Path(sys.argv[1])
big = torch.randn(2_000_000)
print("ready", flush=True)
e = 0
while True:
    save_checkpoint(out / f"epoch_{e % 5:03d}.safetensors", {"w": big + e}, {"epoch": e})
    e += 1
"""


def test_sigkill_during_writes_never_leaves_a_partial_checkpoint(tmp_path: Path) -> None:
    """Kill a process that writes 8 MB checkpoints in a loop at 4 seeded moments."""
    import random

    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for f in tmp_path.glob("epoch_*.safetensors"):
            header, _ = read_header(f)  # raises if partial
            assert header["w"]["shape"] == [2_000_000]
    assert list(tmp_path.glob("epoch_*.safetensors")), "the writer never completed a file"


_READER = """
import resource, sys
from fxcore.store.runs import open_experiment
run = open_experiment(sys.argv[1]).runs[0]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = run.read_tensor(0, "small")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, float(t.sum()))
"""


def test_single_tensor_read_does_not_load_the_file(tmp_path: Path) -> None:
    exp = tmp_path / "big"
    run_dir = exp / "r"
    run_dir.mkdir(parents=True)
    atomic_write_json(exp / "experiment.json", {"runs": ["r"]})
    atomic_write_json(
        run_dir / "run.json", {"model": "x", "tensors": {"huge": [50_000_000], "small": [10]}}
    )
    save_checkpoint(
        run_dir / "epoch_000.safetensors",
        {"huge": torch.ones(50_000_000), "small": torch.arange(10.0)},
        {},
    )
    out = subprocess.run(
        [sys.executable, "-c", _READER, str(exp)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    grew_mb, total = out.stdout.split()
    assert float(total) == 45.0
    assert int(grew_mb) < 40, f"reading 40 bytes grew RSS by {grew_mb} MB (file is 200 MB)"
